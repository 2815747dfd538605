"""The DICOM node's page for the stroke team (the ``web`` extra): see :mod:`.app`."""
