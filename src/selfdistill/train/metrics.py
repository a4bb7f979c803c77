"""Per-step metrics: one JSONL line per step in ``output_dir/metrics.jsonl`` plus optional sinks.

The JSONL file is the record of truth. On resume it is truncated back to the number of lines
stored in the checkpoint, so every step appears exactly once even if the run died after logging
steps it never checkpointed. TensorBoard is on by default; wandb and trackio are imported only
when asked for, with a clear error when they are not installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

METRICS_FILE = "metrics.jsonl"


def quantiles(values: Tensor, qs: tuple[float, ...] = (0.1, 0.5, 0.9)) -> list[float]:
    """Quantiles of a 1-D tensor (NaN when empty); linear interpolation like numpy."""
    values = values.detach().double().flatten()
    values = values[~torch.isnan(values)]
    if values.numel() == 0:
        return [math.nan] * len(qs)
    return torch.quantile(values, torch.tensor(qs, dtype=values.dtype)).tolist()


def count_lines(path: Path) -> int:
    if not Path(path).exists():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def truncate_lines(path: Path, keep: int) -> None:
    """Keep only the first ``keep`` lines of ``path`` (atomically rewritten)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        lines = fh.readlines()[:keep]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.writelines(lines)
    tmp.replace(path)


def _clean(value: Any) -> Any:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


class MetricsLogger:
    """Writes one flat dict per step to JSONL and to the configured sinks (main process only)."""

    def __init__(self, output_dir: Path, *, keep_lines: int | None, tensorboard: bool,
                 wandb: bool, trackio: bool, project: str, run_config: dict) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_lines is None:
            self.path.write_text("")  # a fresh run starts a fresh file
        else:
            truncate_lines(self.path, keep_lines)
        self.lines = count_lines(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._tb = self._wandb = self._trackio = None
        purge = keep_lines if keep_lines is not None else None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(output_dir) / "tb"), purge_step=purge)
        if wandb:
            self._wandb = _import("wandb").init(project=project, config=run_config,
                                                dir=str(output_dir), resume="allow")
        if trackio:
            self._trackio = _import("trackio")
            self._trackio.init(project=project, config=run_config)

    def log(self, row: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        self._fh.write(json.dumps(row, sort_keys=False) + "\n")
        self._fh.flush()
        self.lines += 1
        step = int(row["step"])
        numeric = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for k, v in numeric.items():
                if v is not None:
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)
        if self._trackio is not None:
            self._trackio.log(numeric, step=step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._trackio is not None:
            self._trackio.finish()


def _import(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise RuntimeError(
            f"logging.{name}=true needs the {name} package: pip install {name} "
            f"(or pip install 'selfdistill[{name}]'), or set logging.{name}=false"
        ) from None
