"""What defines a training run, recorded in every checkpoint and compared before a resume.

A checkpoint's ``state.json`` holds ``run``: the config keys that decide what the run learns
(``RUN_KEYS``: method, model, LoRA shape, data spec and mapping, sampling, objective, optimizer,
the lr shape, contexts, seed) plus ``data.fingerprint``, a hash of the examples themselves, so an
edited data file is caught even under the same path. Keys that only change speed, logging or
length (``schedule.max_steps``, ``micro_batch_size``, ``checkpoint.*``, ``logging.*``, ``eval.*``,
``objective.loss_chunk_size``, ...) are free to change.

Before any model loads, :func:`inspect` compares the newest checkpoint's record with this
command's config:

- ``resume=false`` and checkpoints exist: refused, with advice that works (``resume=true`` only
  when the runs match; else another output_dir, and what differs);
- ``resume=true``: every difference is an error naming the key, the old and the new value,
  unless ``resume_allow_changes=true``: then each change is logged at WARNING, applied (the
  optimizer's hyperparameters and lr shape, a restart of the prompt stream on new data) and
  recorded in ``output_dir/resumes.jsonl`` and at the top of ``config.yaml`` with the step it
  took effect. ``FIXED`` keys (the shapes of the saved weights and optimizer state) can never
  change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint
from .batches import DataPosition
from .config import SECTIONS, TrainConfig

log = logging.getLogger(__name__)

RESUMES = "resumes.jsonl"
# sections whose every key defines the run, minus EXCLUDED; plus the single keys of RUN_KEYS
RUN_SECTIONS = ("method", "sampling", "objective", "optimizer")
RUN_KEYS = ("seed", "contexts", "model.name", "lora.enabled", "lora.r", "lora.alpha", "lora.dropout",
            "lora.target_modules", "data.spec", "data.split", "data.limit", "data.columns",
            "data.on_bad_rows", "data.shuffle", "data.data_seed", "schedule.prompts_per_step",
            "schedule.warmup_steps", "schedule.decay", "schedule.min_lr_ratio",
            "rewards.answer_format")  # decides the GRPO/SDPO reward, so the training signal
EXCLUDED = ("objective.loss_chunk_size",)  # same numbers, chunked or not
FIXED = ("method.name", "model.name", "lora.enabled", "lora.r", "lora.target_modules")


class OutputDirError(RuntimeError):
    """output_dir holds a run this command cannot start or continue; the message says what to do."""


@dataclass(frozen=True)
class Change:
    """One run-defining key whose value differs from the checkpoint's record."""

    key: str
    old: Any
    new: Any

    def line(self) -> str:
        return f"{self.key}: {self.old!r} -> {self.new!r}"


@dataclass
class ResumePlan:
    """The checkpoint to resume from and the accepted changes."""

    folder: Path
    step: int
    changes: list[Change] = field(default_factory=list)


def run_definition(cfg: TrainConfig, examples: list) -> dict[str, Any]:
    """The flat record of what defines the run (dotted key -> value) with the data fingerprint."""
    flat = flatten(cfg)
    keys = [k for k in flat if k.split(".")[0] in RUN_SECTIONS] + list(RUN_KEYS)
    record = {k: flat[k] for k in keys if k not in EXCLUDED}
    record["data.fingerprint"] = fingerprint(examples)
    return record


def flatten(cfg: TrainConfig) -> dict[str, Any]:
    """Every config value under its dotted key (``optimizer.lr``; top-level keys as they are)."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in SECTIONS:
            flat.update({f"{f.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
        else:
            flat[f.name] = value
    return flat


def fingerprint(examples: list) -> str:
    """``sha256:<16 hex> (<n> rows)`` over every example's id, problem, solution, answer and feedback
    (when it has one), in order."""
    digest = hashlib.sha256()
    for e in examples:
        fields = [e.id, e.problem, e.solution, e.answer]
        if getattr(e, "feedback", None) is not None:  # rows without feedback hash as they always did
            fields.append(e.feedback)
        digest.update(json.dumps(fields, ensure_ascii=False).encode())
        digest.update(b"\n")
    return f"sha256:{digest.hexdigest()[:16]} ({len(examples)} rows)"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Keys recorded in both with different values (a key only one side knows is not compared:
    records of older versions lack some)."""
    return [Change(k, old[k], new[k]) for k in new if k in old and _norm(old[k]) != _norm(new[k])]


def _norm(value: Any) -> Any:
    """JSON round trip, so a record read back from state.json compares equal to a live one."""
    return json.loads(json.dumps(value))


def recorded(state: dict) -> dict[str, Any]:
    """The run record of a checkpoint state (a checkpoint older than records: its method only)."""
    return state.get("run") or {"method.name": state.get("method")}


