"""The SDK: what to send for a study (:mod:`.plan`), the clients that send it, and the typed result.

Above the images and DICOM I/O, below the applications (CLI, DICOM node)."""
