"""The evaluation report folder: per-subject CSV, the cohort's figures as JSON, Markdown and HTML, plots, and the
worst cases' overview pictures beside their references.

Plots use matplotlib's Agg backend (no display); every figure a plot shows is also in ``summary.json``, so the
pictures are for reading and the numbers for comparing runs.
"""

from __future__ import annotations

import csv
import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from collat_contract.names import PHASE_NAMES

from ..statistics import bland_altman
from .bids import Dataset, Subject

PLOTS = {"bland_altman_core": "Core volume (served ADC core vs reference diffusion lesion)",
         "bland_altman_hypoperfusion": "Hypoperfusion volume (served lesion vs reference)",
         "confusion_defuse3": "DEFUSE 3 target mismatch", "confusion_dawn": "DAWN clinical-core mismatch",
         "confusion_cps": "Collateral perfusion score"}
CSV_FIRST = ("subject", "status", "reason", "pipeline", "seconds", "core_ml", "reference_core_ml", "core_dice",
             "hypoperfusion_ml", "reference_hypoperfusion_ml", "reference_lesion_source", "lesion_dice",
             "lesion_withheld", "defuse3", "reference_defuse3", "reference_defuse3_source", "dawn", "reference_dawn",
             "cps", "reference_cps")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    extra = sorted({k for r in rows for k in r} - set(CSV_FIRST))
    columns = [*CSV_FIRST, *extra]
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    os.replace(tmp, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bland_altman_plot(path: Path, rows: list[dict], served: str, reference: str, title: str) -> bool:
    pairs = [(r[served], r[reference]) for r in rows if r.get(served) is not None and r.get(reference) is not None]
    limits = bland_altman([a for a, _ in pairs], [b for _, b in pairs])
    if limits is None:
        return False
    est, ref = np.array(pairs, dtype=np.float64).T
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
    ax.scatter((est + ref) / 2.0, est - ref, s=18, color="#1f4e79")
    bias, upper, lower = limits["mean_difference"], limits["upper_limit"], limits["lower_limit"]
    for y, style, label in ((bias, "-", f"bias {bias:+.1f} mL"), (upper, "--", f"+1.96 SD {upper:+.1f}"),
                            (lower, "--", f"-1.96 SD {lower:+.1f}")):
        ax.axhline(y, linestyle=style, color="#b03a2e", linewidth=1)
        ax.annotate(label, (ax.get_xlim()[1], y), ha="right", va="bottom", fontsize=8, color="#b03a2e")
    ax.set_xlabel("mean of served and reference (mL)")
    ax.set_ylabel("served - reference (mL)")
    ax.set_title(f"{title}, n = {len(pairs)}", fontsize=10)
    _save(plt, fig, path)
    return True


def confusion_plot(path: Path, matrix: list[list[int]], labels: list[str], title: str) -> bool:
    m = np.asarray(matrix)
    if m.sum() == 0:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(labels), 1.0 + 0.7 * len(labels)), dpi=100)
    ax.imshow(m, cmap="Blues")
    for (i, j), count in np.ndenumerate(m):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("served")
    ax.set_ylabel("reference")
    ax.set_title(f"{title}, n = {int(m.sum())}", fontsize=9)
    _save(plt, fig, path)
    return True


def _binary_matrix(figures: dict) -> list[list[int]]:
    """Rows and columns: no, yes."""
    return [[figures["true_negative"], figures["false_positive"]],
            [figures["false_negative"], figures["true_positive"]]]


def _slices_through(mask: np.ndarray, count: int = 3) -> list[int]:
    per_slice = mask.reshape(-1, mask.shape[2]).sum(axis=0)
    if per_slice.sum() == 0:
        return [int(k) for k in np.linspace(mask.shape[2] * 0.3, mask.shape[2] * 0.7, count).round()]
    return sorted(int(k) for k in np.argsort(per_slice)[::-1][:count])


