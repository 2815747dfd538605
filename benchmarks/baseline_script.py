"""What a research group would otherwise run: one plain Python process per patient, PyTorch eager.

Same presets, weights and science as the server (collat_ensemble), no Triton: load NIfTI with
nibabel, preprocess, run both networks, put the maps back on the input grids, compute the
metrics. This is the baseline the served numbers are divided by.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from collat_ensemble.hypoperfusion import assess_on_scan
from collat_ensemble.preprocess import average_slabs, maps_to_grid, prepare_diffusion, prepare_perfusion
from collat_ensemble.territory import assess_collaterals
from collat_export.checkpoint import load_checkpoint
from collat_export.onnx_export import served_cps_rule
from collat_export.weights import demo_checkpoint


def load_networks():
    mrod = load_checkpoint(demo_checkpoint("mrod"))
    hypo = load_checkpoint(demo_checkpoint("hypo"))
    rule = served_cps_rule(demo_checkpoint("mrod"))  # the CPS rule fitted on these weights' maps, as served
    return mrod.network.eval().float(), mrod.preset, hypo.network.eval().float(), rule


def run_patient(case_dir: Path, nets, nihss: int = 14) -> dict:
    mrod, preset, hypo, rule = nets
    g = preset.geometry
    perf = nib.load(str(case_dir / "perfusion.nii.gz"))
    series = perf.get_fdata(dtype=np.float32)
    prepared = prepare_perfusion(series, perf.affine, float(perf.header.get_zooms()[3]), frames=g.channels,
                                 frame_interval=g.frame_seconds, slices=g.slices, height=g.height, width=g.width)
    with torch.no_grad():
        phases = mrod(torch.from_numpy(prepared.network_input[None]))[0].numpy()
    maps = maps_to_grid(phases, prepared.grid)
    assessment = assess_collaterals(np.transpose(phases, (3, 2, 1, 0)), np.transpose(prepared.mask, (2, 1, 0)),
                                    prepared.registration.native_to_mni @ prepared.grid.grid_affine, rule=rule)
    dwi, adc = nib.load(str(case_dir / "dwi.nii.gz")), nib.load(str(case_dir / "adc.nii.gz"))
    diff = prepare_diffusion(dwi.get_fdata(dtype=np.float32), adc.get_fdata(dtype=np.float32), dwi.affine,
                             nihss=nihss, side="left")
    with torch.no_grad():
        probs = hypo(torch.from_numpy(diff.slabs), torch.from_numpy(diff.nihss)).numpy()
    on_dwi, found = assess_on_scan(average_slabs(probs), diff.core, diff.brain, diff.grid, nihss=nihss, age=None)
    return {"maps": maps.shape, "lesion": on_dwi.shape, "cps": assessment.cps, "defuse3": found.defuse3.eligible}


def patients_per_minute(case_dirs: list[Path], nets, warm_up: bool = True) -> tuple[float, list[float]]:
    if warm_up:  # as the served side is warmed up too
        run_patient(case_dirs[0], nets)
    latencies = []
    start = time.perf_counter()
    for case_dir in case_dirs:
        t0 = time.perf_counter()
        run_patient(case_dir, nets)
        latencies.append(time.perf_counter() - t0)
    return len(case_dirs) / (time.perf_counter() - start) * 60.0, latencies
