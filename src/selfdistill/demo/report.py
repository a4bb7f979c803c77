"""The demo's report: a side-by-side table (base, OPSD, Purified OPSD), training curves of both
arms overlaid, the diagnostics, and an honest note on what a run this small can show."""

from __future__ import annotations

import json
import math
from pathlib import Path

from selfdistill.analysis.plots import grouped_bars
from selfdistill.analysis.tables import markdown_table, read_jsonl, write_table

ARM_LABELS = {"base": "base", "opsd": "OPSD", "purified-opsd": "Purified OPSD"}
CURVES = [  # (metrics.jsonl key, title)
    ("loss", "distillation loss"),
    ("accuracy", "training accuracy (rollouts)"),
    ("response/length_mean", "response length (tokens)"),
    ("markers/per_1k", "epistemic markers per 1k tokens"),
    ("pmi/norm_ratio_ref_total", "‖Δ_ref‖ / ‖Δ_total‖"),
    ("pmi/cos_total_ref", "cos(Δ_total, Δ_ref)"),
    ("pmi/cos_total_it", "cos(Δ_total, Δ_it)"),
    ("pmi/kl_ratio_ref_median", "KL(T‖R) / KL(T‖S), median over tokens"),
    ("pmi/norm_ratio_frac_above_1", "share of tokens with ‖Δ_ref‖ > ‖Δ_total‖"),
]


def eval_rows(results: dict[str, dict]) -> list[dict]:
    """One table row per arm from the eval summaries (k = samples per problem)."""
    rows = []
    for arm, s in results.items():
        n, problems = s["samples_per_problem"], s["num_problems"]
        acc = s[f"avg@{n}"]
        rows.append({
            "model": ARM_LABELS.get(arm, arm), "problems": problems, "k": n,
            "avg@k": acc, "± s.e.": _standard_error(acc, problems), f"pass@{n}": s.get(f"pass@{n}", ""),
            "maj@k": s[f"maj@{n}"], "mean tokens": s["mean_tokens"],
            "truncated": s["truncation_rate"], "markers/1k (word)": s["markers_word_per_1k"],
            "markers/1k (paper)": s["markers_paper_per_1k"],
            "markers/response (paper)": s["markers_paper_per_response"],
        })
    return rows


def _standard_error(p: float, problems: int) -> float:
    """Binomial standard error over problems (conservative: ignores the k samples' help)."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(problems, 1))


def overlay_curves(series: dict[str, list[dict]], path: Path) -> Path | None:
    """The CURVES of both arms overlaid (one subplot per metric); None when nothing to plot."""
    from selfdistill.analysis.plots import metric_overlays

    named = {ARM_LABELS.get(arm, arm): rows for arm, rows in series.items()}
    return metric_overlays(named, CURVES, path, reference_lines={"pmi/norm_ratio_ref_total": 1.0},
                           title="training curves: OPSD vs Purified OPSD (same start, data, seed)")


def write_report(out: Path, settings, results: dict[str, dict], timings: dict[str, float],
                 hardware: dict | None = None) -> Path:
    """Write ``out/report`` (summary.md, eval table md/csv, PNGs, sample files); print a table.

    ``hardware``: ``selfdistill.hardware.Hardware.describe()`` of the run (device, dtype, why, CPU)."""
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    rows = eval_rows(results)
    columns = list(rows[0])
    write_table(rows, columns, report / "eval_table", title="Evaluation (same problems, same sampling)")
    labels = [r["model"] for r in rows]
    grouped_bars({"avg@k": [r["avg@k"] for r in rows]}, labels, report / "eval_accuracy.png",
                 title="accuracy (avg@k)", ylabel="accuracy")
    grouped_bars({"word": [r["markers/1k (word)"] for r in rows],
                  "paper": [r["markers/1k (paper)"] for r in rows]}, labels,
                 report / "eval_markers.png", title="epistemic markers per 1k tokens", ylabel="per 1k")
    series = {arm: read_jsonl(out / "runs" / arm / "metrics.jsonl")
              for arm in results if (out / "runs" / arm / "metrics.jsonl").exists()}
    overlay_curves(series, report / "training_curves.png")
    for arm in results:  # the sample files next to the report
        src = out / "eval" / arm / "samples.jsonl"
        if src.exists():
            (report / f"samples_{arm}.jsonl").write_text(src.read_text())
    diag_rows = _diagnostic_rows(series)
    text = _summary_text(settings, rows, columns, diag_rows, timings, hardware, _transition(out))
    (report / "summary.md").write_text(text, encoding="utf-8")
    (report / "timings.json").write_text(json.dumps({**timings, "hardware": hardware} if hardware else timings,
                                                    indent=2))
    print()
    print(markdown_table(rows, ["model", "avg@k", "± s.e.", "mean tokens", "markers/1k (paper)"]))
    return report


def _diagnostic_rows(series: dict[str, list[dict]]) -> list[dict]:
    keys = [k for k, _ in CURVES if k.startswith("pmi/")]
    out = []
    for arm, rows in series.items():
        for which, pick in (("first step", rows[:1]), ("last step", rows[-1:])):
            if pick:
                out.append({"run": ARM_LABELS.get(arm, arm), "when": which,
                            **{k: pick[0].get(k, "") for k in keys}})
    return out


def _transition(out: Path) -> str | None:
    """The OPSD teacher's transition text name as the OPSD run used it (its config.yaml)."""
    import yaml

    from selfdistill.contexts import ContextConfig

    config = out / "runs" / "opsd" / "config.yaml"
    if not config.exists():
        return None
    contexts = (yaml.safe_load(config.read_text()) or {}).get("contexts") or {}
    return contexts.get("transition", ContextConfig().transition)


