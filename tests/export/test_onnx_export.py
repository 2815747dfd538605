import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from collat_ensemble.server.fp16 import convert_to_fp16
from collat_ensemble.server.tensorrt_build import FP16_ENGINE_TOLERANCE
from collat_export.networks import build_network
from collat_export.onnx_export import (
    FP32_PARITY_TOLERANCE,
    ParityError,
    export_onnx,
    parity_inputs,
    run_onnxruntime,
    sha256_file,
)
from collat_export.presets import get_preset


@pytest.fixture(scope="module", params=["mrod", "hypo"])
def exported(request, tmp_path_factory):
    torch.manual_seed(1)
    p = get_preset(request.param, "tiny")
    net = build_network(p).eval()
    out = tmp_path_factory.mktemp(request.param)
    report = export_onnx(net, p, out)
    return p, net, out, report


def test_export_passes_checker_and_parity(exported):
    p, _, out, report = exported
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert report.passed and report.max_abs_diff <= FP32_PARITY_TOLERANCE
    assert report.input_shapes[next(iter(report.input_shapes))][0] == 2, "parity runs on a batch of 2"


def test_sidecar_describes_the_model(exported):
    p, _, out, report = exported
    meta = json.loads((out / "model.json").read_text())
    assert meta["sha256"] == sha256_file(out / "model.onnx")
    assert meta["preset"] == "tiny" and meta["model"] == p.model
    assert meta["opset"] == 17
    assert meta["parity"]["max_abs_diff"] == pytest.approx(report.max_abs_diff)


def test_batch_and_spatial_axes_are_dynamic(exported):
    p, _, out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    first = model.graph.input[0].type.tensor_type.shape.dim
    assert first[0].dim_param, "batch axis must be symbolic"
    if p.model == "mrod":
        assert all(first[i].dim_param for i in (2, 3, 4))
        assert first[1].dim_value == 60
        y = run_onnxruntime(out / "model.onnx",
                            {"MROD_INPUT": np.zeros((3, 60, 1, 32, 160), np.float32)})
        assert y.shape == (3, 5, 1, 32, 160)
    else:
        assert [first[i].dim_value for i in (1, 2, 3, 4)] == [4, 16, 128, 128]


def test_training_only_ordinal_head_is_not_exported(exported):
    p, _, out, _ = exported
    names = {i.name for i in onnx.load(str(out / "model.onnx")).graph.initializer}
    assert not any("ordinal" in n for n in names)
    if p.model == "mrod":
        assert any("regression_head" in n for n in names)


def test_fp16_graph_keeps_normalization_in_fp32_and_stays_close(exported):
    p, _, out, _ = exported
    fp16 = convert_to_fp16(onnx.load(str(out / "model.onnx")))
    onnx.checker.check_model(fp16)
    inits = {t.name: t.data_type for t in fp16.graph.initializer}
    bn_params = {i for n in fp16.graph.node if n.op_type == "BatchNormalization" for i in n.input[1:]}
    # the exporter folds conv+BN; the BN after MROD's transposed convolutions survives
    assert bn_params or p.model == "hypo"
    assert all(inits[i] == TensorProto.FLOAT for i in bn_params)
    conv_weights = [n.input[1] for n in fp16.graph.node if n.op_type == "Conv"]
    assert all(inits[w] == TensorProto.FLOAT16 for w in conv_weights if w in inits)
    assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in fp16.graph.input)
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in fp16.graph.output)
    path = out / "fp16.onnx"
    onnx.save(fp16, str(path))
    x = parity_inputs(p)
    diff = np.abs(run_onnxruntime(out / "model.onnx", x) - run_onnxruntime(path, x))
    assert diff.max() <= FP16_ENGINE_TOLERANCE


@pytest.mark.slow
def test_parity_failure_leaves_no_model_behind(tmp_path, monkeypatch):
    import collat_export.onnx_export as mod

    p = get_preset("hypo", "tiny")
    monkeypatch.setattr(mod, "run_onnxruntime", lambda path, inputs: mod.run_torch(build_network(p), p, inputs))
    with pytest.raises(ParityError, match="FAILED"):
        export_onnx(build_network(p), p, tmp_path)
    assert not (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "model.onnx.partial").exists()


@pytest.mark.slow
@pytest.mark.parametrize("preset_name", ["tiny", "full"])
@pytest.mark.parametrize("model", ["mrod", "hypo"])
def test_openvino_matches_pytorch_for_both_networks_and_presets(model, preset_name, tmp_path):
    """The export's parity step holds OpenVINO (the CPU runtime the server prefers) to the FP32 tolerance too."""
    torch.manual_seed(4)
    p = get_preset(model, preset_name)
    export_onnx(build_network(p).eval(), p, tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    parity = meta["parity_openvino"]
    assert parity["candidate"] == "openvino" and parity["reference"] == "pytorch"
    assert parity["max_abs_diff"] <= FP32_PARITY_TOLERANCE


@pytest.mark.slow
def test_the_fine_preset_exports_with_its_head_and_a_run_time_grid(tmp_path):
    """The fine head (trained: not zero) and its resampling to a grid read at run time survive ONNX, in both CPU
    runtimes, on a grid other than the tracing one."""
    torch.manual_seed(5)
    p = get_preset("mrod", "fine")
    net = build_network(p).eval()
    with torch.no_grad():
        net.fine.out.weight.normal_(0.0, 0.2)
    report = export_onnx(net, p, tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert report.passed and meta["preset"] == "fine" and meta["parity_openvino"]["max_abs_diff"] <= \
        FP32_PARITY_TOLERANCE
    assert report.input_shapes["MROD_INPUT"] == [2, 60, 11, 192, 64]  # a multiple of 64: the coarse path's rule
