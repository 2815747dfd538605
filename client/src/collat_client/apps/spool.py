"""The DICOM node's durable work folder: every study is on disk before anything is done with it.

    WORK/incoming/<key>/<SOPInstanceUID>.dcm   instances as they arrive (written aside, then renamed in)
    WORK/queue/<key>/input/                    a study complete after the quiet period (moved in one rename)
    WORK/queue/<key>/results/                  its DICOM results, written once (a retry sends the same UIDs)
    WORK/queue/<key>/state.json                attempts, next try, last error, the result files already sent,
                                               when each stage began, the analyses done, waiting for clinical inputs
    WORK/queue/<key>/identity.json             who the study is (patient, accession), for the node's page only
    WORK/queue/<key>/view/                     each analysis' metrics and overview picture, for the node's page
    WORK/done/<key>/                           sent: the record and the results (the input is deleted)
    WORK/failed/<key>/                         could not be processed: the input kept, and reason.txt

Each step is a rename or a write-then-rename, so a node killed at any moment restarts into a consistent
folder: incoming studies wait out their quiet period again, queued studies are processed from the step they
reached, and a result already sent is not sent again. ``<key>`` is a hash of the StudyInstanceUID: folder
names and log lines carry no identifier.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

INCOMING, QUEUE, DONE, FAILED = "incoming", "queue", "done", "failed"


def study_key(study_uid: str) -> str:
    return hashlib.sha256(study_uid.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


@dataclass
class StudyState:
    received: float
    instances: int
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    results_written: bool = False
    sent: list[str] = field(default_factory=list)  # result files (relative paths) the destination stored
    events: dict[str, float] = field(default_factory=dict)  # stage -> when it happened (the node's page, metrics)
    analysed: list[str] = field(default_factory=list)  # analyses done and written: "collaterals", "diffusion"
    waiting_for_clinical: bool = False  # the diffusion analysis waits for the NIHSS (entered on the node's page)


@dataclass(frozen=True)
class QueuedStudy:
    key: str
    folder: Path

    @property
    def input(self) -> Path:
        return self.folder / "input"

    @property
    def results(self) -> Path:
        return self.folder / "results"

    def load(self) -> StudyState:
        return StudyState(**json.loads((self.folder / "state.json").read_text()))

    def save(self, state: StudyState) -> None:
        write_atomic(self.folder / "state.json", json.dumps(asdict(state), indent=1).encode())


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for name in (INCOMING, QUEUE, DONE, FAILED):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # an instance is never written into a folder that is being moved
        self._recover()

    def _recover(self) -> None:
        """Finish a promotion a killed node left half-done (its study is inside the staging folder)."""
        for staging in (self.root / QUEUE).glob(".*"):
            if (staging / "input").is_dir() and (staging / "state.json").is_file():
                os.replace(staging, self.root / QUEUE / staging.name[1:])
            elif staging.is_dir() and not (staging / "input").exists():
                shutil.rmtree(staging)

    def store(self, study_uid: str, sop_instance_uid: str, encoded: bytes) -> str:
        """Keep one received instance (its encoded file, preamble and meta included); returns the study's key."""
        key = study_key(study_uid)
        folder = self.root / INCOMING / key
        name = hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:24]
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / f"{name}.dcm", encoded)
        return key

    def promote_quiet(self, quiet_seconds: float, now: float | None = None) -> list[QueuedStudy]:
        """Move every incoming study that received nothing for ``quiet_seconds`` into the queue."""
        now = time.time() if now is None else now
        promoted = []
        with self._lock:
            for folder in sorted((self.root / INCOMING).iterdir()):
                entries = list(folder.iterdir())
                files = [p for p in entries if p.suffix == ".dcm" and not p.name.startswith(".")]
                latest = max((p.stat().st_mtime for p in entries), default=folder.stat().st_mtime)
                if files and now - latest >= quiet_seconds:  # a partial write counts as activity
                    promoted.append(self._promote(folder, files, latest))
        return promoted

    def _promote(self, folder: Path, files: list[Path], latest: float) -> QueuedStudy:
        for stale in folder.glob(".*"):  # a write a killed node never finished
            stale.unlink()
        key, batch = folder.name, 1
        while (self.root / QUEUE / key).exists():  # late instances of a queued study: a batch of their own
            batch += 1
            key = f"{folder.name}-{batch}"
        target = self.root / QUEUE / key
        staging = self.root / QUEUE / f".{key}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        first = min((p.stat().st_mtime for p in files), default=latest)
        QueuedStudy(key, staging).save(StudyState(received=latest, instances=len(files),
                                                  events={"first_instance": first, "queued": time.time()}))
        os.replace(folder, staging / "input")
        os.replace(staging, target)
        return QueuedStudy(key, target)

    def queued(self) -> list[QueuedStudy]:
        """Studies waiting, oldest first (a restarted node finds the ones it had not finished)."""
        studies = []
        for folder in (self.root / QUEUE).iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                study = QueuedStudy(folder.name, folder)
                try:
                    studies.append((study.load().received, study))
                except FileNotFoundError:  # finished or failed while listed (the node's page reads beside it)
                    continue
        return [study for _, study in sorted(studies, key=lambda pair: pair[0])]

    def incoming(self) -> list[Path]:
        """Studies still arriving (their instances so far), newest activity last."""
        return sorted((p for p in (self.root / INCOMING).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)

    def finished(self, where: str) -> list[QueuedStudy]:
        """The studies in ``done`` or ``failed``."""
        return [QueuedStudy(p.name, p) for p in (self.root / where).iterdir()
                if p.is_dir() and (p / "state.json").is_file()]

    def find(self, key: str) -> tuple[str, QueuedStudy] | None:
        """Where a study is (queue, done, failed) and its folder; None for a key that names no study."""
        for where in (QUEUE, DONE, FAILED):
            folder = self.root / where / key
            if not key.startswith(".") and "/" not in key and (folder / "state.json").is_file():
                return where, QueuedStudy(key, folder)
        return None

    def retry(self, key: str) -> QueuedStudy:
        """Queue a failed study again (its received images were kept), e.g. once the cause is fixed: attempts
        start over; what was already written and sent is kept, so nothing reaches the destination twice."""
        folder = self.root / FAILED / key
        if not (folder / "input").is_dir():
            raise FileNotFoundError(f"{key}: no failed study with its images to retry")
        study = QueuedStudy(key, folder)
        old = study.load()
        old.attempts, old.next_try, old.last_error = 0, 0.0, ""
        old.events["retried"] = time.time()
        study.save(old)
        (folder / "reason.txt").unlink(missing_ok=True)
        target = self.root / QUEUE / key
        if target.exists():
            raise FileExistsError(f"{key}: the study is already queued")
        os.replace(folder, target)
        return QueuedStudy(key, target)

    def finish(self, study: QueuedStudy) -> Path:
        """Sent: keep the record and the results, delete the received images."""
        shutil.rmtree(study.input, ignore_errors=True)
        return self._move(study, DONE)

    def fail(self, study: QueuedStudy, reason: str) -> Path:
        write_atomic(study.folder / "reason.txt", (reason + "\n").encode())
        return self._move(study, FAILED)

    def _move(self, study: QueuedStudy, where: str) -> Path:
        target = self.root / where / study.key
        if target.exists():
            target = target.with_name(f"{study.key}-{int(time.time())}")
        os.replace(study.folder, target)
        return target
