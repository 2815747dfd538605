"""What can go wrong, as types a calling program can catch; each message is one line that names the problem.

Two branches, so that a caller decides by class, not by message: a :class:`TransientError` may succeed if tried
again later (the server or a peer is down, busy or slow); a :class:`PermanentError` will fail the same way until
the input or the configuration changes. ``exit_code`` is what the CLI exits with.

    CollatError
    ├── TransientError
    │   ├── ServerUnavailable
    │   │   └── QueueFull
    │   ├── ModelNotReady
    │   ├── InferenceTimeout
    │   ├── ServerError
    │   └── PeerUnavailable  (also a PeerError)
    └── PermanentError
        ├── InputFileError
        ├── InvalidInput
        │   └── QualityRefused
        └── PeerRefused      (also a PeerError)
"""

from __future__ import annotations


class CollatError(Exception):
    """Base class of every error the SDK raises."""

    exit_code = 1


class TransientError(CollatError):
    """Worth another try later: nothing is wrong with the input."""


class PermanentError(CollatError):
    """Trying again will not help: the input, or a peer's configuration, has to change."""


class InputFileError(PermanentError):
    """A file or directory could not be read as the image it should be (names the file)."""

    exit_code = 2


class InvalidInput(PermanentError):
    """The input was refused, before upload by the SDK's checks or by the server (its reason is kept)."""

    exit_code = 2


class QualityRefused(InvalidInput):
    """The input is readable but fails a quality rule that no analysis may run past (the rule is named)."""


class ServerUnavailable(TransientError):
    """No server answered, or it said it is unavailable, after the retry budget."""

    exit_code = 3


class QueueFull(ServerUnavailable):
    """The server answered but its queue is full (HTTP 429, gRPC RESOURCE_EXHAUSTED), after the retry budget."""


class ModelNotReady(TransientError):
    """The server is up but the pipeline is not loaded or not ready."""

    exit_code = 3


class InferenceTimeout(TransientError):
    """The request took longer than the client's timeout."""

    exit_code = 4


class ServerError(TransientError):
    """The server failed while handling a valid request (its message is kept); it may pass on another try."""

    exit_code = 4


class PeerError(CollatError):
    """A DICOM peer (PACS) could not be reached, refused the association, or did not store an object."""

    exit_code = 5


class PeerUnavailable(PeerError, TransientError):
    """A DICOM peer did not answer, or the connection was lost."""


class PeerRefused(PeerError, PermanentError):
    """A DICOM peer answered and refused: the association (AE title) or an object (its status is kept)."""
