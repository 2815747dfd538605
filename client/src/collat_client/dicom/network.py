"""Sending results to PACS: DICOM C-STORE (pynetdicom) or STOW-RS to a DICOMweb server (dicomweb-client).

A failure names the peer and what it said (the DICOM status code and its meaning, or the HTTP status), so
that the PACS administrator can look it up; nothing is retried here (the DICOM node retries whole studies).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, PeerRefused, PeerUnavailable

DEFAULT_CALLING_AE = "COLLAT"
_PEER = re.compile(r"^(?P<ae>[^@\\]{1,16})@(?P<host>\[[0-9a-fA-F:.]+\]|[^:@\s]+):(?P<port>\d{1,5})$")
# C-STORE statuses that mean "stored" (0000 success; B000, B006, B007 warnings: coerced, elements discarded,
# data set does not match the SOP class): PS3.4 Annex B.2.3.
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity: ``AE@HOST:PORT`` (``STORESCP@10.0.0.5:104``)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        match = _PEER.match(text.strip())
        if not match or not 0 < int(match["port"]) < 65536 or not match["ae"].strip():
            raise InvalidInput(f"{text!r}: a DICOM peer is AE@HOST:PORT (AE title of 1-16 characters), "
                               "for example PACS@10.0.0.5:104")
        return cls(match["ae"].strip(), match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def dicom_files(paths: Sequence[Path]) -> list[Path]:
    """Every DICOM file (``*.dcm``) in ``paths``, folders walked, in a stable order."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*.dcm")  # not what a killed writer left in a hidden staging folder
                          if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            out.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or folder")
    if not out:
        raise InvalidInput(f"{', '.join(str(p) for p in paths)}: no DICOM files (*.dcm) to send")
    return out


def _status_text(code: int) -> str:
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

    category, meaning = STORAGE_SERVICE_CLASS_STATUS.get(code, (code_to_category(code), ""))
    return f"0x{code:04X} ({category.lower()}{': ' + meaning if meaning else ''})"


def send_c_store(files: Sequence[Path], peer: Peer, *, calling_ae: str = DEFAULT_CALLING_AE,
                 timeout: float = 30.0, on_stored: Callable[[Path], None] | None = None) -> int:
    """C-STORE every file to ``peer`` on one association; returns how many were stored. ``on_stored`` hears of each
    file the peer stored, as it happens (the DICOM node records them so that a retry sends only the rest)."""
    import pydicom
    from pynetdicom import AE
    from pynetdicom.presentation import build_context

    datasets = [pydicom.dcmread(str(f)) for f in files]
    contexts: dict[tuple[str, str], object] = {}
    for ds in datasets:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        contexts.setdefault((str(ds.SOPClassUID), syntax), build_context(ds.SOPClassUID, [syntax]))
    if len(contexts) > 128:
        raise InvalidInput(f"{len(contexts)} kinds of object to send: more than one association can carry (128)")
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.requested_contexts = list(contexts.values())
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        why = f"rejected the association (is our AE title, {calling_ae}, allowed there?)" if assoc.is_rejected \
            else "no association: nothing answered on that port, or the peer aborted"
        raise (PeerRefused if assoc.is_rejected else PeerUnavailable)(f"DICOM peer {peer}: {why}")
    stored = 0
    try:
        for path, ds in zip(files, datasets, strict=True):
            status = assoc.send_c_store(ds)
            if not status or "Status" not in status:
                raise PeerUnavailable(f"DICOM peer {peer}: no answer to C-STORE of {path.name} (connection lost "
                                      "or timed out)")
            if int(status.Status) not in STORED:
                # 0xA7xx: out of resources, worth a later try; any other failure is the peer's refusal
                kind = PeerUnavailable if int(status.Status) & 0xFF00 == 0xA700 else PeerRefused
                raise kind(f"DICOM peer {peer}: C-STORE of {path.name} failed with status "
                                f"{_status_text(int(status.Status))}")
            stored += 1
            if on_stored is not None:
                on_stored(path)
    finally:
        if assoc.is_established:
            assoc.release()
    return stored


def send_stow(files: Sequence[Path], url: str, *, timeout: float = 60.0) -> int:
    """STOW-RS every file to the DICOMweb ``url`` (its studies endpoint's base); returns how many were stored."""
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    datasets = [pydicom.dcmread(str(f)) for f in files]
    session = requests.Session()
    session.request = _with_timeout(session.request, timeout)  # dicomweb-client sets none
    client = DICOMwebClient(url=url, session=session)
    try:
        response = client.store_instances(datasets=datasets)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        kind = PeerUnavailable if status == "?" or status >= 500 or status == 429 else PeerRefused
        raise kind(f"DICOMweb {url}: STOW-RS failed with HTTP {status}") from None
    except requests.RequestException as exc:
        raise PeerUnavailable(f"DICOMweb {url}: {type(exc).__name__}: could not be reached") from None
    failed = response.get("FailedSOPSequence", []) if response is not None else []
    if failed:
        reason = int(failed[0].get("FailureReason", 0) or 0)
        raise PeerRefused(f"DICOMweb {url}: {len(failed)} of {len(datasets)} objects refused (first failure reason "
                        f"0x{reason:04X})")
    return len(datasets)


def _with_timeout(request, timeout: float):
    def call(*args, **kwargs):
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)

    return call


def check_destination(destination: str) -> str:
    """``destination`` if it is a DICOMweb URL or ``AE@HOST:PORT``; refused in one line otherwise."""
    if not destination.startswith(("http://", "https://")):
        Peer.parse(destination)
    return destination


def send(files: Sequence[Path], destination: str, *, calling_ae: str = DEFAULT_CALLING_AE,
         timeout: float = 30.0, on_stored: Callable[[Path], None] | None = None) -> int:
    """To ``destination``: an ``http(s)://`` DICOMweb base URL (STOW-RS, all at once), else ``AE@HOST:PORT``
    (C-STORE)."""
    if destination.startswith(("http://", "https://")):
        count = send_stow(files, destination, timeout=timeout)
        for path in files if on_stored is not None else ():
            on_stored(path)
        return count
    return send_c_store(files, Peer.parse(destination), calling_ae=calling_ae, timeout=timeout, on_stored=on_stored)
