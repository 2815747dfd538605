"""collat_client: the typed SDK and CLI that hospital tools use to reach the serving stack.

Deliberately light (numpy and friends, never torch, never the server-side packages), so
that a PACS integration can import it without a deep-learning stack. Layers, bottom up (no
import runs upward): ``errors`` and ``schema``; ``imaging`` (volumes, overview, scores);
``dicom`` (DICOM in and out); ``sdk`` (request plan, clients, result); ``apps`` (CLI, DICOM node).
"""

__version__ = "0.1.0"

from .dicom import Study, read_study
from .errors import (
    CollatError,
    InferenceTimeout,
    InputFileError,
    InvalidInput,
    ModelNotReady,
    PeerError,
    PeerRefused,
    PeerUnavailable,
    PermanentError,
    QualityRefused,
    QueueFull,
    ServerError,
    ServerUnavailable,
    TransientError,
)
from .imaging.volumes import MapImage, Volume
from .schema import Clinical, Metrics
from .sdk.client import AsyncCollatClient, CollatClient
from .sdk.plan import RequestPlan, plan_request
from .sdk.result import InferenceResult

__all__ = [
    "AsyncCollatClient", "Clinical", "CollatClient", "CollatError", "InferenceResult", "InferenceTimeout",
    "InputFileError", "InvalidInput", "MapImage", "Metrics", "ModelNotReady", "PeerError", "PeerRefused",
    "PeerUnavailable", "PermanentError", "QualityRefused", "QueueFull", "RequestPlan", "ServerError",
    "ServerUnavailable", "Study", "TransientError", "Volume", "plan_request", "read_study",
]
