"""The DICOM node: a storage SCP that receives studies, runs them through the server, and sends the results on.

Nobody types a command: the scanner or PACS sends a study to the node's AE title; once nothing has arrived
for the quiet period the study is queued (on disk, see :mod:`.spool`), its series are classified and planned as
``collat-client infer STUDY_DIR`` does (one request plan, :func:`~collat_client.sdk.plan.plan_request`), the
pipeline runs through the SDK, and the SEG, SR and secondary captures go to the destination. Nothing is lost: a
transient failure (:class:`~collat_client.errors.TransientError`: the inference server or PACS down, busy or
slow) is retried with exponential backoff, a restarted node picks up what it had not finished, and a result
already stored by the destination is not sent again. A study that cannot be processed (a
:class:`~collat_client.errors.PermanentError`: no usable series, a refused scan) is moved to ``failed/`` with its
reason, logged in one line, and (unless told not to) answered with a summary capture that says why.

The node binds to loopback unless given a host, and accepts only the calling AE titles it is given when it is
given any. Clinical inputs: the U-Net needs the NIHSS, which DICOM does not carry; the node takes it from
``WORK/clinical/<AccessionNumber or StudyInstanceUID>.json`` (``{"nihss": 14, "age": 70, "side": "left"}``,
written by the site's order system), from the node's page (:mod:`.web`, which writes ``WORK/clinical/<key>.json``),
or from ``--nihss`` (a stated assumption, echoed in every result). With the page on (``ask_clinical``), a study
whose DWI has no clinical inputs yet has its collaterals analysed and sent at once and waits, in the queue, for
someone to enter them; the diffusion analysis then runs as a second pass with its own result series.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from ..dicom import read_study
from ..dicom.capture import failure_capture
from ..dicom.network import dicom_files, send
from ..errors import CollatError, InvalidInput, ServerUnavailable, TransientError
from ..schema import Clinical
from ..sdk.client import CollatClient
from ..sdk.plan import plan_request
from .spool import QueuedStudy, Spool, StudyState, write_atomic

log = logging.getLogger("collat.node")
CLINICAL_HINT = "a clinical file, or the node's --nihss"


def default_work_folder() -> Path:
    """The node's state directory when none is given: ``$XDG_STATE_HOME/collat/node`` (by default
    ``~/.local/state/collat/node``), never the directory the node happens to be started from."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "collat" / "node"


@dataclass
class NodeConfig:
    work: Path
    send_to: str  # AE@HOST:PORT or a DICOMweb URL
    server_url: str = "127.0.0.1:8000"
    ae_title: str = "COLLAT"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_callers: tuple[str, ...] = ()
    quiet_seconds: float = 10.0
    nihss: int | None = None
    age: float | None = None
    side: str = "unknown"
    report_failures: bool = True
    retry_seconds: float = 5.0  # first backoff; doubles per attempt
    retry_max_seconds: float = 300.0
    max_attempts: int = 50  # about four hours at the cap: then the study is moved to failed/, not dropped
    poll_seconds: float = 0.5
    timeout: float = 600.0  # per inference request
    clinical_dir: Path | None = field(default=None)
    ask_clinical: bool = False  # a person can enter the NIHSS (the node's page): wait for it instead of skipping
    keep_views: bool = False  # keep each analysis' metrics and overview picture for the node's page

    @property
    def clinical_folder(self) -> Path:
        return self.clinical_dir or self.work / "clinical"


IDENTITY_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyInstanceUID",
                 "StudyDescription", "StudyDate", "StudyTime")


def read_identity(folder: Path) -> dict[str, str]:
    """Who a received study is, from its first instance (empty when none can be read yet)."""
    import pydicom

    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=list(IDENTITY_TAGS))
        except (OSError, ValueError, pydicom.errors.InvalidDicomError):
            continue
        return {tag: str(ds.get(tag, "") or "") for tag in IDENTITY_TAGS}
    return {}


def study_identity(study: QueuedStudy) -> dict[str, str]:
    """The study's identity, read from its images once and kept beside its state (the images go once it is sent)."""
    path = study.folder / "identity.json"
    if path.is_file():
        return json.loads(path.read_text())
    identity = read_identity(study.input) if study.input.is_dir() else {}
    if identity:
        _write_json(path, identity)
    return identity


def _write_json(path: Path, value: object) -> None:
    write_atomic(path, json.dumps(value, indent=1).encode())


def clinical_path(config: NodeConfig, key: str) -> Path:
    """Where the node's page writes a study's clinical inputs (named by the key: no identifier in a file name)."""
    return config.clinical_folder / f"{key}.json"


def clinical_for(study: QueuedStudy, config: NodeConfig) -> Clinical | None:
    """The study's clinical inputs: its file in the clinical folder, else the node's stated NIHSS, else none."""
    identity = study_identity(study)
    base_key = study.key.split("-")[0]  # a late batch of a study shares its clinical inputs
    for name in (identity.get("AccessionNumber", ""), identity.get("StudyInstanceUID", ""), study.key, base_key):
        path = config.clinical_folder / f"{name}.json"
        if name and path.is_file():
            try:
                return Clinical.model_validate(json.loads(path.read_text()))
            except ValueError as exc:
                raise InvalidInput(f"{path}: not a clinical record ({exc})") from None
    if config.nihss is None:
        return None
    return Clinical(nihss=config.nihss, age=config.age, side=config.side)


