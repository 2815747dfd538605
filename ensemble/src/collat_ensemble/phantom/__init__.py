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
from .kinds import KINDS, draw_kind

__all__ = ["CASE_FILES", "EVALUATION_SEED_LIMIT", "KINDS", "Acquisition", "PhantomCase", "draw_kind", "generate_case",
           "turn_in_plane", "write_case"]
