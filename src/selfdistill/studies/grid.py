"""What a study is: named settings (a CPU and a GPU scale), and a list of cells built from them.

A cell is one training job (a `selfdistill train` recipe plus overrides, optionally with a
wall-clock budget) or one offline SFT job; every cell is evaluated on the study's eval sets, and
the base model is evaluated once on the same sets. The runner (``runner.py``) does the work; this
module only describes it, so ``selfdistill study NAME --list`` needs no model.

Settings are flat ``key=value`` pairs. ``resolve_settings`` starts from the study's scale
(``scale=cpu`` default, ``scale=gpu`` the paper's sizes), applies the command line, and coerces each
value to the type of its default (lists are comma-separated). Keys a study does not know are not
dropped: they are forwarded as `selfdistill train` overrides to every training cell (so
``sampling.top_k=0`` works), and the trainer's own config checks reject the misspelled ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Settings every study has (CPU values; a study's gpu scale replaces what it needs).
COMMON_CPU: dict[str, Any] = {
    "model": "smollm2-135m",
    "dtype": "auto",  # selfdistill.hardware: bf16 only where the device computes it natively
    "device": "auto",  # CUDA when present, else the CPU; training cells get device=cpu or auto
    "train_data": "rg:basic_arithmetic?min_terms=2&max_terms=2&min_digits=1&max_digits=1&size=512&seed=1",
    "eval_data": "rg:basic_arithmetic?min_terms=2&max_terms=2&min_digits=1&max_digits=1&size=200&seed=2",
    "steps": 8,
    "prompts_per_step": 4,
    "rollouts": 1,
    "micro_batch_size": 16,
    "max_new_tokens": 64,
    "train_temperature": 1.0,
    "lr": 2e-4,
    "lora_r": 16,
    "eval_problems": 24,
    "eval_samples": 2,
    "eval_max_new_tokens": 64,
    "eval_temperature": 0.6,
    "answer_format": "boxed_or_last_number",
    "checkpoint_every": 4,
    "seed": 0,
    "cells": [],  # run only these cells (names); empty = all
    "progress": False,
    "threads": 0,  # torch CPU threads (0 = torch's default); 1 is much faster on a shared machine
}

# The published settings shared by the GPU configurations (Qwen3 thinking evals, LoRA r 64).
COMMON_GPU: dict[str, Any] = {
    "model": "Qwen/Qwen3-8B",
    "train_data": "openai/gsm8k:main",
    "eval_data": "aime24",
    "steps": 200,
    "prompts_per_step": 32,
    "rollouts": 8,
    "micro_batch_size": 8,
    "max_new_tokens": 1024,
    "train_temperature": 1.0,
    "lr": 5e-6,
    "lora_r": 64,
    "eval_problems": 0,  # 0 = the whole set
    "eval_samples": 12,
    "eval_max_new_tokens": 38912,
    "eval_temperature": 0.6,
    "answer_format": "boxed",
    "checkpoint_every": 50,
    "progress": True,
}


class StudyError(ValueError):
    """A study name, setting or value that cannot run; the message says what to write instead."""


@dataclass
class Cell:
    """One arm of a study.

    Attributes:
        name: folder name under ``output_dir/cells`` and the row label of the report.
        params: what distinguishes the cell (report columns), e.g. {"method": "sdpo", "c": "s"}.
        recipe: the `selfdistill train` recipe (None for an SFT cell).
        overrides: train overrides specific to this cell (applied after the study's common ones).
        budget_s: wall-clock seconds of training (max_steps chosen from a probe), or None.
        sft_guide: SFT cells: "student" (unguided) or "teacher" (solution-guided) generation.
        data: local data file written by the study for this cell (None: settings["train_data"]).
    """

    name: str
    params: dict[str, Any]
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    budget_s: float | None = None
    sft_guide: str | None = None
    data: Callable[[dict, Any], str] | None = None  # (settings, out_dir) -> data spec

    @property
    def kind(self) -> str:
        return "sft" if self.sft_guide else "train"


@dataclass
class Study:
    """A named experiment: settings at two scales, the cells, and the eval sets.

    ``cells(settings)`` and ``eval_sets(settings)`` build the grid from resolved settings, so one
    definition serves the CPU default, the GPU configuration and reduced test grids.
    """

    name: str
    source: str
    question: str
    cpu: dict[str, Any]
    gpu: dict[str, Any]
    cells: Callable[[dict], list[Cell]]
    eval_sets: Callable[[dict], dict[str, str]] = lambda s: {"eval": s["eval_data"]}
    notes: str = ""

    def defaults(self, scale: str) -> dict[str, Any]:
        if scale not in ("cpu", "gpu"):
            raise StudyError(f"scale must be cpu or gpu, got {scale!r}")
        out = {**COMMON_CPU, **self.cpu}
        if scale == "gpu":
            out.update(COMMON_GPU)
            out.update(self.gpu)
        out["scale"] = scale
        return out


def resolve_settings(study: Study, pairs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(settings, extra train overrides) from ``key=value`` strings; ``scale`` is applied first."""
    scale = "cpu"
    rest = []
    for item in pairs:
        if "=" not in item:
            raise StudyError(f"{item!r} must look like key=value (e.g. steps=4 or scale=gpu)")
        key, value = item.split("=", 1)
        if key.strip() == "scale":
            scale = value.strip()
        else:
            rest.append((key.strip(), value.strip()))
    settings = study.defaults(scale)
    extra = []
    for key, value in rest:
        if key in settings:
            settings[key] = coerce(value, settings[key], key)
        else:
            extra.append(f"{key}={value}")
    return settings, extra


def coerce(text: str, default: Any, key: str) -> Any:
    """``text`` as the type of ``default`` (bool, int, float, list of the element type, str)."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, list):
            items = [t.strip() for t in text.split(",") if t.strip()]
            kind = type(default[0]) if default else str
            return [coerce(t, kind(), key) if kind is not str else t for t in items]
    except ValueError:
        raise StudyError(f"setting {key}={text!r}: expected {type(default).__name__} "
                         f"(default {default!r})") from None
    return text


def select_cells(study: Study, settings: dict[str, Any]) -> list[Cell]:
    """The study's cells, restricted to ``settings["cells"]`` when given (unknown names refused)."""
    cells = study.cells(settings)
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise StudyError(f"study {study.name}: duplicate cell names in {names}")
    wanted = settings.get("cells") or []
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise StudyError(f"cells={','.join(unknown)} not in study {study.name}; "
                         f"its cells are: {', '.join(names)}")
    return [c for c in cells if not wanted or c.name in wanted]
