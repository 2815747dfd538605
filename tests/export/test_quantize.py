"""INT8 on the CPU: NNCF's quantized IR is made beside the weights, shipped only with the weights it was made from,
and measured on the served path like BF16 before a card may accept it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from collat_ensemble.server.network_model import OpenVINORunner, int8_model_path
from collat_export.onnx_export import INT8_BIN, INT8_XML, accepted_precisions, export_onnx, shipped_int8
from collat_export.quantize import QuantizationUnavailable, network_samples, quantize_checkpoint, truth_score
from collat_export.training.cli import _rewrite_card_document

pytest.importorskip("nncf", reason="INT8 needs NNCF: pip install './export[int8]' (the Makefile installs it)")

WEIGHTS = Path(__file__).resolve().parents[2] / "export" / "src" / "collat_export" / "weights" / "hypo_tiny"


def test_the_validation_score_is_lesion_dice_for_the_unet_and_r2_for_the_maps():
    truth = np.zeros((2, 1, 4, 4), bool)
    truth[0, 0, :2] = True  # 8 lesion voxels
    found = np.where(truth, 0.9, 0.1).astype(np.float32)
    half = found.copy()
    half[0, 0, 1] = 0.2  # 4 of them missed
    assert truth_score("hypo", [found], [{"truth": truth}]) == 1.0
    assert truth_score("hypo", [half], [{"truth": truth}]) == pytest.approx(2 * 4 / (8 + 4))
    assert truth_score("hypo", [np.full(3, 0.4)], [{"truth": np.zeros(3, bool)}]) == 1.0  # nothing, nothing drawn
    maps = np.linspace(-1, 1, 40, dtype=np.float32).reshape(5, 2, 2, 2)
    inside = np.ones((2, 2, 2), bool)
    item = {"truth": maps, "mask": inside}
    assert truth_score("mrod", [maps[None]], [item]) == pytest.approx(1.0)
    assert truth_score("mrod", [np.full((1, *maps.shape), maps.mean())], [item]) == pytest.approx(0.0, abs=1e-6)
    inside[0] = False  # outside the brain nothing counts
    assert truth_score("mrod", [np.where(inside, maps, 5.0)[None]], [item]) == pytest.approx(1.0)


def test_no_nncf_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(QuantizationUnavailable, match=r"INT8 needs NNCF and OpenVINO \(nncf is not installed\): "
                                                      r"pip install './export\[int8\]'"):
        quantize_checkpoint(tmp_path / "checkpoint.pt")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> tuple[Path, dict]:
    """The demo U-Net's weights quantized in a copy of their folder, on two calibration series and one validation
    series, with a loose accuracy control (the shipped IR: 24 and 12 series, 0.005), which keeps the test short."""
    folder = tmp_path_factory.mktemp("hypo_tiny")
    for name in ("checkpoint.pt", "model_card.json"):
        shutil.copyfile(WEIGHTS / name, folder / name)
    card = json.loads((folder / "model_card.json").read_text())
    card.pop("int8", None)
    (folder / "model_card.json").write_text(json.dumps(card))
    record = quantize_checkpoint(folder / "checkpoint.pt", calibration_seeds=range(1_400_000, 1_400_002),
                                 validation_seeds=range(1_400_100, 1_400_101), threads=2, max_drop=0.1)
    card["int8"] = record
    _rewrite_card_document(folder / "checkpoint.pt", card)  # as `collat-train quantize` records it
    return folder, record


def test_the_quantized_unet_agrees_with_fp32_and_is_shipped_with_its_own_weights_only(quantized, tmp_path):
    folder, record = quantized
    checkpoint = folder / "checkpoint.pt"
    assert (folder / INT8_XML).is_file() and (folder / INT8_BIN).is_file()
    assert record["validation_int8"] >= record["validation_fp32"] - record["max_drop"]
    assert record["calibration_samples"] == 24 and record["validation_series"] == 1  # 12 slabs a series
    assert shipped_int8(checkpoint) == folder / INT8_XML
    assert json.loads((folder / "model_card.json").read_text())["int8"]["checkpoint_sha256"] == \
        record["checkpoint_sha256"]
    card_text = (folder / "model_card.md").read_text()
    assert "## INT8 IR" in card_text and record["checkpoint_sha256"] in card_text

    from collat_export.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    out = tmp_path / "export"
    export_onnx(loaded.network, loaded.preset, out, checkpoint=str(checkpoint))
    assert json.loads((out / "model.json").read_text())["int8_model"] == INT8_XML
    assert int8_model_path(str(out)) == str(out / INT8_XML)
    [item] = network_samples("hypo", loaded.preset, [1_400_200])
    batch = {"IMAGE": item["IMAGE"], "NIHSS": item["NIHSS"]}
    fp32 = OpenVINORunner(str(out / "model.onnx"), 2, ["LESION_PROB"]).run(batch)[0]
    int8 = OpenVINORunner(str(out / INT8_XML), 2, ["LESION_PROB"], "int8").run(batch)[0]
    assert int8.shape == fp32.shape == item["truth"].shape == (12, 1, 16, 128, 128)
    assert truth_score("hypo", [int8], [item]) > truth_score("hypo", [fp32], [item]) - 0.05
    assert float(np.abs(int8 - fp32).max()) > 0.0  # it is the quantized network that ran

    # The card's digest names other weights: the IR stays behind, int8 is not accepted, model.json names none.
    card = json.loads((folder / "model_card.json").read_text())
    card["int8"] = {**record, "checkpoint_sha256": "0" * 64}
    card["precision"] = {"accepted": ["fp32", "bf16", "int8"]}
    (folder / "model_card.json").write_text(json.dumps(card))
    try:
        assert shipped_int8(checkpoint) is None
        assert accepted_precisions(str(checkpoint)) == ["fp32", "bf16"]
        stale = tmp_path / "stale"
        export_onnx(loaded.network, loaded.preset, stale, checkpoint=str(checkpoint))
        assert not (stale / INT8_XML).exists() and json.loads((stale / "model.json").read_text())["int8_model"] is None
        assert int8_model_path(str(stale)) is None
    finally:
        card["int8"] = record
        card.pop("precision")
        (folder / "model_card.json").write_text(json.dumps(card))


def test_int8_is_measured_on_the_served_path_before_a_card_accepts_it(quantized):
    """One held-out series: measured (speed, Dice, decisions) and, with fewer than 200 series, not accepted."""
    from collat_ensemble.server.network_model import cpu_capabilities
    from collat_export.precision import measure_precisions

    if not {"INT8", "VNNI"} <= set(cpu_capabilities()):
        pytest.skip("this CPU has no VNNI: INT8 is neither measured nor served here (the note says so)")
    folder, _ = quantized
    record = measure_precisions(folder / "checkpoint.pt", [0], threads=2)
    assert record["int8"]["accepted"] is False
    assert "measured on 1 series, fewer than the 200 acceptance needs" in record["int8"]["reasons"]
    assert set(record["int8"]["changed"]) == {"defuse3", "dawn", "withheld"}
    assert record["int8"]["speed_vs_fp32"] > 0 and "dice" in record["int8"]["loss_vs_fp32"]
    assert record["accepted"][0] == "fp32" and "int8" not in record["accepted"]


def test_the_served_network_model_loads_the_int8_ir_when_told_and_says_so(quantized, tmp_path, monkeypatch, capsys):
    """``COLLAT_CPU_PRECISION=int8`` on a repository with the IR: the Python-backend model runs the IR, and its log
    line says the card has not accepted it; without the IR it stays FP32 and says why."""
    from collat_ensemble.server.network_model import PRECISION_VARIABLE, TritonPythonModel
    from collat_export.checkpoint import load_checkpoint

    folder, _ = quantized
    loaded = load_checkpoint(folder / "checkpoint.pt")
    version = tmp_path / "hypoperfusion_unet" / "1"
    export_onnx(loaded.network, loaded.preset, version, checkpoint=str(folder / "checkpoint.pt"))
    config = {"name": "hypoperfusion_unet", "parameters": {"intra_op_threads": {"string_value": "2"}},
              "input": [{"name": "IMAGE"}, {"name": "NIHSS"}], "output": [{"name": "LESION_PROB"}]}
    args = {"model_config": json.dumps(config), "model_repository": str(version.parent), "model_version": "1"}
    monkeypatch.setenv(PRECISION_VARIABLE, "int8")
    served = TritonPythonModel()
    served.initialize(args)
    assert served.precision == "int8"
    assert "on the CPU, INT8 (COLLAT_CPU_PRECISION=int8 (the model card has not accepted it: unmeasured))" in \
        capsys.readouterr().out
    rng = np.random.default_rng(3)
    feed = {"IMAGE": rng.random((1, 4, 16, 128, 128), dtype=np.float32), "NIHSS": np.full((1, 1), 0.3, np.float32)}
    direct = OpenVINORunner(str(version / INT8_XML), 2, ["LESION_PROB"], "int8").run(feed)[0]
    np.testing.assert_array_equal(served.runner.run(feed)[0], direct)

    (version / INT8_BIN).unlink()  # a repository without the IR
    fallback = TritonPythonModel()
    fallback.initialize(args)
    assert fallback.precision == "fp32"
    assert "FP32 (COLLAT_CPU_PRECISION=int8, but no INT8-quantized model is in this repository)" in \
        capsys.readouterr().out
