from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from collat_ensemble.server.network_model import group_by_shape, split_batch
from collat_ensemble.server.repository import TARGETS, batching_policy, render_config, write_model_dir
from collat_export.cli import main as cli_main
from collat_export.io_spec import network_io
from collat_export.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", ["mrod", "hypo"])
def test_configs_parse_with_tritons_schema(target, model):
    io = network_io(get_preset(model, "tiny"))
    cfg = parse(render_config(io, target))
    policy = batching_policy(io.triton_name, target)
    assert cfg.name == io.triton_name
    assert cfg.max_batch_size == policy.max_batch_size
    assert list(cfg.dynamic_batching.preferred_batch_size) == list(policy.preferred)
    assert cfg.dynamic_batching.max_queue_delay_microseconds == policy.max_queue_delay_us
    queue = cfg.dynamic_batching.default_queue_policy
    assert queue.max_queue_size == policy.max_queue_size and queue.timeout_action == queue.REJECT
    assert queue.default_timeout_microseconds == policy.queue_timeout_us
    kind = model_config_pb2.ModelInstanceGroup.KIND_GPU if target == "tensorrt" else \
        model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert [g.kind for g in cfg.instance_group] == [kind]
    assert [(i.name, list(i.dims)) for i in cfg.input] == [(t.name, list(t.dims)) for t in io.inputs]
    assert all(i.data_type == model_config_pb2.TYPE_FP32 for i in cfg.input)
    if target == "tensorrt":
        assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
    elif target == "onnxruntime":
        assert cfg.backend == "onnxruntime"
    elif target == "openvino":
        assert cfg.backend == "openvino" and cfg.default_model_filename == "model.onnx"
        assert cfg.parameters["INFERENCE_NUM_THREADS"].string_value == "2"
        assert cfg.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
    else:
        assert cfg.backend == "python" and cfg.parameters["onnx_file"].string_value == "model.onnx"
        assert cfg.parameters["runtime"].string_value == "auto"  # OpenVINO when installed (COLLAT_CPU_RUNTIME)


def test_mrod_declares_dynamic_grid_and_unet_a_fixed_slab():
    mrod = parse(render_config(network_io(get_preset("mrod", "full")), "tensorrt"))
    hypo = parse(render_config(network_io(get_preset("hypo", "full")), "tensorrt"))
    assert list(mrod.input[0].dims) == [60, -1, -1, -1]
    assert list(mrod.output[0].dims) == [5, -1, -1, -1]
    assert list(hypo.input[0].dims) == [4, 16, 128, 128]
    assert list(hypo.input[1].dims) == [1]


def test_dynamic_batching_can_be_switched_off():
    cfg = parse(render_config(network_io(get_preset("hypo", "tiny")), "python-onnx", dynamic_batching=False))
    assert not cfg.HasField("dynamic_batching")


def test_unknown_target_is_refused():
    with pytest.raises(ValueError, match="unknown target"):
        render_config(network_io(get_preset("hypo", "tiny")), "tflite")


def test_python_onnx_folder_carries_its_backend_script(tmp_path):
    io = network_io(get_preset("hypo", "tiny"))
    model_dir = write_model_dir(tmp_path, io, "python-onnx")
    script = (model_dir / "1" / "model.py").read_text()
    assert "class TritonPythonModel" in script
    assert "collat_export" not in script.split('"""', 2)[2], "must not import the export package"


