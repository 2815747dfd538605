"""collat_client: the typed SDK and CLI that hospital tools use to reach the serving stack.

Deliberately light (numpy and friends, never torch, never the server-side packages), so
that a PACS integration can import it without a deep-learning stack.
"""

__version__ = "0.1.0"

from .client import AsyncCollatClient, CollatClient
from .dicom import Study, read_study
from .errors import (
    CollatError,
    InferenceTimeout,
    InputFileError,
    InvalidInput,
    ModelNotReady,
    ServerError,
    ServerUnavailable,
)
from .images import MapImage, Volume
from .result import InferenceResult
from .schema import Clinical, Metrics

__all__ = [
    "AsyncCollatClient", "Clinical", "CollatClient", "CollatError", "InferenceResult", "InferenceTimeout",
    "InputFileError", "InvalidInput", "MapImage", "Metrics", "ModelNotReady", "ServerError", "ServerUnavailable",
    "Study", "Volume", "read_study",
]
