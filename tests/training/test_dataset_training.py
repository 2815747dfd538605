"""Fine-tuning from a labelled dataset: the subject split, samples prepared as the server prepares scans (the label
on the network grid equal to the phantom's own), a resumed run identical to an uninterrupted one, and
`collat-train hypo --data` giving a checkpoint, a model card that records the dataset, and a network card that
imports (serving it is tested in tests/serving/test_dataset_evaluation.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from collat_ensemble.phantom import generate_case
from collat_export.datasets import read_dataset
from collat_export.datasets.phantom_dataset import write_phantom_dataset
from collat_export.datasets.training import hypo_subject_sample, split_subjects
from collat_export.presets import get_preset
from collat_export.training.data import HypoSample, hypo_sample
from collat_export.training.loop import TrainConfig, train_hypo
from collat_export.weights import demo_checkpoint


def test_the_split_is_by_subject_disjoint_and_stable_as_the_dataset_grows():
    ids = [f"sub-{i}" for i in range(200)]
    split = split_subjects(ids, seed=3)
    parts = [set(split[k]) for k in ("train", "validation", "test")]
    assert sum(map(len, parts)) == 200 and set().union(*parts) == set(ids)
    assert 10 <= len(split["validation"]) <= 30 and 10 <= len(split["test"]) <= 30
    grown = split_subjects(ids + [f"sub-{i}" for i in range(200, 260)], seed=3)
    assert all(set(split[k]) <= set(grown[k]) for k in split)  # nobody moved
    assert split_subjects(ids, seed=4) != split
    assert {k: len(v) for k, v in split_subjects(["a", "b", "c"]).items()} == {"train": 1, "validation": 1, "test": 1}
    assert split_subjects(["a"]) == {"train": ["a"], "validation": [], "test": []}


def test_a_dataset_subject_becomes_the_sample_the_phantom_case_makes(tmp_path: Path):
    root = write_phantom_dataset(tmp_path / "ds", [6], "bids")
    subject = read_dataset(root).subjects[0]
    sample = hypo_subject_sample(subject)
    assert isinstance(sample, HypoSample)
    direct = hypo_sample(generate_case(6, space="native"))
    np.testing.assert_array_equal(sample.lesion, direct.lesion)
    # float16 steps; the images' NIfTI round trip can move the registration by a hair, and with it a few brain-edge
    # voxels in or out of the mask
    close = np.isclose(sample.volume.astype(np.float32), direct.volume.astype(np.float32), rtol=2e-3, atol=1e-3)
    assert close.mean() >= 0.995
    assert sample.nihss == pytest.approx(direct.nihss)
    assert sample.lesion_ml == pytest.approx(direct.lesion_ml, abs=0.01)
    no_target = read_dataset(write_phantom_dataset(tmp_path / "soop", [6], "soop")).subjects[0]
    assert hypo_subject_sample(no_target) == ("no reference hypoperfusion lesion (a lesion mask or a Tmax map): "
                                              "the U-Net's target")  # SOOP draws the diffusion lesion only


def _samples(n: int) -> list[HypoSample]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        volume = rng.random((4, 60, 128, 128), dtype=np.float32).astype(np.float16)
        lesion = np.zeros((60, 128, 128), dtype=bool)
        lesion[20:30, 40:60, 40:70] = True
        out.append(HypoSample(volume, lesion, 0.5))
    return out


def test_a_resumed_run_ends_where_an_uninterrupted_one_does():
    preset = get_preset("hypo", "tiny")
    samples = _samples(3)
    cfg = TrainConfig(epochs=2, batch=2, lr=1e-3, slabs_per_case=1, crop=32, threads=1)
    straight = train_hypo(preset, samples[:2], samples[2:], cfg, progress=lambda _: None)
    snapshots = []
    train_hypo(preset, samples[:2], samples[2:], TrainConfig(**{**cfg.as_dict(), "epochs": 1}),
               progress=lambda _: None, on_epoch=snapshots.append)
    lines = []
    resumed = train_hypo(preset, samples[:2], samples[2:], cfg, progress=lines.append, resume=snapshots[0])
    assert lines[0].startswith("resuming after epoch 1") and len(resumed.history) == 2
    assert resumed.best_val_loss == pytest.approx(straight.best_val_loss, rel=1e-6)
    for (name, a), b in zip(straight.network.state_dict().items(), resumed.network.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_fine_tuning_on_a_dataset_writes_a_checkpoint_and_both_cards(tmp_path: Path):
    root = write_phantom_dataset(tmp_path / "ds", range(20, 25), "bids")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "collat_export.training.cli", "hypo", "--data", str(root), "--epochs", "3",
               "--phantom-fraction", "0", "--eval-seeds", "0-0", "--threads", "1", "--workers", "1",
               "--init", str(demo_checkpoint("hypo")), "--space", "native", "--slabs-per-case", "1",
               "--out", str(out)]
    # Stopped after its first epoch (as a machine that goes down would), then resumed: it goes on from there.
    stopped = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "resume.pt").exists() and stopped.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped.kill()
    stopped.wait()
    assert (out / "resume.pt").exists()
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after epoch" in done.stderr and "epoch 3/3" in done.stderr
    card = json.loads((out / "model_card.json").read_text())
    record = card["training"]["dataset"]
    assert record["name"] == "ds" and record["subjects"] == 5 and len(record["file_digest"]) == 64
    assert sorted(sum(record["split"].values(), [])) == [f"sub-0{i}" for i in range(20, 25)]
    assert card["evaluation_dataset"]["subjects"] == len(record["split"]["test"]) >= 1
    assert "Fine-tuning dataset: ds" in (out / "model_card.md").read_text()
    assert card["disclaimer"].startswith("Fine-tuned on the research dataset ds")
    network_card = yaml.safe_load((out / "network_card.yaml").read_text())
    assert network_card["role"] == "hypoperfusion" and (out / network_card["network"]).is_file()
    assert network_card["training_domain"] == card["training_domain"]
    assert not (out / "resume.pt").exists()  # finished: nothing to resume
    # The card imports as any other network would.
    repository = tmp_path / "repo"
    built = subprocess.run([sys.executable, "-m", "collat_export.cli", "repository", "--target", "python-onnx",
                            "--out", str(repository), "--mrod-checkpoint", str(demo_checkpoint("mrod", "tiny")),
                            "--hypo-card", str(out / "network_card.yaml")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    model = json.loads((repository / "hypoperfusion_unet" / "1" / "model.json").read_text())
    assert model["preset"] == "imported:hypo-ds" and model["training_domain"] == card["training_domain"]
    # --resume refuses a snapshot of another run instead of mixing them.
    torch.save({"fingerprint": {"other": True}}, out / "resume.pt")
    refused = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "a snapshot of another run" in refused.stderr
