"""The sizes a request must respect: the server refuses anything outside them (it trusts nothing it receives), and
the SDK says so before the upload, so both read them here."""

from __future__ import annotations

# Coverage a perfusion series needs: the MCA territory spans about 60 mm from the basal ganglia to the vertex, and
# a grade compares it with its mirror; one or two slices (a bolus-tracking or test-bolus series) cannot say it.
MIN_PERFUSION_SLICES = 4

# The largest series one request may carry: 256 Mi voxels x frames (1 GiB of FP32), ten times a 256x256x40x60
# clinical DSC series. Larger inputs are refused before any allocation.
MAX_PERFUSION_ELEMENTS = 256 * 1024 * 1024

MAX_VOLUME_VOXELS = 64 * 1024 * 1024  # per DWI/ADC volume: a 0.25 mm isotropic whole head is ~30 M
