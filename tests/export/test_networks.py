import math

import numpy as np
import pytest
import torch

from collat_export.io_spec import example_inputs, run_torch
from collat_export.networks import (
    HypoperfusionUNet,
    InputShapeError,
    MRODNet,
    build_network,
    check_mrod_input,
    sid_bin_edges,
)
from collat_export.networks.hypo import AttentionGate
from collat_export.networks.mrod import MBConv3d
from collat_export.presets import B0_REPEATS, B0_WIDTHS, get_preset
from collat_export.training.data import MRODSample
from collat_export.training.loop import (
    _coarse_outputs,
    _recalibrate_fine_norms,
    fine_training_loss,
    load_initial_state,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("preset", ["tiny", "full"])
def test_mrod_output_matches_input_grid(preset):
    p = get_preset("mrod", preset)
    net = build_network(p)
    # full preset at a small grid keeps the test fast; the geometry rule is the same.
    x = example_inputs(p, batch=2, slices=3, height=64, width=96)
    y = run_torch(net, p, x)
    assert y.shape == (2, 5, 3, 64, 96)
    assert np.all(np.abs(y) <= 1.0)


def test_mrod_accepts_a_single_slice_and_tiny_grid():
    p = get_preset("mrod", "tiny")
    y = run_torch(build_network(p), p, example_inputs(p, batch=1, slices=1, height=32, width=32))
    assert y.shape == (1, 5, 1, 32, 32)


@pytest.mark.parametrize("shape, message", [
    ((1, 60, 4, 48, 64), "multiples of 32"),
    ((1, 59, 4, 64, 64), "T=60"),
    ((60, 4, 64, 64), "[N, T, D, H, W]"),
    ((1, 60, 0, 64, 64), "D=0"),
])
def test_mrod_rejects_bad_geometry_with_the_rule(shape, message):
    with pytest.raises(InputShapeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_mrod_input(shape, frames=60)


def _fine_with_a_trained_coarse_path():
    """A fine network whose coarse path holds a tiny network's weights, and that tiny network."""
    tiny = build_network(get_preset("mrod", "tiny")).eval()
    fine = build_network(get_preset("mrod", "fine")).eval()
    load_initial_state(fine, tiny.state_dict())
    return tiny, fine


def test_fine_mrod_starts_as_its_coarse_path_on_the_input_grid():
    tiny, fine = _fine_with_a_trained_coarse_path()
    x = torch.from_numpy(example_inputs(get_preset("mrod", "fine"), batch=2, slices=10)["MROD_INPUT"])

    def tiny_on_the_input_grid(series: torch.Tensor) -> torch.Tensor:
        coarse_grid = torch.nn.functional.interpolate(series, scale_factor=(0.6, 0.5, 0.5), mode="trilinear")
        assert coarse_grid.shape[2:] == (6, 64, 64)
        tiny_maps = tiny.regression_head(tiny._features(coarse_grid))  # pre-tanh, on the 64x64x6 grid
        return torch.tanh(torch.nn.functional.interpolate(tiny_maps, size=(10, 128, 128), mode="trilinear"))

    with torch.no_grad():
        out = fine(x)
        mirrored = torch.flip(tiny_on_the_input_grid(torch.flip(x, dims=[-1])), dims=[-1])
        expected = 0.5 * (tiny_on_the_input_grid(x) + mirrored)  # the fine preset averages over the mirror
    assert out.shape == (2, 5, 10, 128, 128)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        fine.fine.out.weight.normal_(0.0, 0.1)
        assert float((fine(x) - out).abs().mean()) > 1e-3, "the fine head must change the maps once trained"


def test_fine_mrod_maps_of_a_mirrored_series_are_the_mirrored_maps():
    p = get_preset("mrod", "fine")
    net = build_network(p).eval()
    with torch.no_grad():
        net.fine.out.weight.normal_(0.0, 0.1)  # a head that does something
        x = torch.from_numpy(example_inputs(p, slices=4)["MROD_INPUT"])
        out, out_of_mirror = net(x), net(torch.flip(x, dims=[-1]))
        single_pass = torch.tanh(net._maps_and_features(x)[0])
    torch.testing.assert_close(out_of_mirror, torch.flip(out, dims=[-1]), atol=1e-5, rtol=1e-5)
    assert float((out - single_pass).abs().mean()) > 1e-4  # the average is not one pass


def test_fine_mrod_needs_multiples_of_64_and_refuses_foreign_weights():
    p = get_preset("mrod", "fine")
    with pytest.raises(InputShapeError, match="multiples of 64"):
        run_torch(build_network(p), p, example_inputs(p, height=96, width=128))
    hypo = build_network(get_preset("hypo", "tiny")).state_dict()
    with pytest.raises(ValueError, match="do not fit"):
        load_initial_state(build_network(p), hypo)


def test_fine_training_loss_trains_the_fine_head_only():
    tiny, fine = _fine_with_a_trained_coarse_path()
    x = torch.from_numpy(example_inputs(get_preset("mrod", "fine"), slices=4)["MROD_INPUT"])
    target, mask = torch.rand(1, 5, 4, 128, 128) * 2 - 1, torch.ones(1, 4, 128, 128, dtype=torch.bool)
    loss = fine_training_loss(fine, x, target, mask, np.random.default_rng(0), crop=32)
    loss.backward()
    assert float(loss) > 0
    assert fine.fine.out.weight.grad is not None and float(fine.fine.out.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for n, p in fine.named_parameters() if not n.startswith("fine."))


def test_the_fine_heads_batch_norms_are_set_to_the_average_over_the_training_crops():
    """After each epoch the head's statistics are the mean over one pass of crops, not the last batches' (which
    made the validation loss of the first fine weights jump between 0.05 and 0.10 from epoch to epoch)."""
    _, fine = _fine_with_a_trained_coarse_path()
    rng = np.random.default_rng(3)
    samples = [MRODSample(rng.normal(k, 1.0, (60, 4, 64, 64)).astype(np.float16), np.zeros((5, 4, 64, 64), np.float16),
                          np.ones((4, 64, 64), bool), np.ones((4, 64, 64), bool)) for k in range(3)]
    coarse = _coarse_outputs(fine, samples)
    project_conv, project_norm = fine.fine.project[0], fine.fine.project[1]
    with torch.no_grad():
        outputs = [project_conv(torch.from_numpy(s.x.astype(np.float32))[None]) for s in samples]
    expected = torch.stack([o.mean(dim=(0, 2, 3, 4)) for o in outputs]).mean(0)  # a 1x1x1 conv: flips keep it
    _recalibrate_fine_norms(fine, samples, coarse, rng, crop=64, batch=1)
    torch.testing.assert_close(project_norm.running_mean, expected, atol=1e-4, rtol=1e-4)
    assert project_norm.momentum == 0.1 and not fine.training  # as it was, and ready to validate


def test_mrod_full_preset_has_the_efficientnet_b0_encoder():
    net = MRODNet(get_preset("mrod", "full").config)
    blocks = [m for m in net.modules() if isinstance(m, MBConv3d)]
    assert len(blocks) == sum(B0_REPEATS) == 16
    assert [stage[-1].project[0].out_channels for stage in net.stages] == list(B0_WIDTHS)
    depthwise = [b.depthwise[0] for b in blocks]
    assert {d.kernel_size for d in depthwise} == {(3, 3, 3), (5, 5, 5)}
    assert all(d.stride[0] == 1 for d in depthwise), "strides must leave the slice axis alone"
    assert len(net.decoder) == 4


def test_mrod_ordinal_head_is_training_only_and_sid_bins_follow_the_formula():
    p = get_preset("mrod", "tiny")
    net = build_network(p).train()
    x = torch.from_numpy(example_inputs(p, batch=2, slices=2)["MROD_INPUT"])
    reg, logits = net.forward_train(x)
    assert reg.shape == (2, 5, 2, 64, 64)
    assert logits.shape == (2, 5, 5, 2, 64, 64)
    edges = sid_bin_edges(5).numpy()
    expected = [math.exp(math.log(0.001) + math.log(1.001 / 0.001) * i / 5) for i in range(6)]
    np.testing.assert_allclose(edges, expected, rtol=1e-6)
    assert np.all(np.diff(edges) > 0) and np.all(np.diff(np.diff(edges)) > 0), "spacing must increase"


def test_stochastic_depth_only_in_training():
    p = get_preset("mrod", "tiny")
    net = build_network(p)
    x = torch.from_numpy(example_inputs(p, batch=4, slices=2)["MROD_INPUT"])
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    rates = [m.drop_connect for m in net.modules() if isinstance(m, MBConv3d)]
    assert rates[0] == 0.0 and 0.0 < rates[-1] < p.config.drop_connect


@pytest.mark.parametrize("preset", ["tiny", "full"])
def test_unet_outputs_a_probability_per_voxel_of_the_slab(preset):
    p = get_preset("hypo", preset)
    net = build_network(p)
    x = example_inputs(p, batch=2)
    if preset == "full":  # same topology on a smaller in-plane grid for speed
        x = {"IMAGE": x["IMAGE"][..., :32, :32].copy(), "NIHSS": x["NIHSS"]}
    y = run_torch(net, p, x)
    assert y.shape == (2, 1, 16) + x["IMAGE"].shape[-2:]
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_unet_topology_and_clinical_input():
    p = get_preset("hypo", "full")
    net = HypoperfusionUNet(p.config)
    assert len([m for m in net.modules() if isinstance(m, AttentionGate)]) == 4
    assert [len(b.convs) for b in net.encoder] == [3, 3, 3, 3]
    assert net.encoder[0].convs[0][0].out_channels == 32
    assert net.bottleneck.convs[0][0].out_channels == 512
    # the decoder's first level sees the bottleneck features plus one NIHSS channel
    assert net.decoder[0].up.in_channels == 512 + 1

    tiny = get_preset("hypo", "tiny")
    small = build_network(tiny).eval()
    x = example_inputs(tiny, batch=1)
    image = torch.from_numpy(x["IMAGE"][..., :32, :32].copy())
    with torch.no_grad():
        low = small(image, torch.zeros(1, 1))
        high = small(image, torch.full((1, 1), 2.0))
    # random weights give a small effect; any effect proves the path exists
    assert (low - high).abs().max() > 1e-7, "NIHSS must reach the output"


def test_unet_rejects_wrong_slab():
    p = get_preset("hypo", "tiny")
    x = example_inputs(p)
    with pytest.raises(InputShapeError, match="16 slices"):
        run_torch(build_network(p), p, {"IMAGE": x["IMAGE"][:, :, :8].copy(), "NIHSS": x["NIHSS"]})
    with pytest.raises(InputShapeError, match="nihss"):
        run_torch(build_network(p), p, {"IMAGE": x["IMAGE"], "NIHSS": np.zeros((1, 2), np.float32)})
