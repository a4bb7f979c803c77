"""Load a training run, or one of its checkpoints, as a model that can be evaluated.

What ``--model`` may name (``selfdistill eval`` / ``analyze`` / studies call :func:`find`):

- ``RUN_DIR/checkpoints/step-000012``: that checkpoint. ``trainable.pt`` holds only the trainable
  weights (the LoRA adapter by its peft names, or every parameter for full fine-tuning), so the
  model is rebuilt from the run's ``config.yaml`` (``model.name``, ``model.trust_remote_code``,
  the ``lora`` section) and the tensors are copied in; every name and shape must match.
- ``RUN_DIR``: its ``final/`` folder (``save_pretrained`` layout) when the run finished, else the
  newest complete checkpoint (a run still going, or killed).
- anything else (a hub id, an alias, a ``save_pretrained`` folder): not a run; :func:`find` -> None.

Errors are :class:`RunCheckpointError` with one line naming the folder, what it holds and the fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint

TRAINABLE = "trainable.pt"
CONFIG = "config.yaml"


class RunCheckpointError(ValueError):
    """A run folder or checkpoint that cannot be loaded; the message says what exists and the fix."""


@dataclass(frozen=True)
class RunModel:
    """What a ``--model`` path resolved to.

    Attributes:
        run_dir: the training run's output_dir (holds config.yaml).
        folder: the ``final/`` folder or the ``checkpoints/step-NNNNNN`` folder used.
        step: the checkpoint's step, None for ``final/``.
    """

    run_dir: Path
    folder: Path
    step: int | None

    @property
    def is_final(self) -> bool:
        return self.step is None

    def describe(self) -> str:
        """One line for the start of a command: which weights are evaluated."""
        if self.is_final:
            return f"using the final model of training run {self.run_dir}: {self.folder}"
        return f"using checkpoint step {self.step} of training run {self.run_dir}: {self.folder}"


def _listing(folder: Path) -> str:
    if not folder.is_dir():
        return "nothing (no such folder)"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else "nothing (empty)"


def _is_step_dir(path: Path) -> bool:
    return path.name.startswith(checkpoint.PREFIX) and path.name[len(checkpoint.PREFIX):].isdigit()


def find(name: str | Path) -> RunModel | None:
    """What ``name`` refers to, when it is a training run or one of its checkpoints, else None.

    Raises:
        RunCheckpointError: a checkpoint folder that is incomplete (no COMPLETE marker, a missing
            or corrupt file), or a run folder with neither ``final/`` nor a complete checkpoint.
    """
    path = Path(name)
    if not path.is_dir() or (path / "config.json").exists():
        return None  # a hub id, an alias, or a save_pretrained folder
    if _is_step_dir(path) or (path / TRAINABLE).exists() or (path / checkpoint.MARKER).exists():
        try:
            checkpoint.verify(path)
        except checkpoint.CheckpointError as err:
            raise RunCheckpointError(f"{err}; the folder holds: {_listing(path)}. Evaluate a complete "
                                     "checkpoint or the run folder (its newest complete one)") from None
        if not (path / TRAINABLE).is_file():
            raise RunCheckpointError(f"checkpoint {path} has no {TRAINABLE} (it holds: {_listing(path)})")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        step = json.loads((path / "state.json").read_text()).get("step", 0)
        return RunModel(run_dir, path, int(step))
    ckpts, final = path / "checkpoints", path / "final"
    if not ((path / CONFIG).exists() or ckpts.is_dir() or final.is_dir()):
        return None
    if (final / "config.json").exists() or (final / "adapter_config.json").exists():
        return RunModel(path, final, None)
    newest = checkpoint.latest(ckpts)
    if newest is None:
        raise RunCheckpointError(
            f"training run {path} has no final/ model and no complete checkpoint under "
            f"{ckpts} (the run holds: {_listing(path)}; checkpoints/ holds: {_listing(ckpts)}). "
            "Let the run reach its first checkpoint (checkpoint.every) or evaluate another folder")
    return RunModel(path, newest, int(newest.name[len(checkpoint.PREFIX):]))


def run_config(run_dir: Path):
    """The run's TrainConfig, read from ``run_dir/config.yaml`` (no checks: it already ran)."""
    import yaml

    from .config import ConfigError, from_dict

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunCheckpointError(f"{path} is missing: a checkpoint is rebuilt from its run's config.yaml "
                                 f"(the run holds: {_listing(Path(run_dir))}); copy the run's config.yaml back")
    try:
        return from_dict(yaml.safe_load(path.read_text()) or {})
    except (ConfigError, yaml.YAMLError) as err:
        raise RunCheckpointError(f"{path} cannot be read as a training config: {err}") from None


