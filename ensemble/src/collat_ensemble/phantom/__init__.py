"""Digital stroke phantom: physics-based perfusion and diffusion cases on MNI anatomy, with ground truth."""

from .case import (
    CASE_FILES,
    EVALUATION_SEED_LIMIT,
    Acquisition,
    PhantomCase,
    generate_case,
    turn_in_plane,
    write_case,
)

__all__ = ["CASE_FILES", "EVALUATION_SEED_LIMIT", "Acquisition", "PhantomCase", "generate_case", "turn_in_plane",
           "write_case"]
