"""A study's combined report: one table (markdown + CSV) with a row per cell and the base model,
training curves of every cell overlaid (from metrics.jsonl), and per-eval-set bar charts."""

from __future__ import annotations

import json
import math
from pathlib import Path

from selfdistill.analysis.plots import _save
from selfdistill.analysis.tables import markdown_table, read_jsonl, write_table

from .grid import Cell, Study

CURVES = [  # (metrics.jsonl key, title)
    ("loss", "loss"),
    ("accuracy", "training accuracy (rollouts)"),
    ("response/length_mean", "response length (tokens)"),
    ("markers/per_1k", "epistemic markers per 1k tokens"),
    ("teacher/entropy", "teacher entropy (nats)"),
    ("pmi/norm_ratio_ref_total", "‖Δ_ref‖ / ‖Δ_total‖"),
    ("pmi/cos_total_ref", "cos(Δ_total, Δ_ref)"),
    ("pmi/cos_total_it", "cos(Δ_total, Δ_it)"),
    ("pmi/kl_ratio_ref_median", "KL(T‖R) / KL(T‖S), median over tokens"),
]
TAIL = 3  # training columns average the last TAIL steps (single steps are very noisy)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _hardware_lines(out: Path) -> list[str]:
    """The hardware line of the last invocation (settings.json), or nothing for older studies."""
    from selfdistill.eval.runner import hardware_line

    hw = _json(out / "settings.json").get("hardware")
    return [f"Hardware: {hardware_line(hw)}.", ""] if hw else []


def _tail_mean(rows: list[dict], key: str) -> float | str:
    vals = [r[key] for r in rows[-TAIL:] if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return sum(vals) / len(vals) if vals else ""


def result_rows(cells: list[Cell], eval_sets: dict, out: Path) -> tuple[list[dict], list[str]]:
    """(rows, columns): the base model first, then one row per cell."""
    param_keys: list[str] = []
    for c in cells:
        param_keys += [k for k in c.params if k not in param_keys]
    rows = []
    for name, folder, cell in [("base", out / "base", None)] + [(c.name, out / "cells" / c.name, c)
                                                                  for c in cells]:
        row: dict = {"cell": name, **{k: (cell.params.get(k, "") if cell else "") for k in param_keys}}
        metrics = read_jsonl(folder / "run" / "metrics.jsonl") if (folder / "run" / "metrics.jsonl").exists() else []
        train = _json(folder / "train.json")
        gen = _json(folder / "generation.json")
        row["steps"] = metrics[-1]["step"] if metrics else ""
        row["train min"] = round(sum(r.get("time/step_s", 0.0) for r in metrics) / 60, 2) if metrics else ""
        row["train acc (last 3)"] = _tail_mean(metrics, "accuracy")
        row["train len (last 3)"] = _tail_mean(metrics, "response/length_mean")
        row["train markers/1k (last 3)"] = _tail_mean(metrics, "markers/per_1k")
        if gen or "pairs" in train:
            row["sft pairs"] = train.get("pairs", gen.get("kept", ""))
            row["gen acc"] = gen["correct"] / gen["samples"] if gen.get("samples") else ""
        for set_name in eval_sets:
            s = _json(folder / "eval" / set_name / "summary.json")
            if s:
                k = s["samples_per_problem"]
                row[f"{set_name} avg@k"] = s[f"avg@{k}"]
                row[f"{set_name} ±se"] = math.sqrt(max(s[f"avg@{k}"] * (1 - s[f"avg@{k}"]), 0.0)
                                                   / max(s["num_problems"], 1))
                row[f"{set_name} tokens"] = s["mean_tokens"]
                row[f"{set_name} markers/1k"] = s["markers_word_per_1k"]
        rows.append(row)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    return rows, columns


def overlay_curves(series: dict[str, list[dict]], path: Path, title: str) -> Path | None:
    """One subplot per metric present, one line per cell; None when there is nothing to plot."""
    from selfdistill.analysis.plots import metric_overlays

    return metric_overlays(series, CURVES, path, title=title)


def eval_bars(rows: list[dict], set_name: str, path: Path) -> Path | None:
    """Accuracy (with ±se), mean tokens and markers/1k per cell on one eval set."""
    import matplotlib.pyplot as plt

    have = [r for r in rows if f"{set_name} avg@k" in r]
    if not have:
        return None
    labels = [r["cell"] for r in have]
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 1.1 * len(labels) * 3), 3.6))
    panels = [("avg@k", "accuracy (avg@k)"), ("tokens", "mean tokens"), ("markers/1k", "markers / 1k tokens")]
    for ax, (key, sub) in zip(axes, panels):
        vals = [r[f"{set_name} {key}"] for r in have]
        err = [r[f"{set_name} ±se"] for r in have] if key == "avg@k" else None
        ax.bar(range(len(labels)), vals, yerr=err, color=["0.6"] + ["C0"] * (len(labels) - 1))
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=7)
        ax.set_title(sub, fontsize=9)
    fig.suptitle(f"evaluation on {set_name} (grey: base model)", fontsize=10)
    return _save(fig, path)


def write_report(study: Study, s: dict, cells: list[Cell], eval_sets: dict, out: Path) -> Path:
    """Write ``out/report``: summary.md, results.md/.csv, training_curves.png, eval_<set>.png."""
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    rows, columns = result_rows(cells, eval_sets, out)
    write_table(rows, columns, report / "results", title=f"{study.name}: results")
    series = {c.name: read_jsonl(out / "cells" / c.name / "run" / "metrics.jsonl") for c in cells
              if (out / "cells" / c.name / "run" / "metrics.jsonl").exists()}
    curves = overlay_curves(series, report / "training_curves.png", f"{study.name}: training curves")
    bars = [eval_bars(rows, name, report / f"eval_{name}.png") for name in eval_sets]
    timings = {c.name: {**_json(out / "cells" / c.name / "COMPLETE"),
                        **{f"budget {k}": v for k, v in _json(out / "cells" / c.name / "budget.json").items()
                           if k in ("budget_s", "seconds_per_step", "max_steps")}}
               for c in cells}
    (report / "timings.json").write_text(json.dumps(timings, indent=2))
    lines = [f"# Study `{study.name}` ({s['scale']} scale)", "", f"Source: {study.source}", "",
             study.question, "",
             f"Model `{s['model']}`, training data `{s['train_data']}`; evaluation: "
             + ", ".join(f"{n} = `{spec}`" for n, spec in eval_sets.items())
             + f" ({s['eval_problems'] or 'all'} problems x {s['eval_samples']} samples, "
             f"T={s['eval_temperature']}, top-p 0.95, top-k 20, {s['eval_max_new_tokens']} new tokens, "
             f"answer_format `{s['answer_format']}`).", "",
             *_hardware_lines(out),
             "## Results", "", markdown_table(rows, columns),
             f"Training columns average the last {TAIL} logged steps; ±se is the binomial standard "
             "error over problems (differences under about twice it are noise).", ""]
    if curves:
        lines += ["![training curves](training_curves.png)", ""]
    lines += [f"![eval {n}]({p.name})" for n, p in zip(eval_sets, bars) if p] + [""]
    if study.notes:
        lines += ["## Notes", "", study.notes, ""]
    lines += ["## Settings", "", "```json", json.dumps(s, indent=1), "```", "",
              "Cell overrides: " + "; ".join(f"`{c.name}`: {' '.join(c.overrides) or '(none)'}"
                                             for c in cells), ""]
    (report / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    print()
    print(markdown_table(rows, [c for c in columns if c in ("cell",) or "avg@k" in c or "tokens" in c]))
    return report
