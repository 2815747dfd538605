"""Real DICOM peers on loopback for the PACS tests: Orthanc (a PACS, with DICOMweb) and a pynetdicom storage SCP
that records every C-STORE it receives (so a test can tell an object sent twice from one sent once)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from collat_ensemble.server.launcher import free_port

ORTHANC = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
                                            if Path(p).exists()), None)
DICOMWEB_PLUGINS = [p for p in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                                "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so") if Path(p).exists()]
NOT_INSTALLED = "Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; .ci/run does it as root)"


class Orthanc:
    """An Orthanc PACS on free loopback ports (DICOM and HTTP with DICOMweb), its database in a temporary folder."""

    def __init__(self, folder: Path, ae_title: str = "ORTHANC") -> None:
        self.folder, self.ae_title = folder, ae_title
        self.dicom_port, self.http_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def peer(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def __enter__(self) -> Orthanc:
        config = {
            "Name": "collat-tests",
            "StorageDirectory": str(self.folder / "db"), "IndexDirectory": str(self.folder / "db"),
            "DicomAet": self.ae_title, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": True, "Plugins": DICOMWEB_PLUGINS,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(self.folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(self.folder / "orthanc.json")], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.get("/system")
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"Orthanc did not start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log.close()

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def instances(self) -> list[dict]:
        """Every stored instance's main tags (SOPClassUID, SeriesDescription, ...), from Orthanc's REST API."""
        return [self.get(f"/instances/{i}/simplified-tags") for i in self.get("/instances")]

    def file(self, instance_id: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/instances/{instance_id}/file",
                                    timeout=30) as response:
            return response.read()


@dataclass
class RecordingPacs:
    """A pynetdicom storage SCP that counts every C-STORE by SOP Instance UID and keeps each object on disk."""

    folder: Path
    ae_title: str = "PACS"
    port: int = field(default_factory=free_port)
    received: Counter = field(default_factory=Counter)
    studies: dict = field(default_factory=dict)  # SOPInstanceUID -> StudyInstanceUID
    status: int = 0x0000  # what it answers (0xA700: a full disk)

    @property
    def peer(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def _on_store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.received[str(ds.SOPInstanceUID)] += 1
            self.studies[str(ds.SOPInstanceUID)] = str(ds.StudyInstanceUID)
            ds.save_as(str(self.folder / f"{ds.SOPInstanceUID}.{self.received[str(ds.SOPInstanceUID)]}.dcm"),
                       enforce_file_format=True)
        return self.status

    def __enter__(self) -> RecordingPacs:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        self._lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def per_study(self) -> Counter:
        with self._lock:
            return Counter(self.studies.values())
