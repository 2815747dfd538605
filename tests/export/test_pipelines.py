"""The Python steps' and ensembles' configs: Triton's schema, the contract, and wiring that cannot dangle."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from collat_contract.tensors import PIPELINES
from collat_ensemble.server.pipelines import ensembles, model_py, python_steps, render_ensemble, render_python_step
from collat_ensemble.serving.triton_models import STEPS
from collat_export.io_spec import network_io
from collat_export.presets import get_preset

MROD, HYPO = network_io(get_preset("mrod", "tiny")), network_io(get_preset("hypo", "tiny"))


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def all_configs() -> dict[str, model_config_pb2.ModelConfig]:
    configs = {s.name: parse(render_python_step(s, {})) for s in python_steps(MROD, HYPO)}
    for pipeline in ensembles():
        configs[pipeline.name] = parse(render_ensemble(pipeline, MROD, HYPO))
    for io in (MROD, HYPO):
        configs[io.triton_name] = model_config_pb2.ModelConfig(
            name=io.triton_name,
            input=[model_config_pb2.ModelInput(name=t.name) for t in io.inputs],
            output=[model_config_pb2.ModelOutput(name=t.name) for t in io.outputs])
    return configs


@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_ensemble_wiring_is_complete(pipeline):
    """Every step input is an ensemble input or an earlier step's output; every ensemble output is produced."""
    configs = all_configs()
    cfg = configs[pipeline]
    assert cfg.platform == "ensemble" and cfg.max_batch_size == 0
    assert [i.name for i in cfg.input] == [t.name for t in PIPELINES[pipeline].inputs]
    available = {i.name for i in cfg.input}
    produced: list[str] = []
    for step in cfg.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {i.name for i in model.input}, f"{step.model_name} inputs not all mapped"
        assert set(step.output_map) <= {o.name for o in model.output}
        missing = set(step.input_map.values()) - available
        assert not missing, f"{step.model_name} reads {missing} before anything writes them"
        available |= set(step.output_map.values())
        produced += list(step.output_map.values())
    assert len(produced) == len(set(produced)), "two steps write the same tensor"
    assert {o.name for o in cfg.output} <= set(produced)


def test_python_steps_match_their_adapters_and_the_contract():
    for step in python_steps(MROD, HYPO):
        cfg = parse(render_python_step(step, {"network_model": "x"}))
        adapter = STEPS[step.name]
        assert adapter.arity == (len(cfg.input), len(cfg.output)), step.name
        assert cfg.backend == "python" and cfg.max_batch_size == 0
        assert f"import {step.adapter} as TritonPythonModel" in model_py(step)
        assert STEPS[step.name].__name__ == step.adapter
    contract_names = {t.name: t for p in PIPELINES.values() for t in p.inputs + p.outputs}
    for step in python_steps(MROD, HYPO):
        for t in step.inputs + step.outputs:
            if t.name in contract_names:
                assert t == contract_names[t.name]


def test_slab_batch_reaches_the_unet_as_its_batch_axis():
    """preprocess_diffusion's SLABS [-1, 4, 16, 128, 128] is the U-Net's [batch] + [4, 16, 128, 128]."""
    steps = {s.name: s for s in python_steps(MROD, HYPO)}
    slabs = next(t for t in steps["preprocess_diffusion"].outputs if t.name == "SLABS")
    unet_input = HYPO.inputs[0]
    assert slabs.dims[0] == -1 and slabs.dims[1:] == unet_input.dims
    mrod_input = next(t for t in steps["preprocess_perfusion"].outputs if t.name == "MROD_INPUT")
    assert mrod_input.dims[0] == 1 and mrod_input.dims[1] == MROD.inputs[0].dims[0]
