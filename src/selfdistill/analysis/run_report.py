"""`selfdistill report RUN_DIR`: a training run's curves and summary, readable without the code.

Reads ``metrics.jsonl`` (one JSON row per step: ``step`` and flat numeric keys), and when present
``config.yaml`` (the run's settings), ``hardware.json`` (the machine) and ``resumes.jsonl`` (one
line per resume, written by the trainer). ``report.md`` holds, in order: the run's key settings
and data, the machine, the resumes, the latest ``eval/*`` numbers, the metrics that never
changed (a value in a table, not a flat plot), then one PNG per group of
``analysis.metric_guide`` (titled panels with units, integer step ticks, a dashed line where the
run resumed) with a one-line "how to read", and a first / last / min / max table of every metric.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import yaml

from selfdistill.analysis.metric_guide import GROUPS, OTHER, group_of, title_and_unit
from selfdistill.analysis.plots import panels
from selfdistill.analysis.tables import markdown_table, read_jsonl

Series = dict[str, tuple[list[float], list[float]]]


def collect_series(rows: list[dict]) -> Series:
    """{metric: (steps, values)} for every finite numeric (non-bool) key besides ``step``."""
    series: Series = {}
    for i, row in enumerate(rows, 1):
        if "step" not in row:
            raise ValueError(f"metrics.jsonl row {i}: no 'step' key (every row needs the training step)")
        step = row["step"]
        for key, value in row.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(float(step))
            ys.append(float(value))
    return series


def is_constant(values: list[float]) -> bool:
    """True when every value equals the first (a flat line says nothing a number would not)."""
    return all(v == values[0] for v in values)


def write_run_report(run_dir: str | Path, output_dir: str | Path | None = None) -> Path:
    """Write the PNGs and ``report.md`` (see the module docstring); return the report path."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} not found: pass the run directory a training run wrote")
    rows = read_jsonl(metrics_path)
    if not rows:
        raise ValueError(f"{metrics_path} is empty: the run logged no step yet")
    out = Path(output_dir) if output_dir else run_dir / "report"
    series = collect_series(rows)
    resumes = _resumes(run_dir)
    lines = [f"# Run report: {run_dir.name}", "",
             f"{len(rows)} logged rows from `{metrics_path}`; steps {rows[0]['step']} to {rows[-1]['step']}.", ""]
    lines += _run_section(run_dir) + _resume_section(resumes) + _eval_section(rows)
    constant = sorted(k for k, (_, ys) in series.items() if len(ys) > 1 and is_constant(ys))
    if constant:
        table = [{"metric": k, "meaning": _label(k), "value": series[k][1][0], "points": len(series[k][1])}
                 for k in constant]
        lines += ["## Constant over the run", "", markdown_table(table, ["metric", "meaning", "value", "points"])]
    by_group: dict[str, list[str]] = defaultdict(list)
    for key in sorted(series):
        if key not in constant:
            by_group[group_of(key).name].append(key)
    vlines = [(entry["step"] + 0.5, f"resumed @{entry['step']}") for entry in resumes]
    for group in (*GROUPS, OTHER):
        keys = by_group.get(group.name)
        if not keys:
            continue
        items = [(*title_and_unit(k), *series[k]) for k in keys]
        png = panels(items, out / f"{group.name}.png", title=f"{run_dir.name}: {group.title}", vlines=vlines)
        lines += [f"## {group.title}", "", f"How to read: {group.how_to_read}", "", f"![{group.name}]({png.name})", ""]
    lines += ["## All metrics", "", markdown_table(_summary_table(series),
                                                   ["metric", "first", "last", "min", "max", "points", "last_step"])]
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _label(key: str) -> str:
    title, unit = title_and_unit(key)
    return f"{title} ({unit})" if unit else title


def _summary_table(series: Series) -> list[dict]:
    return [{"metric": k, "first": ys[0], "last": ys[-1], "min": min(ys), "max": max(ys), "points": len(ys),
             "last_step": int(xs[-1])} for k, (xs, ys) in sorted(series.items())]