class NodeObserver:
    """What the node tells its metrics (the page's Prometheus counters); the default listens to nothing."""

    def instance_received(self) -> None: ...
    def study_queued(self, seconds_receiving: float) -> None: ...
    def analysed(self, part: str, seconds: float) -> None: ...
    def sent(self, objects: int, seconds: float) -> None: ...
    def failed(self) -> None: ...
    def clinical_entered(self, seconds_waiting: float) -> None: ...


class Node:
    def __init__(self, config: NodeConfig, client_factory: Callable[[], CollatClient] | None = None,
                 observer: NodeObserver | None = None) -> None:
        self.config = config
        self.spool = Spool(config.work)
        self.observer = observer or NodeObserver()
        self.busy_with: str | None = None  # the key of the study being analysed or sent (the page shows it)
        self.heartbeat = time.time()  # the processing loop's last turn (/healthz)
        self._client_factory = client_factory or (lambda: CollatClient(config.server_url, retries=0,
                                                                         timeout=config.timeout))
        self._stop = threading.Event()
        self._server = None

    # -- receiving ---------------------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            self.spool.store(str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), buffer.getvalue())
            self.observer.instance_received()
            return 0x0000
        except OSError as exc:
            log.error("cannot keep an instance from %s: %s", event.assoc.requestor.ae_title, exc)
            return 0xA700  # out of resources: the sender keeps it and may retry
        except Exception as exc:  # noqa: BLE001 - a malformed object must not take the node down
            log.error("refused an instance from %s: %s", event.assoc.requestor.ae_title, exc)
            return 0xC210  # cannot understand

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start_scp(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        try:
            from pynetdicom import ALL_TRANSFER_SYNTAXES
        except ImportError:  # pynetdicom < 2.1
            from pynetdicom.presentation import ALL_TRANSFER_SYNTAXES

        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:  # compressed studies too, as scanners and PACS send them
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.config.allowed_callers:
            ae.require_calling_aet = list(self.config.allowed_callers)
        self._server = ae.start_server((self.config.host, self.config.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        log.info("listening as %s on %s:%d; results to %s", self.config.ae_title, self.config.host,
                 self.config.port, self.config.send_to)

    # -- processing --------------------------------------------------------------------------------------------
    def _infer(self, study: QueuedStudy, state: StudyState, first_attempt: bool) -> None:
        """Analyse what can be analysed now and write its results; a study whose DWI waits for the NIHSS (a person
        can enter it) has its collaterals done first and is marked waiting; once the NIHSS is there, a second pass
        analyses the diffusion series alone, into its own result series."""
        clinical = clinical_for(study, self.config)
        with self._client_factory() as client:
            # The first attempt reads the study whatever the server's state (an unusable study is answered at once);
            # a retry asks the server first, so that waiting for it does not convert the study again and again.
            if not first_attempt and not client.server_ready():
                raise ServerUnavailable(f"{self.config.server_url}: the inference server is not ready")
            chosen = read_study(study.input)
            diffusion = chosen.dwi is not None and chosen.adc is not None
            if chosen.perfusion is None and not diffusion:
                raise InvalidInput("no perfusion series and no DWI with its ADC in the study")
            wait = diffusion and clinical is None and self.config.ask_clinical
            perfusion_left = chosen.perfusion is not None and "collaterals" not in state.analysed
            state.waiting_for_clinical = wait
            if wait and not perfusion_left:
                return  # nothing to analyse until the NIHSS is entered
            # Nobody can be asked for a missing NIHSS: the diffusion series are left out, the collaterals still run.
            plan = plan_request(study=chosen, clinical=None if wait else clinical, diffusion_without_clinical="skip",
                                clinical_hint=CLINICAL_HINT, study_perfusion=perfusion_left)
            if wait:
                plan.notes.clear()  # not skipped: the diffusion analysis follows once the NIHSS is entered
            for note in plan.notes:
                log.warning("study %s: %s", study.key, note)
            started = time.time()
            result = client.run(plan)
        parts = [part for part, grid in (("collaterals", "perfusion"), ("diffusion", "dwi")) if grid in plan.volumes]
        lesion = result.metrics.hypoperfusion
        if lesion is not None and lesion.lesion_withheld is not None:  # sent as said, never drawn: logged for IT
            log.warning("study %s: %s", study.key, lesion.lesion_withheld.text)
        folder = study.results / "diffusion" if state.analysed else study.results  # a second pass: its own series
        outputs = result.save_dicom(folder, overwrite=True)
        for note in outputs.notes:
            log.warning("study %s: %s", study.key, note)
        if self.config.keep_views:
            self._keep_view(study, "+".join(parts), result)
        state.analysed += parts
        state.events[f"analysed_{'_'.join(parts)}"] = time.time()
        self.observer.analysed("+".join(parts), time.time() - started)

    @staticmethod
    def _keep_view(study: QueuedStudy, name: str, result) -> None:
        """The analysis' metrics and overview picture, for the node's page (the DICOM objects are what PACS gets)."""
        from ..imaging.overview import render_overview

        view = study.folder / "view"
        view.mkdir(exist_ok=True)
        render_overview(view / f".{name}.png", result.metrics, collateral_maps=result.collateral_maps,
                        lesion=result.lesion_mask, core=result.core_mask, dwi=result.dwi)
        os.replace(view / f".{name}.png", view / f"{name}.png")
        _write_json(view / f"{name}.json", result.metrics.model_dump(mode="json"))

    def _send(self, study: QueuedStudy, state) -> None:
        pending = [p for p in dicom_files([study.results]) if str(p.relative_to(study.results)) not in state.sent]

        def stored(path: Path) -> None:
            state.sent.append(str(path.relative_to(study.results)))
            study.save(state)

        if pending:
            started = time.time()
            send(pending, self.config.send_to, calling_ae=self.config.ae_title, on_stored=stored)
            self.observer.sent(len(pending), time.time() - started)
            state.events.setdefault("first_sent", time.time())
            state.events["sent"] = time.time()

    def _answer_failure(self, study: QueuedStudy, reason: str) -> None:
        import pydicom

        try:
            reference = pydicom.dcmread(str(next(study.input.glob("*.dcm"))), stop_before_pixels=True)
            page = study.folder / "no_result_sc.dcm"
            failure_capture(reason, reference).save_as(str(page), enforce_file_format=True)
            send([page], self.config.send_to, calling_ae=self.config.ae_title)
        except (CollatError, OSError, StopIteration, ValueError) as exc:
            log.error("study %s: the no-result page could not be sent either: %s", study.key, exc)

    def process(self, study: QueuedStudy, now: float | None = None) -> str:
        """One attempt at a queued study: 'done', 'failed', 'retry', 'waiting' (its backoff not yet over) or
        'clinical' (its results so far sent, its diffusion analysis waiting for the NIHSS)."""
        now = time.time() if now is None else now
        state = study.load()
        if state.next_try > now:
            return "waiting"
        if state.waiting_for_clinical:
            if clinical_for(study, self.config) is None:
                return "clinical"
            state.waiting_for_clinical, state.results_written = False, False
            state.events["clinical_entered"] = now
            self.observer.clinical_entered(now - state.events.get("waiting_for_clinical", now))
        state.attempts += 1
        self.busy_with = study.key
        try:
            if not state.results_written:
                state.events.setdefault("analysing", now)
                self._infer(study, state, first_attempt=state.attempts == 1)
                state.results_written = True
                study.save(state)
            self._send(study, state)
        except TransientError as exc:
            if state.attempts >= self.config.max_attempts:
                return self._fail(study, f"gave up after {state.attempts} attempts: {exc}")
            delay = min(self.config.retry_seconds * 2 ** (state.attempts - 1), self.config.retry_max_seconds)
            state.next_try, state.last_error = now + delay, str(exc)
            study.save(state)
            log.warning("study %s: %s; retry %d in %.0f s", study.key, exc, state.attempts + 1, delay)
            return "retry"
        except (CollatError, OSError, ValueError) as exc:
            return self._fail(study, str(exc))
        except Exception as exc:  # noqa: BLE001 - one study's unexpected error must not stop the node (or loop it)
            return self._fail(study, f"unexpected {type(exc).__name__}: {exc}")
        finally:
            self.busy_with = None
        if state.waiting_for_clinical:
            state.events.setdefault("waiting_for_clinical", time.time())
            state.attempts, state.last_error = 0, ""
            study.save(state)
            log.info("study %s: %d result objects sent to %s; the DWI waits for its NIHSS", study.key,
                     len(state.sent), self.config.send_to)
            return "clinical"
        study.save(state)
        self.spool.finish(study)
        log.info("study %s: %d result objects sent to %s", study.key, len(state.sent), self.config.send_to)
        return "done"

    def _fail(self, study: QueuedStudy, reason: str) -> str:
        log.error("study %s: cannot be processed: %s", study.key, reason)
        self.observer.failed()
        if self.config.report_failures:
            self._answer_failure(study, reason)
        self.spool.fail(study, reason)
        return "failed"

    def run_once(self) -> None:
        self.heartbeat = time.time()
        for study in self.spool.promote_quiet(self.config.quiet_seconds):
            state = study.load()
            study_identity(study)
            self.observer.study_queued(state.events["queued"] - state.events["first_instance"])
            log.info("study %s: complete (%d instances), queued", study.key, state.instances)
        for study in self.spool.queued():
            self.heartbeat = time.time()
            if self._stop.is_set():
                return
            self.process(study)

    def serve_forever(self) -> None:
        self.start_scp()
        waiting = self.spool.queued()
        if waiting:
            log.info("%d unfinished studies from before the restart: picked up", len(waiting))
        try:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self.config.poll_seconds)
        finally:
            self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
