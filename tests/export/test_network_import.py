"""Networks trained elsewhere, imported with a card: the wrapped network gives what the network itself gives for the
served steps' inputs, every target can run it, and a bad import is refused in one line with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from foreign_networks import ChannelsLast25D, KerasUNet, TimeLast, TwoAndAHalfD, write_card

from collat_contract.network_card import CardError, parse_card
from collat_export.cli import main as export_cli
from collat_export.importing import NetworkImportError, import_network
from collat_export.importing.network import smoke_inputs
from collat_export.onnx_export import run_onnxruntime, run_openvino


@pytest.fixture(scope="module")
def keras(tmp_path_factory):
    return KerasUNet.build(tmp_path_factory.mktemp("keras"))


def _served_inputs(imported) -> dict[str, np.ndarray]:
    """What the steps feed: a phantom case's slabs or series, as at import."""
    return smoke_inputs(imported.card, imported.geometry)


@pytest.mark.slow
@pytest.mark.parametrize("build", [KerasUNet.build, TwoAndAHalfD.build, ChannelsLast25D.build, TimeLast.build],
                         ids=["channels-last-3d", "2.5d-cropped-softmax", "channels-last-2.5d-nihss", "time-last-224"])
def test_the_wrapped_network_gives_what_the_network_itself_gives(build, tmp_path):
    foreign = build(tmp_path)
    imported = import_network(foreign.card, tmp_path / "out")
    inputs = _served_inputs(imported)
    wrapped = run_onnxruntime(tmp_path / "out" / "model.onnx", inputs)
    np.testing.assert_allclose(wrapped, foreign.direct(inputs), atol=1e-5)
    np.testing.assert_allclose(run_openvino(tmp_path / "out" / "model.onnx", inputs), wrapped, atol=1e-4)
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["card"]["name"] == imported.card.name and len(meta["card_sha256"]) == 64
    assert meta["preset"] == f"imported:{imported.card.name}" and meta["not_for_clinical_use"] is True
    assert [t["name"] for t in meta["inputs"]] == [t.name for t in imported.io.inputs]


@pytest.mark.slow
def test_a_collateral_network_sets_the_grid_the_series_is_resampled_to(tmp_path):
    imported = import_network(TimeLast.build(tmp_path).card, tmp_path / "out")
    g = imported.geometry
    assert (g.channels, g.slices, g.height, g.width, g.frame_seconds) == (30, 20, 224, 224, 2.0)
    assert _served_inputs(imported)["MROD_INPUT"].shape == (1, 30, 20, 224, 224)


@pytest.mark.slow
def test_a_torchscript_network_imports_as_its_onnx_twin(keras, tmp_path):
    import torch
    from foreign_networks import ChannelsLastUNet

    torch.jit.trace(ChannelsLastUNet().eval(), (torch.zeros(1, 16, 128, 128, 4), torch.zeros(1, 1))).save(
        str(tmp_path / "unet.pt"))
    card = write_card(tmp_path / "unet.yaml", KerasUNet.CARD.replace("unet.onnx", "unet.pt"))
    imported = import_network(card, tmp_path / "out")
    inputs = _served_inputs(imported)
    np.testing.assert_allclose(run_onnxruntime(tmp_path / "out" / "model.onnx", inputs), keras.direct(inputs),
                               atol=1e-5)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.replace("card_version: 1\n", ""), "card_version: must be 1, got None"),
    (lambda c: c.replace("layout: NDHWC, channels", "layout: NDHW, channels"), "inputs.image.layout: 'NDHW' is not"),
    (lambda c: c.replace("name: input_2", "name: nihss"), "inputs.nihss.name: the network has no input 'nihss'"),
    (lambda c: c.replace("  nihss: {name: input_2, scale: 42}\n", ""), "the network's input 'input_2' is not named"),
    (lambda c: c.replace("layout: NDHWC, activation", "layout: NCDHW, activation"), "the card's layouts do not fit"),
    (lambda c: c.replace("channels: [dwi, adc, core, side]", "channels: [dwi, adc]"),
     "inputs.image.channels: the channel axis is 4 in the network but 2 here"),
    (lambda c: c.replace("activation: sigmoid", "activation: relu"), "outputs.lesion.activation: 'relu' is not"),
    (lambda c: c.replace("role: hypoperfusion", "role: collateral"), "inputs.series: missing"),
])
def test_a_bad_card_is_refused_in_one_line_naming_the_file_and_the_key(keras, tmp_path, edit, message):
    card = write_card(keras.card.parent / f"bad_{abs(hash(message))}.yaml", edit(KerasUNet.CARD))
    with pytest.raises(NetworkImportError) as info:
        import_network(card, tmp_path / "out")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(keras.card.parent) in str(info.value)
    assert not (tmp_path / "out" / "model.onnx").exists()


