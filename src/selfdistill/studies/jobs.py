"""The jobs a cell runs: on-policy training (optionally to a wall-clock budget), evaluation.

Each job writes its result before returning and is skipped when that result exists, so a rerun
of a killed study redoes only the unfinished part: a training run with checkpoints resumes with
``resume=true``; one killed before its first checkpoint starts over.

Rewards in training use the study's ``answer_format`` through ``rewards.answer_format``.
One thing this module works around rather than changes:
- time budgets: the trainer has no wall-clock option. ``budgeted_steps`` runs a short probe (the
  first ``probe_steps`` steps of the real run, kept), takes the median ``time/step_s`` of the
  probe's steps, and sets ``max_steps = floor(budget_s / that)``; the run then resumes from the
  probe's checkpoint. Model loading and evaluation are outside the budget.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from .grid import Cell


def say(message: str) -> None:
    print(message, flush=True)


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (the file exists only once complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def common_overrides(s: dict, run_dir: Path, *, max_steps: int, resume: bool) -> list[str]:
    """`selfdistill train` overrides every training cell of a study shares.

    ``lr=0`` and ``train_temperature<0`` keep the recipe's own values (the GPU configurations).
    The study's ``device`` becomes the trainer's ``device=cpu`` for ``cpu``, else ``device=auto``
    (each process on its CUDA device; pick a GPU with CUDA_VISIBLE_DEVICES).
    """
    keep_recipe = [
        *([f"optimizer.lr={s['lr']}"] if s["lr"] > 0 else []),
        *([f"sampling.temperature={s['train_temperature']}"] if s["train_temperature"] >= 0 else []),
    ]
    return [*keep_recipe,
        f"model.name={s['model']}", f"model.dtype={s['dtype']}", f"device={train_device(s)}",
        f"data.spec={s['train_data']}",
        f"schedule.max_steps={max_steps}", f"schedule.prompts_per_step={s['prompts_per_step']}",
        f"schedule.micro_batch_size={s['micro_batch_size']}", "schedule.warmup_steps=0",
        f"sampling.rollouts_per_prompt={s['rollouts']}", f"sampling.max_new_tokens={s['max_new_tokens']}",
        f"lora.r={s['lora_r']}", f"lora.alpha={2 * s['lora_r']}",
        f"checkpoint.every={s['checkpoint_every']}", "checkpoint.keep_last=1", "tiny_sizes=false",
        "logging.tensorboard=false", f"logging.progress={str(s['progress']).lower()}",
        f"seed={s['seed']}", f"output_dir={run_dir}", f"resume={str(resume).lower()}",
        f"rewards.answer_format={s['answer_format']}",
    ]


def train_device(s: dict) -> str:
    """The trainer's ``device`` key (auto | cpu) for the study's ``device`` setting."""
    return "cpu" if str(s.get("device", "auto")) == "cpu" else "auto"


def cell_config(cell: Cell, s: dict, extra: list[str], out: Path, run_dir: Path, *, max_steps: int,
                resume: bool):
    """The TrainConfig of a training cell (study overrides, then the cell's, then the user's)."""
    from selfdistill.train.config import load_config

    overrides = common_overrides(s, run_dir, max_steps=max_steps, resume=resume)
    if cell.data is not None:
        overrides.append(f"data.spec={cell.data(s, out)}")
    return load_config(cell.recipe, [*overrides, *cell.overrides, *extra])


def run_training(cfg) -> Path:
    """Train one config to its max_steps (rewards read with ``rewards.answer_format``)."""
    from selfdistill.train.loop import train

    return train(cfg)


def train_cell(cell: Cell, s: dict, extra: list[str], out: Path, cell_dir: Path) -> Path:
    """Train (or resume, or reuse) a training cell; returns its run directory."""
    from selfdistill.train import checkpoint

    run_dir = cell_dir / "run"
    done = cell_dir / "train.json"
    if done.exists():
        return run_dir
    t0 = time.perf_counter()
    max_steps = s["steps"]
    if cell.budget_s is not None:
        max_steps = budgeted_steps(cell, s, extra, out, cell_dir)
    resume = bool(checkpoint.complete_steps(run_dir / "checkpoints"))
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
    cfg = cell_config(cell, s, extra, out, run_dir, max_steps=max_steps, resume=resume)
    run_training(cfg)
    write_json(done, {"steps": max_steps, "seconds_this_session": time.perf_counter() - t0,
                      "resumed": resume})
    return run_dir


def budgeted_steps(cell: Cell, s: dict, extra: list[str], out: Path, cell_dir: Path) -> int:
    """max_steps that spends about ``cell.budget_s`` seconds of training steps (module docstring)."""
    from selfdistill.analysis.tables import read_jsonl
    from selfdistill.train import checkpoint

    path = cell_dir / "budget.json"
    if path.exists():
        return int(json.loads(path.read_text())["max_steps"])
    probe = max(1, int(s.get("probe_steps", 2)))
    run_dir = cell_dir / "run"
    resume = bool(checkpoint.complete_steps(run_dir / "checkpoints"))
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    say(f"  probe: {probe} step(s) to measure seconds per step")
    run_training(cell_config(cell, s, extra, out, run_dir, max_steps=probe, resume=resume))
    times = [r["time/step_s"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    per_step = statistics.median(times[1:] if len(times) > 1 else times)
    steps = max(probe, math.floor(cell.budget_s / max(per_step, 1e-9)))
    write_json(path, {"budget_s": cell.budget_s, "probe_steps": probe, "probe_step_s": times,
                      "seconds_per_step": per_step, "max_steps": steps})
    say(f"  budget {cell.budget_s:.0f} s at {per_step:.2f} s/step -> max_steps={steps}")
    return steps


def evaluate_model(model_ref: str, s: dict, examples: list, folder: Path, label: str,
                   benchmark: str) -> dict:
    """Sample ``eval_samples`` answers per problem; summary.json (written last) + samples.jsonl."""
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.eval.runner import evaluate
    from selfdistill.hardware import resolve
    from selfdistill.rewards import RewardScorer
    from selfdistill.rollout import SamplingParams

    summary_path = folder / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_eval_model(model_ref, s)
    renderer = Renderer(tokenizer, ContextConfig(max_length=model.config.max_position_embeddings))
    k = s["eval_samples"]
    params = SamplingParams(temperature=s["eval_temperature"], top_p=0.95, top_k=20,
                            max_new_tokens=s["eval_max_new_tokens"], seed=s["seed"] + 1000)
    with RewardScorer(timeout_s=5.0, answer_format=s["answer_format"]) as scorer:
        summary, rows = evaluate(model, tokenizer, examples, k=k, params=params, renderer=renderer,
                                 pass_ks=sorted({1, k}), benchmark=benchmark, model_name=label,
                                 scorer=scorer, progress=s["progress"])
    summary["answer_format"] = s["answer_format"]
    summary["hardware"] = resolve(s["dtype"], s.get("device", "auto"), warn=False).describe()
    with open(folder / "samples.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    write_json(summary_path, summary)
    return summary


def load_eval_model(model_ref: str, s: dict):
    """``(model, tokenizer)`` on the study's device and dtype: a run folder, one of its
    checkpoints (``train.run_checkpoint``) or anything ``load_model`` reads."""
    from selfdistill.models import load_model
    from selfdistill.train.run_checkpoint import find, load_run_checkpoint

    device = s.get("device", "auto")
    run = find(model_ref)
    if run is not None and not run.is_final:
        return load_run_checkpoint(run, dtype=s["dtype"], device=device)
    return load_model(run.folder if run else model_ref, dtype=s["dtype"], device=device)
