"""Where selfdistill keeps converted models and generated datasets, and telling a local path from
a Hugging Face hub id (so a missing path is reported as missing, not as a hub failure)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$SELFDISTILL_CACHE`` or ``~/.cache/selfdistill`` (created on demand)."""
    root = Path(os.environ.get("SELFDISTILL_CACHE", Path.home() / ".cache" / "selfdistill"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def looks_like_path(name: str) -> bool:
    """True when ``name`` is meant as a local path, not a hub id ``owner/name``: it starts with
    ``/``, ``.`` or ``~``, holds a backslash or more than one ``/``, or its first part is a local
    folder (``runs/x``)."""
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        return True
    return "/" in name and Path(name.split("/")[0]).is_dir()
