"""Where the real scanner corpus lies: ``../shared/realdata`` beside the repository, or wherever COLLAT_REALDATA
says (a fresh clone elsewhere has none, and its tests then skip with this path as the reason)."""

from __future__ import annotations

import os
from pathlib import Path

REALDATA = Path(os.environ.get("COLLAT_REALDATA") or Path(__file__).resolve().parents[2] / "shared" / "realdata")
AVAILABLE = (REALDATA / "README.md").exists()
MISSING = f"the real scanner corpus is not at {REALDATA}"
