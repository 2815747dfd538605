"""The applications built on the SDK: the ``collat-client`` CLI and the DICOM node. Nothing below imports them."""