def inspect(cfg: TrainConfig, root: Path, definition: dict[str, Any]) -> ResumePlan | None:
    """Decide whether this command may start or continue in ``cfg.output_dir`` (before the model).

    Returns the plan of a resume, or None for a fresh start.

    Raises:
        OutputDirError: checkpoints exist without resume=true, or resume=true with changes that
            are not allowed; the message lists each changed key with its old and new value.
    """
    out = Path(cfg.output_dir)
    folder = checkpoint.latest(root)
    if not cfg.resume:
        if not checkpoint.complete_steps(root):
            return None
        if folder is None:
            raise OutputDirError(f"{out} holds checkpoints that all fail their checksums: choose another "
                                 f"output_dir, or delete {root} to start over there")
        state = _state(folder)
        changes = differences(recorded(state), definition)
        if not changes:
            raise OutputDirError(f"{out} already holds checkpoints of this run (up to step {state['step']}): "
                                 "pass resume=true to continue it, or choose another output_dir")
        raise OutputDirError(
            f"{out} already holds checkpoints of another run (up to step {state['step']}, method "
            f"{recorded(state).get('method.name')}) that differs from this command in:\n"
            + _listing(changes) + f"\nChoose another output_dir for this run (or delete {root} to start "
            "over there); resume=true would continue the old run only with its own settings.")
    if folder is None:
        log.warning("resume=true but %s has no complete checkpoint: starting from step 0", root)
        return None
    state = _state(folder)
    changes = differences(recorded(state), definition)
    fixed = [c for c in changes if c.key in FIXED]
    if fixed:
        raise OutputDirError(
            f"cannot resume {folder}: these keys decide the shape of its saved weights and optimizer "
            "state and differ from the checkpoint:\n" + _listing(fixed) +
            f"\nRestore them (the run's values are in {out / 'config.yaml'}), or choose another output_dir.")
    if changes and not cfg.resume_allow_changes:
        raise OutputDirError(
            f"resume=true, but this command differs from the run in {folder} (step {state['step']}) in:\n"
            + _listing(changes) + f"\nRestore these values (the run's are in {out / 'config.yaml'}) to "
            "continue the same run, choose another output_dir for a new one, or add "
            "resume_allow_changes=true to continue with the changes (each is logged and recorded in "
            "config.yaml with the step it takes effect).")
    step = int(state["step"])
    for c in changes:
        log.warning("resume: %s changed from %r to %r, in effect from step %d", c.key, c.old, c.new, step + 1)
    return ResumePlan(folder=folder, step=step, changes=changes)


def _state(folder: Path) -> dict:
    return json.loads((folder / "state.json").read_text())


def _listing(changes: list[Change]) -> str:
    return "\n".join(f"  {c.line()}" for c in changes)


def apply_changes(plan: ResumePlan, cfg: TrainConfig, optimizer, scheduler, stream) -> None:
    """Make the loaded states follow the accepted changes (a no-op without changes).

    The optimizer's hyperparameters and the peak lr come from the checkpoint; a changed
    ``optimizer.*`` or lr shape is written into them (the current lr recomputed for the
    resumed step). Changed data restarts the prompt stream at epoch 0 of the new data.
    """
    keys = {c.key for c in plan.changes}
    if any(k.startswith(("optimizer.", "schedule.")) for k in keys):
        o = cfg.optimizer
        scheduler.base_lrs = [o.lr for _ in optimizer.param_groups]
        for group, lmbda in zip(optimizer.param_groups, scheduler.lr_lambdas):
            group.update(initial_lr=o.lr, lr=o.lr * lmbda(scheduler.last_epoch), weight_decay=o.weight_decay,
                         betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_eps)
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    if any(k.startswith("data.") for k in keys):
        stream.position = DataPosition(data_seed=cfg.data.data_seed)
        log.warning("resume: the data changed, so the prompt stream starts again at epoch 0 of the new data")


def record(out: Path, plan: ResumePlan, kept_rows: int) -> None:
    """Append this resume (step, checkpoint, metric rows kept, changes) to ``out/resumes.jsonl``."""
    entry = {"step": plan.step, "checkpoint": str(plan.folder), "metrics_rows_kept": kept_rows,
             "changes": [{"key": c.key, "old": c.old, "new": c.new, "from_step": plan.step + 1}
                         for c in plan.changes]}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / RESUMES, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def history(out: Path) -> list[dict]:
    """Every resume recorded in ``out/resumes.jsonl`` (oldest first; [] when none)."""
    path = Path(out) / RESUMES
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config_header(out: Path) -> str:
    """YAML comment lines for config.yaml: each resume and each change with the step it took
    effect (comments, so config.yaml still loads as a recipe)."""
    lines = []
    for entry in history(out):
        lines.append(f"# resumed from step {entry['step']} ({entry['checkpoint']})")
        lines += [f"#   from step {c['from_step']}: {c['key']}: {c['old']!r} -> {c['new']!r}"
                  for c in entry["changes"]]
    return "".join(line + "\n" for line in lines)


def announce(plan: ResumePlan, kept_rows: int, logged_rows: int) -> None:
    """The visible resume line on stderr."""
    dropped = logged_rows - kept_rows
    extra = f"; {dropped} rows logged after it dropped" if dropped > 0 else ""
    print(f"selfdistill: resumed from step {plan.step} (checkpoint {plan.folder}, {kept_rows} metric rows "
          f"kept{extra})", file=sys.stderr)
