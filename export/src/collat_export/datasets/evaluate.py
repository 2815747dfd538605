"""``collat-train evaluate --data``: a labelled dataset through the running server into a report folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collat_client import CollatClient, ServerUnavailable

from .bids import Dataset, DatasetLayout, read_dataset
from .report import write_report
from .scoring import score_subject, summarize
from .served import ServerGone, run_dataset, subject_folder


def _models(out: Path, dataset: Dataset) -> str:
    """The served models' names and versions, from the first analysed subject's metrics (the report's header)."""
    for subject in dataset.subjects:
        path = subject_folder(out, subject) / "metrics.json"
        if path.is_file():
            models: dict[str, Any] = json.loads(path.read_text()).get("models", {})
            return ", ".join(f"{name} {info.get('version', '?')}" + (f" ({info['preset']})" if info.get("preset")
                                                                    else "") for name, info in sorted(models.items()))
    return "n/a"


def evaluate_dataset(root: Path, out: Path, url: str, *, layout: DatasetLayout | None = None,
                     protocol: str = "http", allow_b_value: bool = False, concurrency: int = 1,
                     progress: Callable[[str], None] = lambda _: None) -> tuple[dict[str, Any], list[Path]]:
    """Run, score and report every subject; raises :class:`~.bids.DatasetError` for an unreadable dataset and
    :class:`ServerGone` when no server answers (what finished is kept, the same call resumes)."""
    dataset = read_dataset(root, layout)
    progress(f"{dataset.root}: {dataset.layout} layout, {len(dataset.subjects)} subjects; results in {out}")
    out.mkdir(parents=True, exist_ok=True)
    with CollatClient(url, protocol=protocol) as client:  # type: ignore[arg-type]
        try:
            ready = client.server_ready()
        except ServerUnavailable as exc:
            raise ServerGone(f"{exc} (start one with `make serve`, or pass --url)") from None
        if not ready:
            raise ServerGone("the server answers but is not ready")
        outcomes = run_dataset(dataset, out, client, progress, allow_b_value, concurrency)
    rows = [score_subject(s, subject_folder(out, s), o) for s, o in zip(dataset.subjects, outcomes, strict=True)]
    summary = summarize(rows)
    summary["models"] = _models(out, dataset)
    summary["dataset"] = {"root": str(dataset.root), "layout": dataset.layout, "file_digest": dataset.file_digest,
                          **dataset.summary()}
    files = write_report(out, dataset, rows, summary, url)
    return summary, files