def _run_section(run_dir: Path) -> list[str]:
    """The run's key settings from config.yaml and the machine from hardware.json (when present)."""
    lines: list[str] = []
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        cfg = yaml.safe_load(config_path.read_text()) or {}
        table = [{"setting": k, "value": v} for k, v in key_settings(cfg).items()]
        lines += ["## The run", "", markdown_table(table, ["setting", "value"])]
    hardware_path = run_dir / "hardware.json"
    if hardware_path.is_file():  # the record as the run wrote it (not this machine's)
        record = json.loads(hardware_path.read_text())
        table = [{"machine": MACHINE_LABELS[k], "value": record[k]} for k in MACHINE_LABELS
                 if record.get(k) not in (None, "", {})]
        lines += ["## The machine", "", markdown_table(table, ["machine", "value"])]
    return lines


MACHINE_LABELS = {"device": "device", "processor": "processor", "cpu_capability": "CPU vector ISA",
                  "isa_caps": "ISA caps set in the environment", "dtype": "weight dtype",
                  "reason": "why that dtype", "threads": "torch threads", "torch": "torch version"}


def key_settings(cfg: dict) -> dict[str, str]:
    """The settings a reader needs first, as text, from a run's config.yaml mapping."""
    get = lambda section, key, default=None: (cfg.get(section) or {}).get(key, default)  # noqa: E731
    lora = (f"LoRA r {get('lora', 'r')}, alpha {get('lora', 'alpha')}" if get("lora", "enabled", True)
            else "full fine-tuning")
    data = str(get("data", "spec"))
    if get("data", "columns"):
        data += ", columns " + ", ".join(f"{f}={c}" for f, c in get("data", "columns").items())
    if get("data", "limit") is not None:
        data += f", first {get('data', 'limit')} rows"
    settings = {
        "method": f"{get('method', 'name')} (teacher {get('method', 'teacher')})",
        "model": f"{get('model', 'name')}, {lora}",
        "data": data,
        "steps": (f"{get('schedule', 'max_steps')} steps x {get('schedule', 'prompts_per_step')} prompts x "
                  f"{get('sampling', 'rollouts_per_prompt')} rollouts"),
        "sampling": (f"max {get('sampling', 'max_new_tokens')} new tokens, T {get('sampling', 'temperature')}, "
                     f"top-p {get('sampling', 'top_p')}, top-k {get('sampling', 'top_k')}"),
        "objective": f"beta {get('objective', 'beta')}, tau {get('objective', 'temperature')}",
        "optimizer": (f"lr {get('optimizer', 'lr')}, {get('schedule', 'decay')} after "
                      f"{get('schedule', 'warmup_steps')} warm-up steps"),
        # runs before the rewards section kept it under logging
        "answers read as": str(get("rewards", "answer_format") or get("logging", "answer_format")),
    }
    if get("eval", "every"):
        settings["held-out eval"] = (f"{get('eval', 'data')} every {get('eval', 'every')} steps, "
                                     f"{get('eval', 'limit')} problems x k {get('eval', 'k')}")
    return settings


def _resumes(run_dir: Path) -> list[dict]:
    path = run_dir / "resumes.jsonl"
    return read_jsonl(path) if path.is_file() else []


def _resume_section(resumes: list[dict]) -> list[str]:
    lines = []
    for entry in resumes:
        changes = "; ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in entry.get("changes", []))
        lines.append(f"- resumed from step {entry['step']} ({entry.get('metrics_rows_kept')} metric rows kept)"
                     + (f", with changes from step {entry['step'] + 1}: {changes}" if changes else ""))
    return ["## Resumes", "", *lines, ""] if lines else []


def _eval_section(rows: list[dict]) -> list[str]:
    """The latest row's ``eval/*`` numbers, when the run logged any."""
    latest = next((r for r in reversed(rows) if any(k.startswith("eval/") for k in r)), None)
    if latest is None:
        return []
    table = [{"metric": k, "meaning": _label(k), "value": v} for k, v in latest.items()
             if k.startswith("eval/") and isinstance(v, (int, float))]
    return [f"## Latest held-out evaluation (step {latest['step']})", "",
            markdown_table(table, ["metric", "meaning", "value"])]