def load_trainable(folder: Path) -> dict[str, torch.Tensor]:
    """``folder/trainable.pt`` checked against the checksum in COMPLETE: {param name: tensor}."""
    folder = Path(folder)
    manifest = json.loads((folder / checkpoint.MARKER).read_text())
    meta = manifest.get(TRAINABLE)
    file = folder / TRAINABLE
    if meta is None or hashlib.sha256(file.read_bytes()).hexdigest() != meta["sha256"]:
        raise RunCheckpointError(f"{file} does not match its checksum in {checkpoint.MARKER} (corrupt "
                                 "copy?); evaluate another checkpoint")
    blob = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise RunCheckpointError(f"{file} is not a mapping of parameter names to tensors")
    return blob


def load_run_checkpoint(ref: RunModel | str | Path, *, dtype: str = "auto",
                        device: str | torch.device | None = "auto"):
    """``(model, tokenizer)`` of a run's checkpoint: the base model and LoRA adapter rebuilt from
    the run's config.yaml, the trainable weights of ``trainable.pt`` copied in (or, for
    ``final/``, ``load_model`` of that folder).

    Args:
        ref: a :class:`RunModel` or a path :func:`find` understands.
        dtype: ``auto`` or an explicit dtype (``selfdistill.hardware``); trained weights are cast.
        device: where the model goes (``auto``, ``cpu``, ``cuda:N``).

    Raises:
        RunCheckpointError: not a run/checkpoint, or tensor names/shapes that do not match the
            rebuilt model (the message lists a few and names the fix).
    """
    from selfdistill.models import LoraSettings, apply_lora, load_model

    run = ref if isinstance(ref, RunModel) else find(ref)
    if run is None:
        raise RunCheckpointError(f"{ref} is not a training run folder or a checkpoint folder")
    if run.is_final:
        return load_model(run.folder, dtype=dtype, device=device)
    cfg = run_config(run.run_dir)
    model, tokenizer = load_model(cfg.model.name, dtype=dtype, device=device,
                                  trust_remote_code=cfg.model.trust_remote_code)
    lo = cfg.lora
    if lo.enabled:
        model = apply_lora(model, LoraSettings(r=lo.r, alpha=lo.alpha, dropout=lo.dropout,
                                               target_modules=tuple(lo.target_modules),
                                               mixed_precision=lo.mixed_precision))
    blob = load_trainable(run.folder)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    _check_names(run, cfg, params, blob)
    with torch.no_grad():
        for name, value in blob.items():
            params[name].copy_(value.to(params[name].device))
    model.eval()
    return model, tokenizer


def _check_names(run: RunModel, cfg, params: dict[str, torch.Tensor], blob: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(params) - set(blob))
    unexpected = sorted(set(blob) - set(params))
    shapes = sorted(n for n in set(params) & set(blob) if tuple(params[n].shape) != tuple(blob[n].shape))
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} trainable weights of the rebuilt model are not in it (e.g. {missing[:2]})")
    if unexpected:
        parts.append(f"{len(unexpected)} of its tensors match no trainable weight (e.g. {unexpected[:2]})")
    if shapes:
        n = shapes[0]
        parts.append(f"{len(shapes)} shapes differ (e.g. {n}: model {tuple(params[n].shape)}, "
                     f"file {tuple(blob[n].shape)})")
    lo = cfg.lora
    raise RunCheckpointError(
        f"{run.folder / TRAINABLE} does not fit the model rebuilt from {run.run_dir / CONFIG} "
        f"(model.name={cfg.model.name}, lora.enabled={lo.enabled}, lora.r={lo.r}, "
        f"lora.target_modules={list(lo.target_modules)}): {'; '.join(parts)}. Fix: restore the "
        "config.yaml the run was trained with, or evaluate its final/ folder")
