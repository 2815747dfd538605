import json
import subprocess
import sys

import pytest

from collat_ensemble.server.tensorrt_build import ShapeProfile, default_profile, parse_shapes, uses_strong_typing
from collat_export.io_spec import network_io
from collat_export.presets import get_preset

CLI = [sys.executable, "-m", "collat_export.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_tensorrt_without_gpu_says_so_in_one_line(tmp_path):
    from collat_ensemble.server.tensorrt_build import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("this machine can build engines; the no-GPU message does not apply")
    result = run_cli("tensorrt", "--onnx", str(tmp_path / "model.onnx"), "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot build a TensorRT engine here:")
    assert "tensorrt" in lines[0]


def test_shape_notation_and_profile_rules():
    assert parse_shapes(["MROD_INPUT:1x60x1x32x32", "IMAGE:2x4x16x128x128,NIHSS:2x1"]) == {
        "MROD_INPUT": (1, 60, 1, 32, 32), "IMAGE": (2, 4, 16, 128, 128), "NIHSS": (2, 1)}
    with pytest.raises(ValueError, match="not NAME:AxBxC"):
        parse_shapes(["MROD_INPUT=1x2"])
    mrod = get_preset("mrod", "full")
    io = network_io(mrod)
    profile = default_profile(io.inputs, mrod.geometry.as_dict(), max_batch=4)
    profile.validate(io.inputs)
    assert profile.min["MROD_INPUT"] == (1, 60, 1, 32, 32)
    assert profile.opt["MROD_INPUT"] == (2, 60, 20, 128, 128)
    assert profile.max["MROD_INPUT"] == (4, 60, 40, 256, 256)
    bad = ShapeProfile(profile.min, profile.opt, {"MROD_INPUT": (4, 59, 40, 256, 256)})
    with pytest.raises(ValueError, match="fixes it at 60"):
        bad.validate(io.inputs)
    hypo = get_preset("hypo", "full")
    hp = default_profile(network_io(hypo).inputs, hypo.geometry.as_dict(), max_batch=32)
    assert hp.max == {"IMAGE": (32, 4, 16, 128, 128), "NIHSS": (32, 1)}


def test_tensorrt_11_builds_strongly_typed():
    assert not uses_strong_typing("10.5.0")
    assert uses_strong_typing("11.0.0")


@pytest.mark.slow
def test_info_reports_parameters_and_flops():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["model"], r["preset"]): r for r in json.loads(result.stdout)}
    assert set(rows) == {("mrod", "full"), ("mrod", "tiny"), ("mrod", "fine"), ("hypo", "full"), ("hypo", "tiny")}
    for model in ("mrod", "hypo"):
        assert rows[(model, "full")]["parameters"] > 5 * rows[(model, "tiny")]["parameters"]
        assert rows[(model, "full")]["gflops"] > rows[(model, "tiny")]["gflops"] > 0
    assert rows[("mrod", "tiny")]["input"]["MROD_INPUT"] == [1, 60, 12, 64, 64]
    # The fine preset: the tiny network plus a full-resolution head, on the DCE-MRA grid.
    assert rows[("mrod", "fine")]["input"]["MROD_INPUT"] == [1, 60, 20, 128, 128]
    assert rows[("mrod", "tiny")]["parameters"] < rows[("mrod", "fine")]["parameters"] < \
        1.1 * rows[("mrod", "tiny")]["parameters"]
    assert rows[("mrod", "fine")]["gflops"] > rows[("mrod", "tiny")]["gflops"]


@pytest.mark.slow
def test_onnx_command_with_bad_checkpoint_fails_in_one_line(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"\x00garbage")
    result = run_cli("onnx", "--model", "hypo", "--checkpoint", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'w.pt'}: not a readable PyTorch checkpoint (UnpicklingError)"]
    assert not (tmp_path / "o" / "model.onnx").exists()


@pytest.mark.slow
def test_repository_command_writes_a_servable_cpu_layout(tmp_path):
    result = run_cli("repository", "--target", "python-onnx", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("mrod_net", "hypoperfusion_unet"):
        version = tmp_path / name / "1"
        assert {p.name for p in version.iterdir()} == {"model.onnx", "model.json", "model.py"}
        assert json.loads((version / "model.json").read_text())["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.gpu
def test_engine_builds_and_matches_onnxruntime(tmp_path):
    onnx_dir = tmp_path / "hypo"
    assert run_cli("onnx", "--model", "hypo", "--preset", "tiny", "--out", str(onnx_dir)).returncode == 0
    result = run_cli("tensorrt", "--onnx", str(onnx_dir / "model.onnx"), "--out", str(onnx_dir), "--fp16",
                     "--max-batch", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads((onnx_dir / "model.plan.json").read_text())
    assert report["parity"]["passed"] and report["precision"] == "fp16"
    assert report["gpu_name"] and report["compute_capability"]
