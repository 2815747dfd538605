import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from collat_ensemble.phantom import generate_case
from collat_export.checkpoint import load_checkpoint
from collat_export.presets import get_preset
from collat_export.training.data import build_samples, hypo_sample, parse_seed_range, training_seeds
from collat_export.training.evaluate import evaluate_hypo
from collat_export.training.loop import TrainConfig, train_hypo
from collat_export.training.losses import hypo_loss, mrod_loss, ordinal_targets


def test_ordinal_targets_follow_the_sid_edges():
    # maps in [-1, 1] -> [0, 1]; SID edges 0.001, 0.0040, 0.0159, 0.063, 0.251, 1.001
    maps = torch.tensor([-1.0, -0.99, -0.9, 0.0, 1.0])
    assert ordinal_targets(maps, 5).tolist() == [0, 1, 2, 4, 4]


def test_losses_reward_the_right_answer():
    target = torch.rand(1, 5, 2, 8, 8) * 2 - 1
    mask = torch.ones(1, 2, 8, 8, dtype=torch.bool)
    perfect_logits = torch.nn.functional.one_hot(ordinal_targets(target, 5), 5).permute(0, 1, 5, 2, 3, 4) * 50.0
    good = mrod_loss(target, perfect_logits.float(), target, mask)
    bad = mrod_loss(-target, torch.zeros_like(perfect_logits, dtype=torch.float32), target, mask)
    assert float(good) < 1e-3 < float(bad)
    lesion = (torch.rand(2, 1, 4, 8, 8) > 0.7).float()
    assert float(hypo_loss(lesion * 0.98 + 0.01, lesion)) < float(hypo_loss(1 - lesion, lesion))


def test_lesion_free_crops_do_not_punish_finding_the_lesion():
    """Batch-pooled Dice: a few false-positive voxels in an empty crop cost less than missing the lesion."""
    target = torch.zeros(2, 1, 4, 8, 8)
    target[1, 0, 1:3, 2:6, 2:6] = 1.0  # crop 0 holds no lesion, crop 1 a 32-voxel one
    found = target.clone()
    found[0, 0, 0, 0, :3] = 1.0  # three false positives in the empty crop
    missed = torch.zeros_like(target)
    assert float(hypo_loss(found * 0.98 + 0.01, target)) < 0.5 * float(hypo_loss(missed + 0.01, target))


def test_training_and_evaluation_seeds_never_meet():
    assert min(training_seeds(5)) >= 1_000_000
    with pytest.raises(ValueError, match="training seeds must be >= 1000000"):
        training_seeds(5, base=10)
    assert parse_seed_range("3-5") == [3, 4, 5] and parse_seed_range("7") == [7]
    with pytest.raises(ValueError, match="below 1000000"):
        evaluate_hypo(None, [1_000_001])


def test_one_epoch_of_mrod_training_writes_a_checkpoint_and_card(tmp_path):
    out = tmp_path / "mrod"
    result = subprocess.run(
        [sys.executable, "-m", "collat_export.training.cli", "mrod", "--cases", "2", "--epochs", "1",
         "--workers", "1", "--eval-seeds", "0-0", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stderr and "ETA" in result.stderr
    loaded = load_checkpoint(out / "checkpoint.pt")
    assert loaded.preset.name == "tiny" and loaded.training["seeds"] == [1_000_000, 1_000_001]
    card = json.loads((out / "model_card.json").read_text())
    assert card["not_for_clinical_use"] and card["evaluation"]["cases"] == 1
    assert "NOT for clinical use" in (out / "model_card.md").read_text()


def test_a_fine_network_trains_from_the_tiny_weights_and_keeps_its_samples(tmp_path):
    """The fine preset starts from a tiny checkpoint (its coarse path), trains its head, and the samples it made are
    kept for the next run."""
    from collat_export.weights import demo_checkpoint

    out, cache = tmp_path / "fine", tmp_path / "samples"
    command = [sys.executable, "-m", "collat_export.training.cli", "mrod", "--preset", "fine", "--cases", "2",
               "--epochs", "1", "--workers", "1", "--eval-seeds", "0-0", "--init", str(demo_checkpoint("mrod", "tiny")),
               "--sample-cache", str(cache), "--crop", "32", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "the fine head new" in result.stderr and "coarse path run once" in result.stderr
    loaded = load_checkpoint(out / "checkpoint.pt")
    tiny = load_checkpoint(demo_checkpoint("mrod", "tiny")).network.state_dict()
    assert loaded.preset.name == "fine" and loaded.preset.geometry.height == 128
    state = loaded.network.state_dict()
    assert all(torch.equal(state[k].half(), v.half()) for k, v in tiny.items()), "the coarse path stays as trained"
    assert float(state["fine.out.weight"].abs().sum()) > 0, "the head trained"
    kept = sorted(p.name for p in cache.rglob("*.npz"))
    assert kept == ["1000000.npz", "1000001.npz"]
    stamps = [p.stat().st_mtime_ns for p in sorted(cache.rglob("*.npz"))]
    (again,) = build_samples("mrod", loaded.preset, [1_000_000], modality="dce", motion="none", cache=cache)
    assert [p.stat().st_mtime_ns for p in sorted(cache.rglob("*.npz"))] == stamps, "reused, not made again"
    assert again.x.shape == (60, 20, 128, 128) and again.grid is None  # read back from the kept file


def test_the_volume_calibration_is_fitted_on_training_seeds_only(tmp_path):
    from collat_export.weights import demo_checkpoint

    result = subprocess.run([sys.executable, "-m", "collat_export.training.cli", "fit-volume", "--checkpoint",
                             str(demo_checkpoint("hypo")), "--seeds", "0-9"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "training seeds" in result.stderr and "Traceback" not in result.stderr


def test_one_epoch_of_unet_training_on_crops():
    preset = get_preset("hypo", "tiny")
    samples = [hypo_sample(generate_case(1_000_123))]
    cfg = TrainConfig(epochs=1, batch=2, lr=5e-4, slabs_per_case=2, crop=32)
    result = train_hypo(preset, samples, samples, cfg, progress=lambda _: None)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])


def test_a_perfect_unet_scores_near_one_through_the_served_path():
    """The ceiling (net None: the truth as registered onto the U-Net's grid): registration and the two resamplings
    alone lose a few hundredths of Dice on a native-space MCA stroke, and no decision."""
    from collat_export.training.evaluate import hypo_row

    row = hypo_row(None, 3, space="native", kinds="mca")
    assert 0.95 < row["dice"] < 1.0
    assert row["defuse3"] == row["defuse3_truth"]
    assert abs(row["pred_ml"] - row["truth_ml"]) < 0.05 * row["truth_ml"]


def test_the_ceiling_takes_no_checkpoint():
    result = subprocess.run([sys.executable, "-m", "collat_export.training.cli", "evaluate", "--model", "hypo",
                             "--ceiling", "--checkpoint", "any.pt"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--ceiling scores a perfect U-Net" in result.stderr
    assert "Traceback" not in result.stderr