def _worst_case_picture(path: Path, subject: Subject, folder: Path, row: dict) -> bool:
    """The served overview beside the DWI with the served and the reference core and lesion drawn on it."""
    import nibabel as nib
    from PIL import Image

    from collat_client.imaging.overview import to_ras

    from .scoring import on_grid

    overview = folder / "overview.png"
    if not overview.is_file() or subject.paths.dwi is None or not (folder / "core_mask.nii.gz").is_file():
        return False
    served_img = nib.load(str(folder / "core_mask.nii.gz"))
    affine, shape = served_img.affine, served_img.shape
    dwi = np.squeeze(np.asanyarray(nib.load(str(subject.paths.dwi)).dataobj)).astype(np.float32)
    if dwi.ndim == 4:
        dwi = dwi[..., -1]
    layers = {"served core": served_img.get_fdata() > 0}
    if (folder / "lesion_mask.nii.gz").is_file() and not row.get("lesion_withheld"):
        layers["served lesion"] = nib.load(str(folder / "lesion_mask.nii.gz")).get_fdata() > 0
    for role, label in (("core_mask", "reference core"), ("lesion_mask", "reference lesion")):
        path_ = getattr(subject.paths, role)
        if path_ is not None:
            ref = nib.load(str(path_))
            layers[label] = on_grid(np.squeeze(np.asanyarray(ref.dataobj)) > 0, ref.affine, shape, affine, 0) > 0.5
    dwi, layers = to_ras(dwi, affine), {k: to_ras(v, affine) for k, v in layers.items()}
    focus = np.zeros(dwi.shape, dtype=bool)
    for k, v in layers.items():
        if k.startswith("reference"):
            focus |= v
    slices = _slices_through(focus if focus.any() else layers["served core"])
    plt = _pyplot()
    fig = plt.figure(figsize=(13, 5.2), dpi=80)
    grid = fig.add_gridspec(2, 1 + len(slices), width_ratios=[2.2] + [1] * len(slices))
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(np.asarray(Image.open(overview).convert("RGB")))
    ax.set_axis_off()
    ax.set_title(f"{subject.id}: served overview", fontsize=9)
    lo, hi = np.percentile(dwi[dwi > 0], (1, 99.5)) if (dwi > 0).any() else (0.0, 1.0)
    colours = {"core": "#e74c3c", "lesion": "#f5b041"}
    for r, who in enumerate(("served", "reference")):
        for c, k in enumerate(slices):
            ax = fig.add_subplot(grid[r, c + 1])
            # Radiological view, as the overview: the patient's right on the image's left (RAS x reversed).
            ax.imshow(dwi[::-1, :, k].T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
            for what, colour in colours.items():
                layer = layers.get(f"{who} {what}")
                if layer is not None and layer[:, :, k].any():
                    ax.contour(layer[::-1, :, k].T.astype(float), levels=[0.5], colors=colour, linewidths=0.8)
            ax.text(2, dwi.shape[1] - 4, "R", color="#5dade2", fontsize=8, va="top")
            ax.set_axis_off()
            if c == 0:
                ax.set_title(f"{who} (core red, lesion orange)", fontsize=8, loc="left")
    _save(plt, fig, path)
    return True


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def markdown(dataset: Dataset, summary: dict, plots: list[str], worst: list[str], server: str) -> str:
    s = summary
    lines = [f"# Evaluation of the served networks on {dataset.root.name}", "",
             f"Dataset: `{dataset.root}`, layout {dataset.layout}, {s['subjects']} subjects, file list sha256 "
             f"`{dataset.file_digest[:16]}`. Server: `{server}`. Models: {s.get('models', 'n/a')}.", "",
             f"Analysed {s['done']}, failed {len(s['failed'])}, skipped {len(s['skipped'])}; hypoperfusion lesion "
             f"withheld by a quality check in {s['lesion_withheld']}. Subjects without a reference for a figure are "
             "counted beside it, not scored.", "", "## Lesions", ""]
    lines += _table(["reference", "scored", "median Dice", "mean Dice", "empty reference (not scored)"],
                    [[label, s[key]["scored"], s[key]["median"], s[key]["mean"], s[key]["empty_reference"]]
                     for key, label in (("core_dice", "core (ADC) vs reference diffusion lesion"),
                                        ("lesion_dice", "hypoperfusion lesion vs reference"))])
    lines += ["", "## Volumes", ""]
    volume_rows = []
    for key, label in (("core_volume", "core"), ("hypoperfusion_volume", "hypoperfusion")):
        v = s[key]
        ba = v["bland_altman"] or {}
        volume_rows.append([label, v["pairs"], v["lins_ccc"], v["mean_absolute_difference_ml"],
                            ba.get("mean_difference"), ba.get("lower_limit"), ba.get("upper_limit")])
    lines += _table(["volume", "pairs", "Lin's CCC", "mean abs. difference (mL)", "bias (mL)",
                     "lower limit (mL)", "upper limit (mL)"], volume_rows)
    lines += ["", "## Decisions", ""]
    lines += _table(["decision", "scored", "sensitivity", "specificity", "accuracy", "TP", "FP", "FN", "TN",
                     "withheld", "no reference"],
                    [[name, d["cases"], d["sensitivity"], d["specificity"], d["accuracy"], d["true_positive"],
                      d["false_positive"], d["false_negative"], d["true_negative"], d["withheld"],
                      d["without_reference"]] for name, d in (("DEFUSE 3", s["defuse3"]), ("DAWN", s["dawn"]))])
    cps = s["cps"]
    lines += ["", "## Collateral grade (CPS)", "",
              f"{cps['cases']} graded against the reference: exact {_fmt(cps['exact'])}, within one "
              f"{_fmt(cps['within_one'])}, weighted kappa {_fmt(cps['weighted_kappa'])}; withheld {cps['withheld']}.",
              "", "## Collateral maps", "", f"{s['maps']['scored']} subjects with reference maps (inside the served "
              "brain mask; Tanimoto and SSIM on the maps shifted to [0, 1]).", ""]
    lines += _table(["phase", "R^2", "SSIM", "Tanimoto", "MAE"],
                    [[phase, *(s["maps"]["by_phase"][phase][m] for m in ("r2", "ssim", "tanimoto", "mae"))]
                     for phase in (*PHASE_NAMES, "mean")])
    if s["failed"] or s["skipped"] or s["reference_problems"] or s["no_reference"]:
        lines += ["", "## Not analysed or not scored", ""]
        lines += [f"* {x['subject']}: failed: {x['reason']}" for x in s["failed"]]
        lines += [f"* {x['subject']}: skipped: {x['reason']}" for x in s["skipped"]]
        lines += [f"* {x['subject']}: reference not used: {x['problem']}" for x in s["reference_problems"]]
        lines += [f"* {x}: analysed, no reference to score it against" for x in s["no_reference"]]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{PLOTS[p]}](plots/{p}.png)" for p in plots]
    if worst:
        lines += ["", "## Worst cases (lowest Dice)", ""] + [f"![{w}](worst/{w}.png)" for w in worst]
    lines += ["", "Per subject: `subjects.csv`; every figure: `summary.json`."]
    return "\n".join(lines) + "\n"