def _nan_network(folder):
    """A channels-last network whose output is NaN everywhere: sqrt of a negative number."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input_1"], ["mean"], axes=[4]),
             helper.make_node("Abs", ["mean"], ["size"]), helper.make_node("Neg", ["size"], ["negative"]),
             helper.make_node("Sub", ["negative", "one"], ["below"]), helper.make_node("Sqrt", ["below"], ["lesion"])]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                                                           ["b", 16, 128, 128, 4])],
                              [helper.make_tensor_value_info("lesion", TensorProto.FLOAT, ["b", 16, 128, 128, 1])],
                              initializer=[helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "nan.onnx"))
    return write_card(folder / "nan.yaml", KerasUNet.CARD.replace("unet.onnx", "nan.onnx").replace(
        "  nihss: {name: input_2, scale: 42}\n", "").replace("conv3d_18", "lesion"))


@pytest.mark.slow
def test_nan_or_out_of_range_outputs_and_old_opsets_are_refused(tmp_path):
    with pytest.raises(NetworkImportError, match="outputs.lesion: NaN or infinite output on a phantom case"):
        import_network(_nan_network(tmp_path), tmp_path / "out")
    wrong = TimeLast.build(tmp_path)
    narrow = write_card(tmp_path / "narrow.yaml", TimeLast.CARD.replace("activation: sigmoid",
                                                                        "activation: none, range: [0.4, 0.6]"))
    with pytest.raises(NetworkImportError, match=r"outputs.phases: output .* is outside the declared range"):
        import_network(narrow, tmp_path / "out")
    (tmp_path / "old").mkdir()
    with pytest.raises(NetworkImportError, match="opset 12 is too old: export the network with opset 13 or newer"):
        import_network(KerasUNet.build(tmp_path / "old", opset=12).card, tmp_path / "out")
    assert wrong.network.is_file() and not (tmp_path / "out" / "model.onnx").exists()


def test_the_cli_refuses_a_bad_import_with_exit_2_and_writes_no_repository(keras, tmp_path):
    bad = write_card(keras.card.parent / "missing.yaml", KerasUNet.CARD.replace("name: input_2", "name: nihss"))
    out = tmp_path / "repo"
    result = CliRunner().invoke(export_cli, ["repository", "--target", "python-onnx", "--out", str(out),
                                             "--preset", "tiny", "--hypo-card", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"error: {keras.network}: inputs.nihss.name: the network has no "
                                                  "input 'nihss' (it has input_1, input_2)"]
    assert not out.exists()


@pytest.mark.slow
def test_a_drafted_card_names_what_the_graph_says_and_imports_once_checked(keras, tmp_path):
    draft = tmp_path / "draft.yaml"
    result = CliRunner().invoke(export_cli, ["card", "--network", str(keras.network), "--role", "hypoperfusion",
                                             "--out", str(draft)])
    assert result.exit_code == 0, result.output
    text = draft.read_text()
    assert "name: input_1, layout: NDHWC, channels: [dwi, adc, core, side]" in text and "CHECK" in text
    assert "nihss: {name: input_2" in text and "lesion: {name: conv3d_18, layout: NDHWC" in text
    edited = write_card(draft, text.replace("scale: 21", "scale: 42"))
    imported = import_network(edited, tmp_path / "out")
    inputs = _served_inputs(imported)
    np.testing.assert_allclose(run_onnxruntime(tmp_path / "out" / "model.onnx", inputs), keras.direct(inputs),
                               atol=1e-5)


@pytest.mark.parametrize("card, message", [
    ({"card_version": 1, "role": "other"}, "role: 'other' is not one of collateral, hypoperfusion"),
    ({"card_version": 1, "role": "collateral", "network": "m.onnx", "inputs": {"series": {"name": "x",
      "layout": "NDHWC"}}, "outputs": {"phases": {"name": "y", "layout": "NDHWC"}}},
     "outputs.phases.range: missing: with activation none"),
    ({"card_version": 1, "role": "hypoperfusion", "network": "m.h5", "inputs": {}, "outputs": {}},
     "network: 'm.h5' is neither ONNX"),
    ({"card_version": 1, "role": "hypoperfusion", "network": "m.onnx",
      "inputs": {"image": {"name": "x", "layout": "NCDHW", "channels": ["dwi"]}},
      "outputs": {"lesion": {"name": "y", "layout": "NCDHW"}}, "context_slices": 3},
     "context_slices: neighbouring slices as channels are for 2D layouts"),
])
def test_the_contract_names_the_first_broken_rule(card, message):
    with pytest.raises(CardError, match=message.replace("(", r"\(")):
        parse_card(card)


# ---------------------------------------------------------------- state dicts from other code bases, by name map

NAME_MAP = """rename:
  "^net\\\\.": ""
  "^down_path\\\\.": "encoder."
  "^up_path\\\\.": "decoder."
