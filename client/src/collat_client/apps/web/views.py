"""What the page shows of a study, read from the node's work folder (the node's only record, so the page is right
after a restart): its state, identity, stage times and the analyses' metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...schema import Metrics
from ..node import Node, read_identity, study_identity
from ..spool import DONE, FAILED, QUEUE, QueuedStudy, StudyState

STATE_TEXT = {
    "receiving": "receiving",
    "queued": "queued",
    "analysing": "analysing",
    "retrying": "retrying",
    "waiting_for_clinical": "waiting for clinical inputs",
    "sent": "sent",
    "failed": "failed",
}
STAGES = (("first_instance", "first image received"), ("queued", "study complete, queued"),
          ("analysing", "analysis started"), ("analysed_collaterals", "collaterals analysed"),
          ("waiting_for_clinical", "waiting for clinical inputs"), ("clinical_entered", "clinical inputs entered"),
          ("analysed_diffusion", "diffusion analysed"), ("analysed_collaterals_diffusion", "analysed"),
          ("first_sent", "first results sent"), ("sent", "results sent"), ("retried", "retried by hand"))


@dataclass
class Analysis:
    name: str  # "collaterals", "diffusion" or both, joined by "+"
    metrics: Metrics
    picture: str  # file name in the study's view folder


@dataclass
class StudyView:
    key: str
    state: str
    detail: str  # the failure's reason, the last transient error, or what the study waits for
    identity: dict[str, str]
    instances: int
    updated: float
    stages: list[tuple[str, float]] = field(default_factory=list)  # (what, when) in order
    analyses: list[Analysis] = field(default_factory=list)
    retryable: bool = False

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]


def _stages(state: StudyState) -> list[tuple[str, float]]:
    return sorted(((text, state.events[name]) for name, text in STAGES if name in state.events), key=lambda s: s[1])


def _analyses(folder: Path) -> list[Analysis]:
    view = folder / "view"
    found = []
    for path in sorted(view.glob("[!.]*.json"), key=lambda p: p.stat().st_mtime) if view.is_dir() else []:
        try:
            metrics = Metrics.model_validate(json.loads(path.read_text()))
        except ValueError:
            continue
        found.append(Analysis(path.stem, metrics, f"{path.stem}.png"))
    return found


def study_view(node: Node, where: str, study: QueuedStudy, *, with_results: bool = True) -> StudyView:
    state = study.load()
    if where == DONE:
        name, detail = "sent", ""
    elif where == FAILED:
        name = "failed"
        reason = study.folder / "reason.txt"
        detail = reason.read_text().strip() if reason.is_file() else ""
    elif node.busy_with == study.key:
        name, detail = "analysing", ""
    elif state.waiting_for_clinical:
        name, detail = "waiting_for_clinical", "the DWI waits for the NIHSS (and age, side, onset) to be entered"
    elif state.last_error:
        name, detail = "retrying", f"{state.last_error} (attempt {state.attempts + 1} at " \
                                   f"{time.strftime('%H:%M:%S', time.localtime(state.next_try))})"
    else:
        name, detail = "queued", ""
    updated = max([state.received, *state.events.values()])
    return StudyView(study.key, name, detail, study_identity(study), state.instances, updated, _stages(state),
                     _analyses(study.folder) if with_results else [],
                     retryable=where == FAILED and study.input.is_dir())


def all_studies(node: Node) -> list[StudyView]:
    """Every study the node holds, the most recently active first."""
    views = []
    for folder in node.spool.incoming():
        files = [p for p in folder.iterdir() if p.suffix == ".dcm"]
        latest = max((p.stat().st_mtime for p in files), default=folder.stat().st_mtime)
        views.append(StudyView(folder.name, "receiving", "", read_identity(folder), len(files), latest))
    for where, studies in ((QUEUE, node.spool.queued()), (DONE, node.spool.finished(DONE)),
                           (FAILED, node.spool.finished(FAILED))):
        for study in studies:
            try:
                views.append(study_view(node, where, study, with_results=False))
            except (OSError, ValueError):  # moved between listing and reading: the next refresh shows it
                continue
    return sorted(views, key=lambda v: v.updated, reverse=True)


def queue_depths(node: Node) -> dict[str, int]:
    depths = {"receiving": len(node.spool.incoming()), "queued": 0, "waiting_for_clinical": 0}
    for study in node.spool.queued():
        try:
            depths["waiting_for_clinical" if study.load().waiting_for_clinical else "queued"] += 1
        except (OSError, ValueError):
            continue
    return depths
