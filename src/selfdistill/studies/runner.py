"""Run a study: the base model's evaluation once, then every cell (train, evaluate), then the report.

Layout of ``output_dir``::

    settings.json            resolved settings, extra train overrides and hardware (device, dtype,
                             why) of the last invocation
    base/eval/<set>/         the base model's evaluation (shared by every cell)
    cells/<cell>/run/        the training run (metrics.jsonl, checkpoints/, final/)
    cells/<cell>/eval/<set>/ summary.json + samples.jsonl
    cells/<cell>/COMPLETE    written last: the cell is finished and is never rerun
    report/                  summary.md, results.md/.csv, PNG plots

A rerun skips every cell with COMPLETE, reuses finished phases of the others (training done,
evaluations done) and resumes a killed training from its newest checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .grid import Cell, Study, select_cells
from .jobs import evaluate_model, say, train_cell, write_json

MARKER = "COMPLETE"


def run_study(study: Study, settings: dict, extra: list[str], output_dir: str | Path) -> Path:
    """Run (or finish) ``study`` in ``output_dir``; returns the report folder."""
    from selfdistill.hardware import resolve

    from .grid import StudyError

    try:
        hardware = resolve(settings["dtype"], settings.get("device", "auto"))
    except ValueError as err:
        raise StudyError(f"dtype={settings['dtype']} device={settings.get('device')}: {err}") from None
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", {"study": study.name, "settings": settings, "extra": extra,
                                       "hardware": hardware.describe()})
    say(f"study {study.name}: {hardware.line()}")
    _quiet_libraries()
    if settings.get("threads"):
        import torch

        torch.set_num_threads(int(settings["threads"]))
    cells = select_cells(study, settings)
    eval_sets = study.eval_sets(settings)
    examples = {name: _eval_examples(spec, settings) for name, spec in eval_sets.items()}
    say(f"study {study.name} ({settings['scale']}): {len(cells)} cells, eval sets "
        + ", ".join(f"{n}={len(e)} problems" for n, e in examples.items()))

    base_dir = out / "base"
    if (base_dir / MARKER).exists():
        say("[base] evaluation found, reused")
    else:
        say(f"[base] evaluating {settings['model']}")
        t0 = time.perf_counter()
        _evaluate_all(settings["model"], settings, examples, eval_sets, base_dir, "base")
        write_json(base_dir / MARKER, {"seconds": time.perf_counter() - t0})

    for i, cell in enumerate(cells, 1):
        label = ", ".join(f"{k}={v}" for k, v in cell.params.items())
        cell_dir = out / "cells" / cell.name
        if (cell_dir / MARKER).exists():
            say(f"[{i}/{len(cells)}] {cell.name} ({label}): finished, reused")
            continue
        say(f"[{i}/{len(cells)}] {cell.name} ({label}): {cell.kind}")
        timings = run_cell(cell, settings, extra, out, cell_dir, examples, eval_sets)
        write_json(cell_dir / MARKER, timings)
        say(f"  done in {sum(timings.values()):.0f} s")

    from .report import write_report

    report = write_report(study, settings, cells, eval_sets, out)
    say(f"report: {report / 'summary.md'}")
    return report


def run_cell(cell: Cell, s: dict, extra: list[str], out: Path, cell_dir: Path, examples: dict,
             eval_sets: dict) -> dict[str, float]:
    """Train then evaluate one cell; returns the seconds of each phase run in this session."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if cell.kind == "sft":
        from .offline import sft_cell

        run_dir = sft_cell(cell, s, cell_dir)
    else:
        run_dir = train_cell(cell, s, extra, out, cell_dir)
    timings["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if run_dir is not None:
        _evaluate_all(str(run_dir / "final"), s, examples, eval_sets, cell_dir, cell.name)
    timings["eval_s"] = time.perf_counter() - t0
    return timings


def _evaluate_all(model_ref: str, s: dict, examples: dict, eval_sets: dict, folder: Path,
                  label: str) -> None:
    for name, exs in examples.items():
        summary = evaluate_model(model_ref, s, exs, folder / "eval" / name, label, eval_sets[name])
        k = summary["samples_per_problem"]
        say(f"  eval {name}: avg@{k} {summary[f'avg@{k}']:.3f}, mean tokens "
            f"{summary['mean_tokens']:.1f}, markers/1k {summary['markers_word_per_1k']:.2f}")


def _eval_examples(spec: str, s: dict) -> list:
    from selfdistill.eval.benchmarks import load_benchmark

    return load_benchmark(spec, limit=s["eval_problems"] or None, seed=s["seed"])


def _quiet_libraries() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def read_cell_summary(folder: Path, eval_set: str) -> dict | None:
    path = folder / "eval" / eval_set / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None
