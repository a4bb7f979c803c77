"""Atomic, verified checkpoints: write to a temporary folder, fsync, rename, keep the last K.

Layout of ``output_dir/checkpoints/step-000012/``::

    trainable.pt   trainable weights only (the LoRA adapter, or the whole model without LoRA)
    optimizer.pt   AdamW state
    scheduler.pt   LR scheduler state
    teacher.pt     EMA teacher state (only when the teacher has state)
    rng-rank0.pt   python / numpy / torch RNG states, one file per process
    state.json     step, data position (epoch, index, data_seed), metrics line count, extras
    COMPLETE       written LAST: sha256 and size of every other file

A folder without a valid COMPLETE marker (a crash mid-write, a truncated copy) is never loaded:
:func:`latest` skips it and :func:`load` refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

MARKER = "COMPLETE"
PREFIX = "step-"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing files or fails its checksum."""


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"{PREFIX}{step:06d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(root: Path, step: int, blobs: dict[str, Any], state: dict, *, keep_last: int) -> Path:
    """Write ``blobs`` (file stem -> object for torch.save) and ``state`` atomically.

    Call on the main process only; per-process RNG states travel in ``blobs`` as
    ``rng-rank{r}`` (gathered by the loop). Returns the final folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        for stem, obj in blobs.items():
            torch.save(obj, tmp / f"{stem}.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
        finalize(tmp, final)
    except OSError as err:  # disk full, quota, folder removed: say which step and what survives
        shutil.rmtree(tmp, ignore_errors=True)
        last = latest(root)
        kept = f"the previous checkpoint {last} is intact" if last else "no earlier checkpoint exists"
        raise CheckpointError(
            f"could not write the checkpoint of step {step} in {root} ({err}); {kept}. "
            "Free some space, then rerun the same command with resume=true"
        ) from err
    prune(root, keep_last)
    return final


def finalize(tmp: Path, final: Path) -> None:
    """Checksum every file, write COMPLETE last, then rename the folder into place."""
    files = sorted(p for p in tmp.iterdir() if p.is_file() and p.name != MARKER)
    for p in files:
        _fsync(p)
    manifest = {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}
    (tmp / MARKER).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _fsync(tmp / MARKER)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)


def verify(folder: Path) -> dict:
    """Return the manifest if ``folder`` is a complete checkpoint, else raise CheckpointError."""
    folder = Path(folder)
    marker = folder / MARKER
    if not marker.is_file():
        raise CheckpointError(f"{folder} has no {MARKER} marker (half-written); not loading it")
    try:
        manifest = json.loads(marker.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{marker} is corrupt ({err}); not loading {folder}") from None
    for name, meta in manifest.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} listed in {MARKER} is missing")
        if path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
            raise CheckpointError(f"{folder}: {name} fails its checksum (corrupt copy?)")
    return manifest


def complete_steps(root: Path) -> list[int]:
    """Steps of the folders under ``root`` that carry a COMPLETE marker, ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    steps = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(PREFIX) and (p / MARKER).is_file():
            try:
                steps.append(int(p.name[len(PREFIX):]))
            except ValueError:
                continue
    return sorted(steps)


def latest(root: Path) -> Path | None:
    """The newest checkpoint that verifies; corrupt ones are skipped (newest first)."""
    for step in reversed(complete_steps(root)):
        folder = step_dir(root, step)
        try:
            verify(folder)
        except CheckpointError:
            continue
        return folder
    return None


def load(folder: Path, *, rank: int = 0) -> tuple[dict[str, Any], dict, dict | None]:
    """Verify and read a checkpoint: (blobs by stem, state, this rank's RNG state or None)."""
    manifest = verify(folder)
    blobs = {}
    for name in manifest:
        if name.endswith(".pt") and not name.startswith("rng-"):
            blobs[name[:-3]] = torch.load(Path(folder) / name, map_location="cpu", weights_only=False)
    state = json.loads((Path(folder) / "state.json").read_text())
    rng_file = Path(folder) / f"rng-rank{rank}.pt"
    rng = torch.load(rng_file, weights_only=False) if rng_file.name in manifest else None
    return blobs, state, rng


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints and stale temp folders."""
    steps = complete_steps(root)
    for step in steps[:-keep_last] if keep_last > 0 else steps:
        shutil.rmtree(step_dir(root, step), ignore_errors=True)
    for p in Path(root).glob(f".tmp-{PREFIX}*"):
        if p.name.endswith(f"-{os.getpid()}"):
            continue
        shutil.rmtree(p, ignore_errors=True)