ignore: ["^aux_head\\\\."]
"""


@pytest.fixture(scope="module")
def their_state_dict(tmp_path_factory):
    """The demo U-Net's weights as another code base names them, with a training head of its own."""
    import torch

    from collat_export.weights import demo_checkpoint

    ours = torch.load(demo_checkpoint("hypo"), map_location="cpu", weights_only=True)["state_dict"]
    theirs = {"net." + k.replace("encoder.", "down_path.", 1).replace("decoder.", "up_path.", 1): v
              for k, v in ours.items()}
    theirs["aux_head.weight"] = torch.zeros(3, 3)
    folder = tmp_path_factory.mktemp("theirs")
    torch.save({"state_dict": theirs}, folder / "theirs.pt")
    return folder / "theirs.pt", write_card(folder / "map.yaml", NAME_MAP)


@pytest.mark.slow
def test_a_state_dict_from_another_code_base_loads_through_its_name_map(their_state_dict):
    import torch

    from collat_export.checkpoint import load_checkpoint
    from collat_export.importing.name_map import load_mapped
    from collat_export.io_spec import example_inputs, run_torch
    from collat_export.weights import demo_checkpoint

    state_dict, name_map = their_state_dict
    mapped = load_mapped(state_dict, name_map, "hypo", "tiny")
    reference = load_checkpoint(demo_checkpoint("hypo"))
    inputs = example_inputs(mapped.preset, batch=1)
    with torch.no_grad():
        np.testing.assert_array_equal(run_torch(mapped.network, mapped.preset, inputs),
                                      run_torch(reference.network, reference.preset, inputs))


