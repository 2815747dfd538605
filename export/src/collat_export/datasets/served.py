"""Every subject of a dataset through the running server, as a hospital would send it: the served path (the
client SDK and the ensemble), not PyTorch, so the figures describe what is deployed.

Each subject's answer is saved under ``subjects/<id>/`` by :meth:`InferenceResult.save` (atomic) and then marked by
``status.json``, written last, so an interrupted run resumes where it stopped: a subject with a ``done`` status is
not sent again. A subject that cannot be sent (nothing the pipeline takes, a DWI without its ADC) is ``skipped``
and a refused one ``failed``, each with its reason, and both are tried again on the next run. A subject without an
NIHSS is sent with the score as not known: its core is measured and the U-Net is not run (the result says why). A
server that stops answering ends the run (:class:`ServerGone`) rather than failing every remaining subject.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from collat_client import Clinical, CollatClient, CollatError, ServerUnavailable

from .bids import Dataset, Subject

Status = Literal["done", "failed", "skipped"]
STATUS_FILE = "status.json"


class ServerGone(RuntimeError):
    """The server stopped answering; what finished is kept and the same command resumes."""


@dataclass(frozen=True)
class Outcome:
    subject: str
    status: Status
    reason: str  # empty when done
    pipeline: str | None
    seconds: float | None  # the inference round trip
    inputs: dict[str, str]  # role -> the file or folder sent


def subject_folder(out: Path, subject: Subject) -> Path:
    return out / "subjects" / subject.id


def read_outcome(folder: Path) -> Outcome | None:
    path = folder / STATUS_FILE
    if not path.is_file():
        return None
    try:
        return Outcome(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # unreadable: the subject is sent again


def _write_outcome(folder: Path, outcome: Outcome) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATUS_FILE}.partial"
    tmp.write_text(json.dumps(asdict(outcome), indent=2) + "\n")
    os.replace(tmp, folder / STATUS_FILE)


def _clinical(subject: Subject) -> Clinical:
    """The table's fields; an NIHSS it lacks is sent as not known (the core is measured, the U-Net not run, and
    the result says so) rather than guessed."""
    c = subject.clinical
    return Clinical(nihss=c.nihss, age=c.age, side=c.side or "unknown")


def request_for(subject: Subject, allow_b_value: bool = False) -> tuple[dict[str, object], dict[str, str]] | str:
    """(keyword arguments for :meth:`CollatClient.infer`, what was sent) or why the subject cannot be sent.
    ``allow_b_value``: run a DWI outside b=800-1200 (its decisions are withheld), as ``collat-client infer``."""
    p = subject.paths
    if p.dicom_study is not None:
        return ({"study": p.dicom_study, "clinical": _clinical(subject), "allow_b_value": allow_b_value},
                {"dicom_study": str(p.dicom_study)})
    kwargs, sent = {}, {}
    if p.perfusion is not None:
        kwargs["perfusion"], sent["perfusion"] = p.perfusion, str(p.perfusion)
    if p.dwi is not None and p.adc is not None:
        kwargs.update(dwi=p.dwi, adc=p.adc, clinical=_clinical(subject), allow_b_value=allow_b_value)
        sent.update(dwi=str(p.dwi), adc=str(p.adc))
    if kwargs:
        return kwargs, sent
    if p.dwi is not None:
        return "a DWI without its ADC: the diffusion analysis needs both"
    return "no perfusion series and no DWI with its ADC"


def run_subject(client: CollatClient, subject: Subject, out: Path, allow_b_value: bool = False) -> Outcome:
    folder = subject_folder(out, subject)
    request = request_for(subject, allow_b_value)
    if isinstance(request, str):
        outcome = Outcome(subject.id, "skipped", request, None, None, {})
        _write_outcome(folder, outcome)
        return outcome
    kwargs, sent = request
    try:
        result = client.infer(**kwargs)
        result.save(folder, overwrite=True)
    except ServerUnavailable as exc:
        raise ServerGone(str(exc)) from None
    except (CollatError, ValueError, OSError) as exc:  # a refused or unreadable input; ValueError: clinical ranges
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        outcome = Outcome(subject.id, "failed", message, None, None, sent)
    else:
        outcome = Outcome(subject.id, "done", "", result.pipeline, round(result.seconds, 3), sent)
    _write_outcome(folder, outcome)
    return outcome


def run_dataset(dataset: Dataset, out: Path, client: CollatClient, progress: Callable[[str], None] = lambda _: None,
                allow_b_value: bool = False, concurrency: int = 1) -> list[Outcome]:
    """Every subject's outcome in the dataset's order; subjects already done in ``out`` are not sent again.
    ``concurrency`` subjects are in flight at once (the server batches them; one client serves all threads)."""
    total = len(dataset.subjects)
    outcomes: list[Outcome | None] = [None] * total
    pending = []
    for i, subject in enumerate(dataset.subjects):
        folder = subject_folder(out, subject)
        previous = read_outcome(folder)
        if previous is not None and previous.status == "done" and (folder / "metrics.json").is_file():
            outcomes[i] = previous
            progress(f"[{i + 1}/{total}] {subject.id}: done before, kept")
        else:
            pending.append(i)
    start, finished = time.perf_counter(), 0

    def report(i: int, outcome: Outcome) -> None:
        nonlocal finished
        outcomes[i] = outcome
        finished += 1
        left = (len(pending) - finished) * (time.perf_counter() - start) / finished
        detail = f"{outcome.pipeline} in {outcome.seconds:.1f} s" if outcome.status == "done" else outcome.reason
        progress(f"[{i + 1}/{total}] {outcome.subject}: {outcome.status} ({detail}); about {left / 60:.1f} min left")

    if concurrency <= 1:
        for i in pending:
            report(i, run_subject(client, dataset.subjects[i], out, allow_b_value))
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            futures = {pool.submit(run_subject, client, dataset.subjects[i], out, allow_b_value): i for i in pending}
            try:
                for future in as_completed(futures):
                    report(futures[future], future.result())
            except ServerGone:
                for future in futures:
                    future.cancel()
                raise
    return [o for o in outcomes if o is not None]
