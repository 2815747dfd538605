"""What can go wrong, as types a calling program can catch; each message is one line that names the problem."""

from __future__ import annotations


class CollatError(Exception):
    """Base class of every error the SDK raises."""

    exit_code = 1


class InputFileError(CollatError):
    """A file or directory could not be read as the image it should be (names the file)."""

    exit_code = 2


class InvalidInput(CollatError):
    """The input was refused, before upload by the SDK's checks or by the server (its reason is kept)."""

    exit_code = 2


class ServerUnavailable(CollatError):
    """No server answered, or it said it is unavailable, after the retry budget."""

    exit_code = 3


class ModelNotReady(CollatError):
    """The server is up but the pipeline is not loaded or not ready."""

    exit_code = 3


class InferenceTimeout(CollatError):
    """The request took longer than the client's timeout."""

    exit_code = 4


class ServerError(CollatError):
    """The server failed while handling a valid request (its message is kept)."""

    exit_code = 4


class PeerError(CollatError):
    """A DICOM peer (PACS) could not be reached, refused the association, or did not store an object."""

    exit_code = 5
