"""Where selfdistill keeps converted models and generated datasets."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$SELFDISTILL_CACHE`` or ``~/.cache/selfdistill`` (created on demand)."""
    root = Path(os.environ.get("SELFDISTILL_CACHE", Path.home() / ".cache" / "selfdistill"))
    root.mkdir(parents=True, exist_ok=True)
    return root
