"""Information richness of the context (arXiv 2603.24472 Table 1; docs/methods.md section 8).

The same problems are generated under four contexts, all through the one renderer:

    unguided     the student prompt (question only)
    full         the teacher prompt with the full reference solution
    no_think     the teacher prompt with the reference's <think>...</think> blocks removed
                 (identical to ``full`` when the references have no think block, e.g. GSM8K)
    regenerated  the teacher prompt whose reference is the first response generated under
                 ``full`` for that problem

and each setting reports score (avg@k with math-verify), mean response length in tokens and
``E`` (epistemic markers per response, both modes). The paper's finding is that length and E
fall as the context carries more information.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from selfdistill.analysis.tables import write_table
from selfdistill.contexts import Renderer, strip_think
from selfdistill.eval.runner import evaluate
from selfdistill.rewards import RewardScorer
from selfdistill.rollout import SamplingParams
from selfdistill.types import Example

SETTINGS = ("unguided", "full", "no_think", "regenerated")
COLUMNS = ("setting", "problems", "samples_per_problem", "score", "mean_tokens", "E_word", "E_paper",
           "word_per_1k", "paper_per_1k", "truncation_rate")


def parse_settings(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SETTINGS]
    if bad or not names:
        raise ValueError(f"unknown richness setting(s) {bad}; choose from {', '.join(SETTINGS)}")
    if "regenerated" in names and "full" not in names:
        raise ValueError("setting 'regenerated' needs 'full' (it conditions on the full-solution responses)")
    return [s for s in SETTINGS if s in names]  # run in the paper's order


def richness(model, tokenizer, examples: Sequence[Example], *, renderer: Renderer,
             params: SamplingParams, k: int = 1, settings: Sequence[str] = SETTINGS,
             output_dir: str | Path | None = None, progress: bool = True,
             backend=None) -> tuple[list[dict], list[dict]]:
    """Run the settings; return (table rows, all sample rows with a ``setting`` field).

    With ``output_dir``: writes richness.{md,csv}, richness_samples.jsonl and richness.png.
    ``backend`` replaces HF generation (see ``evaluate``).
    Every example needs a solution (ContextError otherwise, from the renderer).
    """
    table, samples = [], []
    contexts: dict[str, list[Example]] = {"unguided": list(examples), "full": list(examples),
                                          "no_think": [_with_solution(ex, strip_think(ex.solution or ""))
                                                       for ex in examples]}
    with RewardScorer(timeout_s=5.0, workers=1) as scorer:
        for setting in settings:
            if setting == "regenerated":
                first = {r["problem_id"]: r["response"] for r in samples
                         if r["setting"] == "full" and r["sample_index"] == 0}
                contexts["regenerated"] = [_with_solution(ex, first[ex.id]) for ex in examples]
            role = "student" if setting == "unguided" else "teacher"
            summary, rows = evaluate(model, tokenizer, contexts[setting], k=k, params=params,
                                     renderer=renderer, benchmark=setting, scorer=scorer, role=role,
                                     progress=progress, backend=backend)
            for r in rows:
                r["setting"] = setting
            samples += rows
            table.append({"setting": setting, "problems": summary["num_problems"], "samples_per_problem": k,
                          "score": summary[f"avg@{k}"], "mean_tokens": summary["mean_tokens"],
                          "E_word": summary["markers_word_per_response"],
                          "E_paper": summary["markers_paper_per_response"],
                          "word_per_1k": summary["markers_word_per_1k"],
                          "paper_per_1k": summary["markers_paper_per_1k"],
                          "truncation_rate": summary["truncation_rate"]})
    if output_dir is not None:
        write_richness(table, samples, output_dir)
    return table, samples


def _with_solution(example: Example, solution: str) -> Example:
    return dataclasses.replace(example, solution=solution)


def write_richness(table: list[dict], samples: list[dict], output_dir: str | Path) -> None:
    """richness.{md,csv} (with the sampling settings), richness_samples.jsonl, richness.png."""
    out = Path(output_dir)
    sampling = ", ".join(f"{k}={v}" for k, v in samples[0]["sampling"].items()) if samples else ""
    write_table(table, COLUMNS, out / "richness",
                title=f"Information richness (Kim et al. Table 1 settings); sampling: {sampling}")
    with open(out / "richness_samples.jsonl", "w", encoding="utf-8") as f:
        for row in samples:
            f.write(json.dumps(row) + "\n")
    _three_panels(table, out / "richness.png")


def _three_panels(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["setting"] for r in table]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, (key, title) in zip(axes, (("score", "score (avg@k)"), ("mean_tokens", "length (tokens)"),
                                       ("E_word", "E per response (word / paper)"))):
        if key == "E_word":
            xs = range(len(labels))
            ax.bar([x - 0.2 for x in xs], [r["E_word"] for r in table], width=0.4, label="word")
            ax.bar([x + 0.2 for x in xs], [r["E_paper"] for r in table], width=0.4, label="paper")
            ax.legend(fontsize=8)
        else:
            ax.bar(range(len(labels)), [r[key] for r in table], color="tab:blue")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20, fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

