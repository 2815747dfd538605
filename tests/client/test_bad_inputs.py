"""The bad-input corpus and every NIfTI shipped in nibabel and nilearn: clean refusals, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from collat_client.apps.cli import main as cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, corpus_module):
    return corpus_module.make_corpus(tmp_path_factory.mktemp("bad"))


def _names(corpus) -> list[str]:
    return [c.name for c in corpus]


def test_the_corpus_covers_the_catalogue(corpus):
    assert len(corpus) == 17
    assert {"truncated .nii.gz", "10,000 x 10,000 series", "DICOM series with mixed series UIDs"} <= set(_names(corpus))


def test_every_bad_input_is_one_clean_line_exit_2_and_nothing_written(corpus, tmp_path):
    for case in corpus:
        out = tmp_path / case.name.replace(" ", "_")
        result = CliRunner().invoke(cli, ["infer", *case.args, "--out", str(out), "--url", "127.0.0.1:9",
                                          "--retries", "0"])
        assert result.exit_code == 2, f"{case.name}: exit {result.exit_code}: {result.output}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{case.name}: {result.stderr!r}"
        assert case.message in lines[0], f"{case.name}: {lines[0]}"
        assert "Traceback" not in result.output
        assert not out.exists(), f"{case.name}: something was written"
        file_args = [a for a in case.args if a.startswith("/")]
        if case.args[0].startswith("/"):
            assert file_args[0] in lines[0], f"{case.name}: the message must name the file"


def _shipped_niftis() -> list[Path]:
    import nibabel
    import nilearn

    found = []
    for package in (nibabel, nilearn):
        root = Path(package.__file__).parent
        found += sorted(p for p in root.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    return found


def test_every_nifti_shipped_in_nibabel_and_nilearn_runs_or_fails_cleanly(tmp_path):
    files = _shipped_niftis()
    assert len(files) >= 10
    outcomes = {}
    for path in files:
        result = CliRunner().invoke(cli, ["infer", str(path), "--out", str(tmp_path / "o"), "--url", "127.0.0.1:9",
                                          "--retries", "0"])
        # 0: ran; 2: refused as bad input; 3: valid input, no server listening at the test URL.
        assert result.exit_code in (0, 2, 3), f"{path}: exit {result.exit_code}: {result.output}"
        assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception,
                                                                                            SystemExit)
        if result.exit_code:
            assert len(result.stderr.strip().splitlines()) == 1
        outcomes[path.name] = result.exit_code
    assert not (tmp_path / "o").exists() or set(outcomes.values()) & {0}