@pytest.mark.slow
def test_the_cli_exports_a_mapped_state_dict_with_parity(their_state_dict, tmp_path):
    state_dict, name_map = their_state_dict
    result = CliRunner().invoke(export_cli, ["onnx", "--model", "hypo", "--preset", "tiny", "--state-dict",
                                             str(state_dict), "--name-map", str(name_map), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "parity onnxruntime vs pytorch" in result.output and (tmp_path / "model.onnx").is_file()
    assert json.loads((tmp_path / "model.json").read_text())["checkpoint"] == str(state_dict)


@pytest.mark.parametrize("edit, problems", [
    (lambda m: m.replace('  "^up_path\\\\.": "decoder."\n', ""),
     ["up_path.0.", ": no such tensor here", "decoder.0.", ": nothing maps to it"]),
    (lambda m: m.replace('ignore: ["^aux_head\\\\."]', "ignore: []"), ["aux_head.weight -> aux_head.weight: no such"]),
    (lambda m: m.replace('ignore: ["^aux_head\\\\."]', 'ignore: []').replace(
        'rename:', 'rename:\n  "^aux_head": "head"'),
     ["aux_head.weight and net.head.weight both map to head.weight"]),
])
def test_a_name_map_that_leaves_anything_unmatched_loads_nothing_and_says_every_name(their_state_dict, tmp_path,
                                                                                      edit, problems):
    state_dict, name_map = their_state_dict
    bad = write_card(tmp_path / "map.yaml", edit(NAME_MAP))
    result = CliRunner().invoke(export_cli, ["onnx", "--model", "hypo", "--preset", "tiny", "--state-dict",
                                             str(state_dict), "--name-map", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "tensor(s) do not fit, nothing loaded" in result.output
    assert all(p in result.output for p in problems), result.output
    assert not (tmp_path / "o" / "model.onnx").exists()


def test_a_role_gets_one_network_and_the_other_role_the_demo_weights(keras, tmp_path):
    both = CliRunner().invoke(export_cli, ["repository", "--target", "python-onnx", "--out", str(tmp_path / "a"),
                                           "--hypo-card", str(keras.card), "--hypo-checkpoint", str(keras.network)])
    assert both.exit_code == 2 and "give one network per role" in both.output and not (tmp_path / "a").exists()
    config = CliRunner().invoke(export_cli, ["repository", "--target", "python-onnx", "--out", str(tmp_path / "b"),
                                             "--config-only", "--hypo-card", str(keras.card)])
    assert config.exit_code == 2 and "takes no network card" in config.output


@pytest.mark.slow
def test_a_card_for_one_role_serves_the_demo_weights_in_the_other(keras, tmp_path):
    from collat_export.weights import demo_checkpoint

    result = CliRunner().invoke(export_cli, ["repository", "--target", "python-onnx", "--out", str(tmp_path / "r"),
                                             "--hypo-card", str(keras.card)])
    assert result.exit_code == 0, result.output
    mrod = json.loads((tmp_path / "r" / "mrod_net" / "1" / "model.json").read_text())
    unet = json.loads((tmp_path / "r" / "hypoperfusion_unet" / "1" / "model.json").read_text())
    assert mrod["checkpoint"] == str(demo_checkpoint("mrod")) and unet["preset"] == "imported:keras-unet"


# ---------------------------------------------------------------- versions side by side

def test_version_policies_parse_render_and_choose_the_served_version():
    from collat_ensemble.server.model_versions import parse_policy, policy_block, served_version, with_policy

    assert parse_policy("specific:2,1") == ("specific", (1, 2)) and policy_block("latest") == ""
    assert policy_block("specific:1,3") == "version_policy: { specific { versions: [ 1, 3 ] } }"
    assert served_version("all", [1, 2, 3]) == 3 and served_version("specific:1,2", [1, 2, 3]) == 2
    config = with_policy(with_policy('name: "m"\n', "all"), "specific:1")
    assert config.count("version_policy") == 1 and "specific { versions: [ 1 ] }" in config
    for bad in ("newest", "specific:", "specific:0", "all:2"):
        with pytest.raises(ValueError, match="choose latest"):
            parse_policy(bad)
    with pytest.raises(ValueError, match="no version 4 here"):
        served_version("specific:4", [1, 2])


def test_an_imported_network_is_added_as_the_next_version_and_rolled_back_by_policy(keras, tmp_path):
    from collat_ensemble.server.model_versions import config_parameters

    repo = tmp_path / "repo"
    built = CliRunner().invoke(export_cli, ["repository", "--target", "python-onnx", "--config-only", "--out",
                                            str(repo)])
    assert built.exit_code == 0, built.output
    added = CliRunner().invoke(export_cli, ["add-version", "--repository", str(repo), "--hypo-card", str(keras.card)])
    assert added.exit_code == 0, added.output
    version = repo / "hypoperfusion_unet" / "2"
    assert {p.name for p in version.iterdir()} == {"model.onnx", "model.json", "model.py"}
    assert "version_policy: { all { } }" in (repo / "hypoperfusion_unet" / "config.pbtxt").read_text()
    step = config_parameters((repo / "postprocess_hypoperfusion" / "config.pbtxt").read_text())
    assert step["network_version"] == "2" and step["network_model"] == "hypoperfusion_unet"
    assert "2: imported:keras-unet " in step["network_versions"] and " card " in step["network_versions"]
    pinned = sorted(p.name for p in repo.iterdir() if "__" in p.name)  # a request can reach either version by name
    assert pinned == [f"{m}__hypoperfusion_unet_v{v}" for m in ("hypoperfusion_pipeline", "postprocess_hypoperfusion",
                                                                "stroke_triage") for v in (1, 2)]
    ensemble = (repo / "stroke_triage__hypoperfusion_unet_v1" / "config.pbtxt").read_text()
    assert 'model_name: "hypoperfusion_unet"\n      model_version: 1' in ensemble
    assert 'model_name: "postprocess_hypoperfusion__hypoperfusion_unet_v1"' in ensemble
    assert config_parameters((repo / "postprocess_hypoperfusion__hypoperfusion_unet_v1" / "config.pbtxt")
                             .read_text())["network_version"] == "1"
    back = CliRunner().invoke(export_cli, ["version-policy", "--repository", str(repo), "--model", "hypo",
                                           "--policy", "specific:1"])
    assert back.exit_code == 0 and "serve version 1" in back.output
    assert config_parameters((repo / "postprocess_hypoperfusion" / "config.pbtxt").read_text())["network_version"] \
        == "1"
    assert not [p for p in repo.iterdir() if "__" in p.name], "one loaded version: no pinned copies"
    missing = CliRunner().invoke(export_cli, ["version-policy", "--repository", str(repo), "--model", "hypo",
                                              "--policy", "specific:3"])
    assert missing.exit_code == 2 and "no version 3 here" in missing.output
    other_grid = CliRunner().invoke(export_cli, ["add-version", "--repository", str(repo), "--mrod-card",
                                                 str(TimeLast.build(tmp_path).card)])
    assert other_grid.exit_code == 2 and "needs its own repository" in other_grid.output
    assert not (repo / "mrod_net" / "2").exists()
