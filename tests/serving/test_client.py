"""The SDK and the CLI against the real server: both protocols, saved maps, the schema contract, every error class."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from serving_helpers import case_arrays, infer

from collat_client.apps.cli import main as cli
from collat_client.errors import InferenceTimeout, InvalidInput, ModelNotReady, ServerUnavailable
from collat_client.imaging.volumes import Volume
from collat_client.schema import Clinical, Metrics
from collat_client.sdk.client import CollatClient
from collat_ensemble.phantom import generate_case, write_case
from collat_ensemble.server.launcher import free_port


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory, left_case):
    folder = tmp_path_factory.mktemp("case")
    write_case(left_case, folder)
    return folder


@pytest.fixture(scope="module")
def sdk_result(server, case_dir):
    with CollatClient(server.http_url) as client:
        return client.infer(perfusion=case_dir / "perfusion.nii.gz", dwi=case_dir / "dwi.nii.gz",
                            adc=case_dir / "adc.nii.gz", clinical=Clinical(nihss=14, age=70, side="left"))


def test_the_servers_metrics_document_satisfies_the_sdk_schema(grpc_client, left_case):
    for pipeline in ("collateral_pipeline", "hypoperfusion_pipeline"):
        doc = infer(grpc_client, pipeline, case_arrays(left_case))["METRICS"]
        assert Metrics.model_validate(doc).pipeline == pipeline


def test_sdk_result_is_typed_and_on_the_input_grids(sdk_result, left_case):
    r = sdk_result
    assert r.pipeline == "stroke_triage" and isinstance(r.metrics, Metrics)
    assert r.collateral_maps.data.shape == left_case.perfusion.shape[:3] + (5,)
    np.testing.assert_allclose(r.collateral_maps.affine, left_case.perfusion_affine, atol=1e-6)
    assert r.hypoperfusion_prob.data.shape == left_case.dwi.shape
    assert r.metrics.hypoperfusion.core_ml == pytest.approx(left_case.truth["core_ml"], rel=0.1)


def test_sdk_accepts_in_memory_arrays_and_grpc_gives_the_same_maps(server, sdk_result, left_case):
    perfusion = Volume(left_case.perfusion.astype(np.float32), left_case.perfusion_affine, 1.6)
    with CollatClient(server.grpc_url, protocol="grpc") as client:
        r = client.infer(perfusion=perfusion)
    assert r.pipeline == "collateral_pipeline"
    np.testing.assert_allclose(r.collateral_maps.data, sdk_result.collateral_maps.data, atol=1e-5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cli_infer_writes_maps_that_overlay_the_input(server, case_dir, sdk_result, tmp_path, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["infer", str(case_dir / "perfusion.nii.gz"),
                                      "--dwi", str(case_dir / "dwi.nii.gz"), "--adc", str(case_dir / "adc.nii.gz"),
                                      "--nihss", "14", "--age", "70", "--side", "left", "--out", str(out),
                                      "--url", url, "--protocol", protocol])
    assert result.exit_code == 0, result.output
    assert "DEFUSE 3 target mismatch" in result.output and "CPS estimate" in result.output
    source = nib.load(str(case_dir / "perfusion.nii.gz"))
    for phase_index, phase in enumerate(["arterial", "capillary", "early_venous", "late_venous", "delay"]):
        image = nib.load(str(out / f"collateral_{phase}.nii.gz"))
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-6)
        assert image.shape == source.shape[:3]
        np.testing.assert_allclose(image.get_fdata(), sdk_result.collateral_maps.data[..., phase_index], atol=1e-5)
    lesion = nib.load(str(out / "hypoperfusion_prob.nii.gz"))
    np.testing.assert_allclose(lesion.affine, nib.load(str(case_dir / "dwi.nii.gz")).affine, atol=1e-6)
    metrics = Metrics.model_validate_json((out / "metrics.json").read_text())
    assert metrics.hypoperfusion.defuse3.eligible == sdk_result.metrics.hypoperfusion.defuse3.eligible
    png = Image.open(out / "overview.png")
    png.load()
    assert png.format == "PNG" and png.size == (718, 876)  # 6 rows (5 phases + DWI) of 4 slices
    pixels = np.asarray(png)
    assert pixels.std() > 20, "the overview must show images, not a blank canvas"


def test_cli_json_prints_only_the_validated_document(server, case_dir, tmp_path):
    result = CliRunner().invoke(
        cli, ["infer", str(case_dir / "perfusion.nii.gz"), "--json", "--out", str(tmp_path / "o"),
              "--url", server.http_url])
    assert result.exit_code == 0, result.stderr
    doc = Metrics.model_validate(json.loads(result.stdout))
    assert doc.pipeline == "collateral_pipeline" and doc.hypoperfusion is None


def test_cli_never_overwrites_without_force(server, case_dir, tmp_path):
    out = tmp_path / "o"
    args = ["infer", str(case_dir / "perfusion.nii.gz"), "--out", str(out), "--url", server.http_url]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = (out / "metrics.json").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "use --force" in again.stderr
    assert (out / "metrics.json").stat().st_mtime_ns == before
    assert CliRunner().invoke(cli, args + ["--force"]).exit_code == 0


def test_health_and_models_report_the_pipelines_and_batching(server):
    health = CliRunner().invoke(cli, ["health", "--url", server.http_url])
    assert health.exit_code == 0 and "stroke_triage: ready" in health.output
    models = CliRunner().invoke(cli, ["models", "--json", "--url", server.http_url])
    rows = {r["name"]: r for r in json.loads(models.output)}
    assert rows["hypoperfusion_unet"]["max_batch_size"] == 32 and rows["hypoperfusion_unet"]["dynamic_batching"]
    assert rows["mrod_net"]["preferred_batch_size"] == [2] and rows["stroke_triage"]["ready"]  # CPU: RUN_CHUNK


def test_cli_evaluate_scores_outputs_against_the_phantom_truth(server, case_dir, tmp_path):
    out = tmp_path / "o"
    assert CliRunner().invoke(cli, ["infer", str(case_dir / "perfusion.nii.gz"), "--dwi", str(case_dir / "dwi.nii.gz"),
                                    "--adc", str(case_dir / "adc.nii.gz"), "--nihss", "14", "--side", "left",
                                    "--out", str(out), "--url", server.http_url]).exit_code == 0
    result = CliRunner().invoke(cli, ["evaluate", str(out), str(case_dir), "--json"])
    report = json.loads(result.output)
    assert set(report["collateral"]) == {"arterial", "capillary", "early_venous", "late_venous", "delay", "mean"}
    assert report["collateral"]["mean"]["r2"] > 0.5
    assert report["hypoperfusion"]["dice"] > 0.5 and report["hypoperfusion"]["auc"] > 0.9
    truth = json.loads((case_dir / "truth.json").read_text())["collateral_grade"]
    assert report["cps"]["truth"] == truth and abs(report["cps"]["estimate"] - truth) <= 1


# ------------------------------------------------------------------ every error class


def test_server_down_is_server_unavailable_after_the_retries(tmp_path, case_dir):
    port = free_port()
    with CollatClient(f"127.0.0.1:{port}", retries=2, backoff=0.05) as client, \
            pytest.raises(ServerUnavailable, match="gave up after 3 attempts"):
        client.infer(perfusion=case_dir / "perfusion.nii.gz")
    result = CliRunner().invoke(cli, ["infer", str(case_dir / "perfusion.nii.gz"), "--url",
                                                      f"127.0.0.1:{port}", "--retries", "0", "--out",
                                                      str(tmp_path / "o")])
    assert result.exit_code == 3 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_model_is_model_not_ready(server):
    with CollatClient(server.http_url) as client, pytest.raises(ModelNotReady):
        client.model_config("no_such_pipeline")
    with CollatClient(server.grpc_url, protocol="grpc") as client, pytest.raises(ModelNotReady):
        client.model_config("no_such_pipeline")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_refusal_by_the_server_is_invalid_input_with_its_reason(server, left_case, protocol):
    rng = np.random.default_rng(4)
    noise = rng.uniform(100, 1000, size=left_case.dwi.shape).astype(np.float32)  # a valid volume, not a brain
    dwi = Volume(noise, left_case.diffusion_affine)
    adc = Volume(left_case.adc.astype(np.float32), left_case.diffusion_affine)
    url = server.http_url if protocol == "http" else server.grpc_url
    with CollatClient(url, protocol=protocol) as client, \
            pytest.raises(InvalidInput, match="could not be registered to the MNI brain template"):
        client.infer(dwi=dwi, adc=adc, clinical=Clinical(nihss=4))


def test_a_slow_answer_is_an_inference_timeout(server, case_dir):
    with CollatClient(server.http_url, timeout=0.05) as client, pytest.raises(InferenceTimeout):
        client.infer(perfusion=case_dir / "perfusion.nii.gz")


def test_bad_files_fail_fast_with_exit_2_and_no_output(tmp_path, case_dir):
    text = tmp_path / "scan.nii"
    text.write_text("not an image")
    result = CliRunner().invoke(cli, ["infer", str(text), "--out", str(tmp_path / "o"),
                                                      "--url", "127.0.0.1:9"])
    assert result.exit_code == 2 and str(text) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()
    empty = tmp_path / "dicom"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["infer", "--dwi", str(empty), "--adc", str(empty),
                                                      "--nihss", "3", "--url", "127.0.0.1:9"])
    assert result.exit_code == 2 and "no DICOM files in this folder or below it" in result.stderr


def test_the_installed_command_exits_cleanly_without_a_traceback(tmp_path):
    env = {**os.environ, "COLLAT_URL": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "collat_client.apps.cli", "infer", str(tmp_path / "none.nii.gz")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no such file" in done.stderr


def test_async_client_gives_the_same_maps(server, case_dir, sdk_result):
    import asyncio

    from collat_client import AsyncCollatClient

    async def run():
        async with AsyncCollatClient(server.http_url) as client:
            assert await client.server_ready()
            return await asyncio.gather(*(client.infer(perfusion=case_dir / "perfusion.nii.gz") for _ in range(2)))

    for result in asyncio.run(run()):
        np.testing.assert_allclose(result.collateral_maps.data, sdk_result.collateral_maps.data, atol=1e-5)


def test_patient_identifiers_never_reach_the_server_or_the_metrics(server, case_dir, tmp_path):
    source = nib.load(str(case_dir / "perfusion.nii.gz"))
    header = source.header.copy()
    header["descrip"] = b"DOE^JANE 19700101 MRN98765"
    tagged = tmp_path / "tagged.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(source.dataobj), source.affine, header), str(tagged))
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["infer", str(tagged), "--out", str(out), "--url", server.http_url])
    assert result.exit_code == 0, result.output
    assert "MRN98765" not in (out / "metrics.json").read_text()
    assert "MRN98765" not in server.log_tail(100000), "the server log must not see header text"


def test_a_native_scan_is_registered_and_a_partial_one_keeps_maps_but_loses_decisions(server, tmp_path):
    """Native-space DWI/ADC through the real server and the CLI: results on the scan's own grid; six slices of the
    same scan still get maps, but DEFUSE 3 and DAWN are withheld, in red, with exit code 0."""
    case = generate_case(12, space="native")
    folder = tmp_path / "native"
    write_case(case, folder)
    args = ["--nihss", str(case.nihss), "--age", str(case.age), "--url", server.http_url]
    full = CliRunner().invoke(cli, ["infer", "--dwi", str(folder / "dwi.nii.gz"), "--adc", str(folder / "adc.nii.gz"),
                                    "--out", str(tmp_path / "full"), *args])
    assert full.exit_code == 0, full.output
    metrics = Metrics.model_validate_json((tmp_path / "full" / "metrics.json").read_text())
    h = metrics.hypoperfusion
    assert h.registration.method == "affine" and h.defuse3 is not None and "warning:" not in full.stderr
    assert "decision withheld" not in full.stdout
    assert h.core_ml == pytest.approx(case.truth["core_ml"], rel=0.10)
    lesion = nib.load(tmp_path / "full" / "lesion_mask.nii.gz")
    assert lesion.shape == case.dwi.shape and np.allclose(lesion.affine, case.diffusion_affine, atol=1e-4)

    keep = slice(12, 18)
    affine = case.diffusion_affine.copy()
    affine[:3, 3] += case.diffusion_affine[:3, :3] @ [0, 0, keep.start]
    for name in ("dwi", "adc"):
        nib.save(nib.Nifti1Image(getattr(case, name)[:, :, keep], affine), tmp_path / f"part_{name}.nii.gz")
    part = CliRunner().invoke(cli, ["infer", "--dwi", str(tmp_path / "part_dwi.nii.gz"), "--adc",
                                    str(tmp_path / "part_adc.nii.gz"), "--out", str(tmp_path / "part"), *args])
    assert part.exit_code == 0, part.output
    assert "decision withheld" in part.stdout and "covers" in part.stdout  # beside the table, in red
    assert part.stderr.strip().splitlines()[-1].startswith("warning: ")
    withheld = Metrics.model_validate_json((tmp_path / "part" / "metrics.json").read_text())
    assert withheld.hypoperfusion.defuse3 is None and withheld.hypoperfusion.dawn is None
    assert (tmp_path / "part" / "lesion_mask.nii.gz").is_file()