def _summary_text(settings, rows, columns, diag_rows, timings, hardware: dict | None = None,
                  transition: str | None = None) -> str:
    n_prob = rows[0]["problems"]
    k = rows[0]["k"]
    se = max(r["± s.e."] for r in rows)
    lines = [
        "# selfdistill demo", "",
        f"Model `{settings.model}`; training data `{settings.train_data}`; evaluation on "
        f"{n_prob} held-out problems of `{settings.eval_data}` with {k} samples each "
        f"(T={settings.eval_temperature}, top-p 0.95, top-k 20, {settings.max_new_tokens} new tokens).",
        f"Both methods: {settings.steps} steps x {settings.prompts_per_step} prompts, LoRA r="
        f"{settings.lora_r}, lr {settings.lr}, seed {settings.seed}, same data order.",
        f"Answers scored with answer_format=`{settings.answer_format}`"
        + (" (the last number counts when nothing is boxed: the 135M model rarely boxes)."
           if settings.answer_format != "boxed" else "."),
        *([f"Teacher instruction (transition text): `{transition}`"
           + (" (the project's wording, free of the epistemic markers counted below)."
              if transition != "hardened-v0" else " (the legacy text, which says \"check\").")]
          if transition else []), "",
        "## Evaluation", "", markdown_table(rows, columns),
        f"How to read it: with {n_prob} problems the standard error of an accuracy is up to "
        f"±{se:.3f}; differences smaller than about twice that are noise. A few dozen steps on a "
        "135M model are enough to see the methods move length, markers and the diagnostics, not "
        "to rank them on accuracy.", "",
        "![accuracy](eval_accuracy.png) ![markers](eval_markers.png)", "",
        "## Training", "", "![training curves](training_curves.png)", "",
    ]
    if diag_rows:
        lines += ["Purified OPSD diagnostics (logged for both arms; for OPSD they cost one extra "
                  "no-grad pass, the reference-only teacher). A norm ratio above 1 means the "
                  "reference-only teacher explains "
                  "more of the signal than the question does; see docs/diagnostics.md for what it "
                  "does and does not show.", "",
                  markdown_table(diag_rows, list(diag_rows[0]))]
    lines += ["## Time", "", markdown_table([{k: round(v, 1) for k, v in timings.items()}],
                                            list(timings))]
    if hardware:
        caps = " ".join(f"{k}={v}" for k, v in (hardware.get("isa_caps") or {}).items())
        lines += [f"Ran on {hardware['device']} ({hardware['processor']}, {hardware['cpu_capability']}, "
                  + (f"ISA capped by {caps}, " if caps else "") +
                  f"{hardware['threads']} threads, torch {hardware['torch']}) in {hardware['dtype']}: "
                  f"{hardware['reason']}."
                  + (f" Rollouts with {hardware['rollout_backend']}." if hardware.get("rollout_backend") else ""),
                  ""]
    lines += ["Files: eval_table.md/.csv, eval_accuracy.png, eval_markers.png, training_curves.png, "
              "samples_<arm>.jsonl; the training runs (metrics.jsonl, checkpoints, final adapter) "
              "are in ../runs/."]
    return "\n".join(lines) + "\n"
