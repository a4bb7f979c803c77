"""`selfdistill report RUN_DIR`: curves and a summary of a training run's ``metrics.jsonl``.

Each line of ``metrics.jsonl`` is a JSON object with ``step`` and flat numeric keys such as
``loss``, ``reward/mean``, ``pmi/cos_total_ref``. Every numeric key found is plotted against
step; keys are grouped by their prefix before the first "/" (no "/" -> group "main"), one PNG
per group. ``report.md`` lists first / last / min / max / count per metric and links the PNGs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from selfdistill.analysis.plots import curves
from selfdistill.analysis.tables import markdown_table, read_jsonl


def collect_series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """{metric: (steps, values)} for every finite numeric (non-bool) key besides ``step``."""
    series: dict[str, tuple[list[float], list[float]]] = {}
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


def group_of(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else "main"


def write_run_report(run_dir: str | Path, output_dir: str | Path | None = None) -> Path:
    """Write one PNG per metric group and ``report.md``; return the report path."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} not found: pass the run directory a training run wrote")
    rows = read_jsonl(metrics_path)
    if not rows:
        raise ValueError(f"{metrics_path} is empty: the run logged no step yet")
    out = Path(output_dir) if output_dir else run_dir / "report"
    series = collect_series(rows)
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(series):
        groups[group_of(key)].append(key)
    table = []
    for key in sorted(series):
        xs, ys = series[key]
        table.append({"metric": key, "first": ys[0], "last": ys[-1], "min": min(ys), "max": max(ys),
                      "points": len(ys), "last_step": int(xs[-1])})
    lines = [f"# Run report: {run_dir.name}", "",
             f"{len(rows)} logged rows from `{metrics_path}`; steps "
             f"{rows[0]['step']} to {rows[-1]['step']}.", "",
             markdown_table(table, ["metric", "first", "last", "min", "max", "points", "last_step"])]
    for group, keys in groups.items():
        png = curves({k: series[k][0] for k in keys}, {k: series[k][1] for k in keys},
                     out / f"{group.replace('/', '_')}.png", title=f"{run_dir.name}: {group}", xlabel="step")
        lines += [f"## {group}", "", f"![{group}]({png.name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
