"""Registration to MNI on native-space phantoms: seconds per scan (target <= 3 s on 2 cores) and error.

Timed as the server runs it (``normalize_to_mni`` on the scan reoriented to RAS, template loaded once), on
phantoms whose true pose is known, so the error is measured in the same run as the time.
"""

from __future__ import annotations

import statistics

import numpy as np

TARGET_SECONDS = 3.0


def measure(seeds: range = range(301, 305)) -> dict:
    from collat_ensemble.geometry import reorient_to_ras
    from collat_ensemble.phantom import generate_case
    from collat_ensemble.registration import normalize_to_mni, registration_error_mm
    from collat_ensemble.template import default_template

    template = default_template()
    rows = []
    for seed in seeds:
        case = generate_case(seed, space="native")
        ras, affine, _ = reorient_to_ras(case.dwi, case.diffusion_affine)
        found = normalize_to_mni(np.asarray(ras), affine, template)
        rows.append({"seed": seed, "seconds": found.seconds, "method": found.method, "overlap": found.similarity,
                     "error_mm": registration_error_mm(found.native_to_mni, case.mni_to_native, template)})
    return {"cases": rows, "median_s": statistics.median(r["seconds"] for r in rows),
            "max_s": max(r["seconds"] for r in rows), "mean_error_mm": float(np.mean([r["error_mm"] for r in rows])),
            "max_error_mm": max(r["error_mm"] for r in rows), "target_s": TARGET_SECONDS}


def render(r: dict) -> list[str]:
    verdict = "met" if r["median_s"] <= r["target_s"] else "NOT met"
    return [
        "## Registration to MNI (native-space phantoms, 0.9 x 0.9 x 5 mm, random 15 degree / 20 mm pose)", "",
        f"Median {r['median_s']:.2f} s per scan (max {r['max_s']:.2f} s; target <= {r['target_s']:g} s: {verdict}); "
        f"error against the true pose {r['mean_error_mm']:.2f} mm mean, {r['max_error_mm']:.2f} mm worst case.", "",
        "| seed | seconds | method | brain overlap | error mm |", "|---:|---:|---|---:|---:|",
        *[f"| {c['seed']} | {c['seconds']:.2f} | {c['method']} | {c['overlap']:.3f} | {c['error_mm']:.2f} |"
          for c in r["cases"]], "",
    ]


if __name__ == "__main__":
    result = measure()
    print("\n".join(render(result)))