def test_committed_repository_is_what_the_tensorrt_target_writes(tmp_path):
    """Every config.pbtxt and model.py under model_repository/ equals a fresh --config-only build (full preset)."""
    result = CliRunner().invoke(cli_main, ["repository", "--target", "tensorrt", "--config-only", "--preset", "full",
                                           "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output

    def files(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name in ("config.pbtxt", "model.py")}

    fresh, committed = files(tmp_path), files(ROOT / "model_repository")
    assert sorted(committed) == sorted(fresh)
    for name, text in fresh.items():
        assert committed[name] == text, \
            f"{name} drifted; regenerate with: collat-export repository --target tensorrt --config-only " \
            "--preset full --out model_repository"
    for model in {Path(n).parts[0] for n in fresh}:
        assert (ROOT / "model_repository" / model / "1").is_dir(), f"{model}/1 must exist (Triton needs a version)"


def test_requests_are_grouped_by_shape_and_split_back():
    shapes = [((1, 60, 4, 64, 64),), ((2, 60, 4, 64, 64),), ((1, 60, 8, 64, 64),), ((1, 60, 4, 64, 64),)]
    assert group_by_shape(shapes) == [[0, 1, 3], [2]]
    stacked = np.arange(4 * 3).reshape(4, 3)
    parts = split_batch(stacked, [1, 2, 1])
    assert [p.tolist() for p in parts] == [[[0, 1, 2]], [[3, 4, 5], [6, 7, 8]], [[9, 10, 11]]]


def test_the_cpu_runtime_is_openvino_when_installed_and_onnxruntime_otherwise(monkeypatch):
    import sys

    from collat_ensemble.server.network_model import RUNTIME_VARIABLE, choose_runtime

    monkeypatch.delenv(RUNTIME_VARIABLE, raising=False)
    assert choose_runtime("auto") == "openvino" and choose_runtime(None) == "openvino"
    assert choose_runtime("onnxruntime") == "onnxruntime"
    monkeypatch.setenv(RUNTIME_VARIABLE, "onnxruntime")  # the operator's switch wins over the parameter
    assert choose_runtime("openvino") == "onnxruntime"
    monkeypatch.setenv(RUNTIME_VARIABLE, "tflite")
    with pytest.raises(ValueError, match="COLLAT_CPU_RUNTIME='tflite': choose auto, openvino or onnxruntime"):
        choose_runtime("auto")
    monkeypatch.delenv(RUNTIME_VARIABLE)
    monkeypatch.setitem(sys.modules, "openvino", None)  # a machine without OpenVINO
    assert choose_runtime("auto") == "onnxruntime"


def test_the_cpu_precision_follows_the_hardware_and_the_cards_measurement(tmp_path):
    """BF16 only where the CPU has the units (AMD Zen 4 and Intel with AVX-512 BF16 or AMX) and the model card
    accepted it by measurement; FP32 everywhere else; the operator's override wins where it can, and says so."""
    import json

    from collat_ensemble.server.network_model import accepted_precisions, choose_precision

    bf16_cpu, old_cpu = ["BF16", "FP32", "INT8", "WINOGRAD"], ["FP32", "INT8"]
    assert choose_precision(None, ["fp32", "bf16"], bf16_cpu) == (
        "bf16", "the CPU has BF16 units and the model card accepts bf16 (measured on held-out phantoms)")
    assert choose_precision(None, ["fp32", "bf16"], old_cpu) == (
        "fp32", "the model card accepts bf16 but this CPU has no BF16 units")
    assert choose_precision(None, ["fp32"], bf16_cpu) == ("fp32", "the model card accepts fp32 only")
    assert choose_precision(None, ["fp32", "bf16"], bf16_cpu, "onnxruntime") == ("fp32", "onnxruntime runs FP32 only")
    assert choose_precision("fp32", ["fp32", "bf16"], bf16_cpu) == ("fp32", "COLLAT_CPU_PRECISION=fp32")
    assert choose_precision("BF16", ["fp32"], bf16_cpu) == (
        "bf16", "COLLAT_CPU_PRECISION=bf16 (the model card has not accepted it: unmeasured)")
    assert choose_precision("bf16", ["fp32", "bf16"], old_cpu)[0] == "fp32"
    assert choose_precision("int8", ["fp32"], bf16_cpu) == (
        "fp32", "COLLAT_CPU_PRECISION=int8, but no INT8-quantized model is in this repository")
    # INT8: only with the quantized model in the repository, the card's acceptance and VNNI (the measurement's units).
    vnni_cpu = [*bf16_cpu, "VNNI"]
    assert choose_precision(None, ["fp32", "bf16", "int8"], vnni_cpu, int8_model=True) == (
        "int8", "the CPU has INT8 dot-product units (VNNI) and the model card accepts int8 (measured on held-out "
        "phantoms)")
    assert choose_precision(None, ["fp32", "bf16", "int8"], bf16_cpu, int8_model=True)[0] == "bf16"  # no VNNI
    assert choose_precision(None, ["fp32", "bf16", "int8"], vnni_cpu, int8_model=False)[0] == "bf16"  # no IR
    assert choose_precision(None, ["fp32", "int8"], ["FP32", "INT8"], int8_model=True)[0] == "fp32"
    assert choose_precision(None, ["fp32", "bf16"], vnni_cpu, int8_model=True)[0] == "bf16"  # card: no int8
    assert choose_precision(None, ["fp32", "int8"], vnni_cpu, "onnxruntime", int8_model=True)[0] == "fp32"
    assert choose_precision("int8", ["fp32"], bf16_cpu, int8_model=True) == (
        "int8", "COLLAT_CPU_PRECISION=int8 (the model card has not accepted it: unmeasured)")
    assert choose_precision("int8", ["fp32", "int8"], ["FP32"], int8_model=True) == (
        "fp32", "COLLAT_CPU_PRECISION=int8, but this CPU has no INT8 units")
    with pytest.raises(ValueError, match="COLLAT_CPU_PRECISION='fp16': choose fp32, bf16, int8"):
        choose_precision("fp16", ["fp32"], bf16_cpu)
    (tmp_path / "model.json").write_text(json.dumps({"accepted_precisions": ["fp32", "bf16"]}))
    assert accepted_precisions(str(tmp_path)) == ["fp32", "bf16"]
    assert accepted_precisions(str(tmp_path / "missing")) == ["fp32"]  # an older repository: FP32 only


def test_a_batch_runs_in_chunks_with_the_same_outputs_in_order():
    """The U-Net's slabs run four at a time to bound the runtime's memory; outputs come back whole and in order."""
    from collat_ensemble.server.network_model import run_in_chunks
    from collat_ensemble.server.repository import render_config
    from collat_export.io_spec import network_io

    class Doubler:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def run(self, feed):
            self.sizes.append(len(feed["X"]))
            return [feed["X"] * 2.0, feed["X"][:, :1]]

    x = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)
    runner = Doubler()
    doubled, first = run_in_chunks(runner, {"X": x}, 4)
    assert runner.sizes == [4, 4, 3]
    np.testing.assert_array_equal(doubled, x * 2.0)
    np.testing.assert_array_equal(first, x[:, :1])
    whole = Doubler()
    run_in_chunks(whole, {"X": x}, 0)
    assert whole.sizes == [11]
    config = render_config(network_io(get_preset("hypo", "tiny")), "python-onnx")
    assert 'key: "run_chunk"\n    value: { string_value: "2" }' in config
    assert 'key: "static_shapes"\n    value: { string_value: "0" }' in config
    mrod = render_config(network_io(get_preset("mrod", "fine")), "python-onnx")
    assert 'key: "static_shapes"\n    value: { string_value: "1" }' in mrod
    assert "max_batch_size: 2\n" in mrod and "preferred_batch_size: [ 2 ]" in mrod  # a CPU runs a series at a time
    assert "max_batch_size: 4\n" in render_config(network_io(get_preset("mrod", "fine")), "tensorrt")


def test_the_export_copies_the_precisions_the_card_accepts(tmp_path):
    import json
    import shutil

    from collat_export.onnx_export import accepted_precisions
    from collat_export.weights import demo_checkpoint

    checkpoint = tmp_path / "checkpoint.pt"
    shutil.copyfile(demo_checkpoint("hypo"), checkpoint)
    assert accepted_precisions(str(checkpoint)) == ["fp32"]  # no card
    (tmp_path / "model_card.json").write_text(json.dumps({"precision": {"accepted": ["fp32", "bf16"]}}))
    assert accepted_precisions(str(checkpoint)) == ["fp32", "bf16"]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_both_cpu_runners_give_the_same_batched_outputs(runtime, tmp_path):
    """What the Python-backend model runs: a batch of two slabs, outputs copied out of the runtime's buffers."""
    import torch

    from collat_ensemble.server.network_model import make_runner
    from collat_export.io_spec import example_inputs, run_torch
    from collat_export.networks import build_network
    from collat_export.onnx_export import export_onnx

    torch.manual_seed(2)
    preset = get_preset("hypo", "tiny")
    network = build_network(preset).eval()
    export_onnx(network, preset, tmp_path)
    runner = make_runner(runtime, str(tmp_path / "model.onnx"), 2, ["LESION_PROB"])
    x = example_inputs(preset, batch=2, seed=5)
    first = runner.run(x)[0]
    runner.run(example_inputs(preset, batch=2, seed=6))  # must not overwrite what the first call returned
    np.testing.assert_allclose(first, run_torch(network, preset, x), atol=1e-4)


def test_a_runner_compiled_per_shape_follows_the_grid_and_keeps_only_the_last(tmp_path):
    """3D-MROD-Net's served runner (``static_shapes``): each new grid is compiled for, the values stay PyTorch's."""
    import torch

    from collat_ensemble.server.network_model import OpenVINORunner
    from collat_export.io_spec import example_inputs, run_torch
    from collat_export.networks import build_network
    from collat_export.onnx_export import export_onnx

    torch.manual_seed(3)
    preset = get_preset("mrod", "fine")
    network = build_network(preset).eval()
    export_onnx(network, preset, tmp_path)
    runner = OpenVINORunner(str(tmp_path / "model.onnx"), 2, ["PHASES"], static_shapes=True)
    assert runner.shapes is None  # nothing compiled before the first series
    for slices, width in ((8, 64), (10, 128), (8, 64)):
        x = example_inputs(preset, slices=slices, height=64, width=width, seed=slices)
        np.testing.assert_allclose(runner.run(x)[0], run_torch(network, preset, x), atol=1e-4)
        assert runner.shapes == {"MROD_INPUT": (1, preset.geometry.channels, slices, 64, width)}


def test_the_full_presets_space_the_unets_windows_by_8_and_the_tiny_by_4(tmp_path):
    """The stride study's evidence (collat-train stride-study) as the repository builder's defaults."""
    for preset, stride in (("full", "8"), ("tiny", "4")):
        result = CliRunner().invoke(cli_main, ["repository", "--target", "tensorrt", "--config-only", "--preset",
                                               preset, "--out", str(tmp_path / preset)])
        assert result.exit_code == 0, result.output
        cfg = parse((tmp_path / preset / "preprocess_diffusion" / "config.pbtxt").read_text())
        assert cfg.parameters["unet_stride"].string_value == stride
