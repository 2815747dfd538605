"""Images and volumes: NIfTI reading, the checks every image passes, the overview picture and the scores.

The client's bottom layer: it knows nothing of DICOM, the server or the applications above it."""
