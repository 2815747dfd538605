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
written by the site's order system) or from ``--nihss`` (a stated assumption, echoed in every result).
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
from .spool import QueuedStudy, Spool

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

    @property
    def clinical_folder(self) -> Path:
        return self.clinical_dir or self.work / "clinical"


def _identity(folder: Path) -> tuple[str, str]:
    """(AccessionNumber, StudyInstanceUID) of a received study, read here only to find its clinical file."""
    import pydicom

    first = next(folder.glob("*.dcm"))
    ds = pydicom.dcmread(str(first), stop_before_pixels=True, specific_tags=["AccessionNumber", "StudyInstanceUID"])
    return str(ds.get("AccessionNumber", "") or ""), str(ds.get("StudyInstanceUID", "") or "")


def clinical_for(study: QueuedStudy, config: NodeConfig) -> Clinical | None:
    """The study's clinical inputs: its file in the clinical folder, else the node's stated NIHSS, else none."""
    for name in _identity(study.input):
        path = config.clinical_folder / f"{name}.json"
        if name and path.is_file():
            try:
                return Clinical.model_validate(json.loads(path.read_text()))
            except ValueError as exc:
                raise InvalidInput(f"{path}: not a clinical record ({exc})") from None
    if config.nihss is None:
        return None
    return Clinical(nihss=config.nihss, age=config.age, side=config.side)


class Node:
    def __init__(self, config: NodeConfig, client_factory: Callable[[], CollatClient] | None = None) -> None:
        self.config = config
        self.spool = Spool(config.work)
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
            return 0x0000
        except OSError as exc:
            log.error("cannot keep an instance from %s: %s", event.assoc.requestor.ae_title, exc)
            return 0xA700  # out of resources: the sender keeps it and may retry
        except Exception as exc:  # noqa: BLE001 - a malformed object must not take the node down
            log.error("refused an instance from %s: %s", event.assoc.requestor.ae_title, exc)
            return 0xC210  # cannot understand

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
    def _infer(self, study: QueuedStudy, first_attempt: bool) -> None:
        clinical = clinical_for(study, self.config)
        with self._client_factory() as client:
            # The first attempt reads the study whatever the server's state (an unusable study is answered at once);
            # a retry asks the server first, so that waiting for it does not convert the study again and again.
            if not first_attempt and not client.server_ready():
                raise ServerUnavailable(f"{self.config.server_url}: the inference server is not ready")
            chosen = read_study(study.input)
            if chosen.perfusion is None and (chosen.dwi is None or chosen.adc is None):
                raise InvalidInput("no perfusion series and no DWI with its ADC in the study")
            # Nobody can be asked for a missing NIHSS: the diffusion series are left out, the collaterals still run.
            plan = plan_request(study=chosen, clinical=clinical, diffusion_without_clinical="skip",
                                clinical_hint=CLINICAL_HINT)
            for note in plan.notes:
                log.warning("study %s: %s", study.key, note)
            result = client.run(plan)
        lesion = result.metrics.hypoperfusion
        if lesion is not None and lesion.lesion_withheld is not None:  # sent as said, never drawn: logged for IT
            log.warning("study %s: %s", study.key, lesion.lesion_withheld.text)
        outputs = result.save_dicom(study.results, overwrite=True)
        for note in outputs.notes:
            log.warning("study %s: %s", study.key, note)

    def _send(self, study: QueuedStudy, state) -> None:
        pending = [p for p in dicom_files([study.results]) if str(p.relative_to(study.results)) not in state.sent]

        def stored(path: Path) -> None:
            state.sent.append(str(path.relative_to(study.results)))
            study.save(state)

        if pending:
            send(pending, self.config.send_to, calling_ae=self.config.ae_title, on_stored=stored)

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
        """One attempt at a queued study: 'done', 'failed', 'retry' or 'waiting' (its backoff not yet over)."""
        now = time.time() if now is None else now
        state = study.load()
        if state.next_try > now:
            return "waiting"
        state.attempts += 1
        try:
            if not state.results_written:
                self._infer(study, first_attempt=state.attempts == 1)
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
        self.spool.finish(study)
        log.info("study %s: %d result objects sent to %s", study.key, len(state.sent), self.config.send_to)
        return "done"

    def _fail(self, study: QueuedStudy, reason: str) -> str:
        log.error("study %s: cannot be processed: %s", study.key, reason)
        if self.config.report_failures:
            self._answer_failure(study, reason)
        self.spool.fail(study, reason)
        return "failed"

    def run_once(self) -> None:
        for study in self.spool.promote_quiet(self.config.quiet_seconds):
            log.info("study %s: complete (%d instances), queued", study.key, study.load().instances)
        for study in self.spool.queued():
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
