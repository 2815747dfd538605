"""Phantom cases written as a labelled dataset in a published layout, so that ``collat-train evaluate --data`` can
be tried (and tested) where the truth is known exactly: the reference masks are the phantom's drawn core and
hypoperfusion lesion, the reference maps its noiseless phase maps, and the table holds its NIHSS, age, side,
measured CPS grade and DEFUSE 3 decision. SOOP and ISLES'22 layouts carry what those datasets carry (diffusion and
the diffusion lesion, no side); the plain BIDS layout adds the perfusion series, Tmax and the phase maps.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from collat_ensemble.phantom import generate_case, write_case
from collat_ensemble.phantom.kinds import draw_kind

PhantomLayout = Literal["soop", "isles22", "bids"]
COLUMNS: dict[str, tuple[str, ...]] = {
    "soop": ("participant_id", "age", "nihss"),  # SOOP's table has no side, grade or decision
    "isles22": ("participant_id", "age", "nihss", "side"),
    "bids": ("participant_id", "age", "nihss", "side", "cps_grade", "defuse3"),
}


def _files(layout: PhantomLayout, seed: int) -> tuple[str, dict[str, str]]:
    """(subject folder, phantom file -> its path in the layout)."""
    if layout == "soop":
        sub = f"sub-{seed}"
        return sub, {"dwi.nii.gz": f"{sub}/dwi/{sub}_rec-TRACE_dwi.nii.gz",
                     "dwi.bval": f"{sub}/dwi/{sub}_rec-TRACE_dwi.bval",
                     "adc.nii.gz": f"{sub}/dwi/{sub}_rec-ADC_dwi.nii.gz",
                     "truth_core.nii.gz": f"derivatives/lesion_masks/{sub}/dwi/{sub}_space-TRACE_desc-lesionAcute_mask"
                                          ".nii.gz"}
    if layout == "isles22":
        sub = f"sub-strokecase{seed:04d}"
        stem = f"{sub}/ses-0001/dwi/{sub}_ses-0001"
        return sub, {"dwi.nii.gz": f"{stem}_dwi.nii.gz", "dwi.bval": f"{stem}_dwi.bval",
                     "adc.nii.gz": f"{stem}_adc.nii.gz",
                     "truth_core.nii.gz": f"derivatives/{sub}/ses-0001/{sub}_ses-0001_msk.nii.gz"}
    sub = f"sub-{seed:03d}"
    derived = f"derivatives/phantom/{sub}/{sub}"
    return sub, {"dwi.nii.gz": f"{sub}/dwi/{sub}_dwi.nii.gz", "dwi.bval": f"{sub}/dwi/{sub}_dwi.bval",
                 "adc.nii.gz": f"{sub}/dwi/{sub}_adc.nii.gz", "perfusion.nii.gz": f"{sub}/perf/{sub}_perf.nii.gz",
                 "truth_core.nii.gz": f"{derived}_desc-core_mask.nii.gz",
                 "truth_lesion.nii.gz": f"{derived}_desc-hypoperfusion_mask.nii.gz",
                 "truth_tmax.nii.gz": f"{derived}_Tmax.nii.gz",
                 "truth_maps.nii.gz": f"{derived}_desc-collateral_maps.nii.gz"}


def write_phantom_dataset(root: Path, seeds: Iterable[int], layout: PhantomLayout = "bids", *,
                          kind: str = "mca", progress: Callable[[str], None] = lambda _: None) -> Path:
    """Native-space phantom cases (modality alternating DCE/DSC by seed) as a dataset under ``root``; ``kind``
    "mixed" draws phantom version 4's mix. Each subject is written in a staging folder and moved in whole, and
    the participants table is written last."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        case = generate_case(seed, modality="dsc" if seed % 2 else "dce", space="native",
                             kind=draw_kind(seed) if kind == "mixed" else kind)
        sub, names = _files(layout, seed)
        with tempfile.TemporaryDirectory(prefix=".phantom-", dir=root) as staging:
            write_case(case, staging)
            for source, target in names.items():
                path = root / target
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(Path(staging) / source, path)
        t = case.truth
        rows.append({"participant_id": sub, "age": f"{t['age']:g}", "nihss": str(t["nihss"]),
                     "side": case.clinical_side,
                     "cps_grade": "n/a" if t.get("collateral_grade") is None else str(t["collateral_grade"]),
                     "defuse3": "yes" if t["defuse3_target_mismatch"] else "no"})
        progress(f"{sub}: {case.kind} stroke, core {t['core_ml']:.1f} mL, lesion {t['hypoperfusion_ml']:.1f} mL")
    columns = COLUMNS[layout]
    tmp = root / ".participants.tsv.partial"
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[row[c] for c in columns] for row in rows])
    os.replace(tmp, root / "participants.tsv")
    return root