def html_page(markdown_text: str) -> str:
    """The Markdown rendered by a small converter for what :func:`markdown` writes: headings, tables, lists, images."""
    body, table = [], False
    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not table else "td"
            if not table:
                body.append("<table>")
                table = True
            body.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("</table>")
            table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<figure><img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}">'
                        f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        elif line.startswith("* "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    if table:
        body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
             "text-align:right}th{background:#eef}img{max-width:100%}figure{margin:1em 0}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Evaluation</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(out: Path, dataset: Dataset, rows: list[dict], summary: dict, server: str) -> list[Path]:
    """Every file of the report folder; returns them in the order a reader would open them."""
    from .served import subject_folder

    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_csv(out / "subjects.csv", rows)
    plots = []
    for key, (served, reference) in (("bland_altman_core", ("core_ml", "reference_core_ml")),
                                     ("bland_altman_hypoperfusion",
                                      ("hypoperfusion_ml", "reference_hypoperfusion_ml"))):
        if _bland_altman_plot(out / "plots" / f"{key}.png", rows, served, reference, PLOTS[key]):
            plots.append(key)
    for key, matrix, labels in (("confusion_defuse3", _binary_matrix(summary["defuse3"]), ["no", "yes"]),
                                ("confusion_dawn", _binary_matrix(summary["dawn"]), ["no", "yes"]),
                                ("confusion_cps", summary["cps"]["confusion"], [str(g) for g in range(6)])):
        if confusion_plot(out / "plots" / f"{key}.png", matrix, labels, PLOTS[key]):
            plots.append(key)
    worst = []
    by_id = {s.id: s for s in dataset.subjects}
    rows_by_id = {r["subject"]: r for r in rows}
    if summary["worst"]:
        (out / "worst").mkdir(exist_ok=True)
    for subject_id in summary["worst"]:
        subject = by_id[subject_id]
        if _worst_case_picture(out / "worst" / f"{subject_id}.png", subject, subject_folder(out, subject),
                               rows_by_id[subject_id]):
            worst.append(subject_id)
    text = markdown(dataset, summary, plots, worst, server)
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _atomic_write(out / "summary.md", text)
    _atomic_write(out / "summary.html", html_page(text))
    return [out / "summary.html", out / "summary.md", out / "summary.json", out / "subjects.csv",
            *(out / "plots" / f"{p}.png" for p in plots), *(out / "worst" / f"{w}.png" for w in worst)]
