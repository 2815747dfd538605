"""``collat-phantom``: write one synthetic case (NIfTI + truth.json)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..errors import InputValidationError
from .kinds import KINDS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the case's files.")
@click.option("--seed", type=int, required=True, help="Same seed, same bytes. Seeds >= 1,000,000 are for training.")
@click.option("--modality", type=click.Choice(["dce", "dsc"]), default="dce", show_default=True)
@click.option("--grade", type=click.IntRange(0, 5), default=None,
              help="The MCA stroke's collateral grade (CPS, SPEC section 4: 0 very poor to 5 excellent), measured on "
                   "the case as truth.json collateral_grade (default: drawn with the study's frequencies).")
@click.option("--strength", type=click.IntRange(0, 5), default=None,
              help="Instead of --grade: the collateral strength of the haemodynamics (version 4's draw); the grade is "
                   "whatever it measures.")
@click.option("--kind", type=click.Choice([*KINDS, "mixed"]), default="mca", show_default=True,
              help="What the scan holds (docs/phantom.md, version 4); mixed: the seed's kind in the hospital mix.")
@click.option("--side", type=click.Choice(["left", "right"]), default=None,
              help="Lesion side, or the clinician's side for mimic and chronic (default: drawn; emboli: both).")
@click.option("--snr", type=float, default=30.0, show_default=True, help="Baseline signal / noise SD.")
@click.option("--motion", is_flag=True, help="Add per-frame rigid motion to the perfusion series.")
@click.option("--space", type=click.Choice(["mni", "native"]), default="mni", show_default=True,
              help="native: DWI/ADC on a 0.9x0.9x5 mm scanner grid in a random head pose (truth.json holds it).")
def main(out: Path, seed: int, modality: str, grade: int | None, strength: int | None, kind: str, side: str | None,
         snr: float, motion: bool, space: str) -> None:
    """Generate a phantom case: perfusion.nii.gz, dwi.nii.gz, adc.nii.gz, truth_*.nii.gz, truth.json.

    Synthetic data for pipeline validation, not patient data.

    \b
    Example:
      collat-phantom --out cases/0007 --seed 7 --modality dce --grade 0 --side left
      collat-phantom --out cases/0008 --seed 8 --space native
      collat-phantom --out cases/0009 --seed 9 --kind lacune
    """
    from .case import generate_case, write_case
    from .kinds import draw_kind

    start = time.perf_counter()
    try:
        case = generate_case(seed, modality=modality, grade=grade, strength=strength, side=side, snr=snr,
                             motion=motion, space=space, kind=draw_kind(seed) if kind == "mixed" else kind)
        files = write_case(case, out)
    except (InputValidationError, OSError) as exc:
        click.echo(f"error: {out}: {exc}", err=True)
        sys.exit(2)
    t = case.truth
    grade = "-" if t["collateral_grade"] is None else t["collateral_grade"]
    click.echo(f"case {seed}: {t['kind']} {modality} grade {grade} {t['side'] or '-'}, core {t['core_ml']:.1f} mL, "
               f"hypoperfusion {t['hypoperfusion_ml']:.1f} mL, NIHSS {t['nihss']}, age {t['age']}, "
               f"DEFUSE 3 {'yes' if t['defuse3_target_mismatch'] else 'no'} "
               f"({time.perf_counter() - start:.1f} s) -> {files['truth'].parent}")


if __name__ == "__main__":  # pragma: no cover
    main()
