"""Controls for the Purified-OPSD diagnostics (issue 9): tell what the reference SAYS from the
fact that a reference is THERE.

The paper's diagnostic (‖Δ_ref‖/‖Δ_total‖ > 1, cos(Δ_total, Δ_ref) near 1) reads as "the signal is
dominated by the reference". Three controls check that reading on the same response tokens:

- matched: each problem with its own reference (the paper's setting);
- wrong reference: each problem with the reference of a DIFFERENT problem (a seeded derangement:
  no problem keeps its own). If the numbers barely move, they measure the presence of a reference
  (and the removal of the question), not its content. ``content effect = matched - wrong``;
- blank baseline B (neither problem nor reference): Δ_ref = R − S = (B − S) + (R − B) splits into
  "question removed" (B − S) and "reference added" (R − B); their cosines to Δ_ref say which part
  Δ_ref mostly is;
- copy control (optional): the reference solution itself scored as the response, where the teacher
  truly copies; there KL(T‖R)/KL(T‖S) should be small.

Everything is per response token, then summarized as distributions (median, quantiles, share of
positions above 1, share of the KL mass on the top 10% of positions), not only means.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from selfdistill.contexts import Renderer
from selfdistill.models import eval_mode
from selfdistill.objectives.diagnostics import (
    blank_decomposition,
    distribution_summary,
    pmi_diagnostics,
    top_share,
)
from selfdistill.types import Example

QUANTITIES = ("norm_ratio_ref_total", "cos_total_ref", "cos_total_it", "kl_ratio_ref")
BLANK_QUANTITIES = ("cos_blank_shift_ref", "cos_ref_over_blank_ref", "norm_ref", "norm_blank_shift",
                    "norm_ref_over_blank")
CONDITIONS = ("matched", "wrong_reference")


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (needs n >= 2).

    Sattolo's algorithm draws a uniformly random n-cycle, which never maps i to itself.
    """
    if n < 2:
        raise ValueError(f"a wrong-reference control needs at least 2 problems, got {n}")
    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: Sattolo, not Fisher-Yates
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def wrong_reference_examples(examples: Sequence[Example], seed: int) -> tuple[list[Example], list[int]]:
    """Each example with the solution of ``examples[perm[i]]`` (a derangement over the DISTINCT
    problems, so a problem never gets its own reference even when it has several responses)."""
    ids = list(dict.fromkeys(ex.id for ex in examples))
    by_id = {ex.id: ex for ex in examples}
    perm = derangement(len(ids), seed)
    donor = {ids[i]: ids[perm[i]] for i in range(len(ids))}
    swapped = [dataclasses.replace(ex, solution=by_id[donor[ex.id]].solution) for ex in examples]
    return swapped, [ids.index(donor[ex.id]) for ex in examples]


@dataclasses.dataclass
class ControlScores:
    """Per-token values [N] under each condition, over the same N response tokens."""

    per_condition: dict[str, dict[str, torch.Tensor]]
    blank: dict[str, torch.Tensor]
    num_responses: int
    pairing: list[tuple[str, str]]  # (problem id, id of the problem whose reference it got)


def _logits(model, batches: dict) -> dict[str, torch.Tensor]:
    """{role: logits_T_V} in float64 on the model's device (the batches are moved there)."""
    from selfdistill.analysis.token_kl import scoring_logits

    return {role: scoring_logits(model, b) for role, b in batches.items()}


@torch.no_grad()
def score_controls(model, renderer: Renderer, examples: Sequence[Example],
                   response_ids: Sequence[Sequence[int]], *, seed: int = 0) -> ControlScores:
    """Diagnostics per response token under matched and wrong references, plus the blank split.

    One forward per role and response (student, blank, and teacher/refonly per condition), on
    the model's device; the per-token values are returned on the CPU.
    """
    wrong, donors = wrong_reference_examples(examples, seed)
    ids_order = list(dict.fromkeys(ex.id for ex in examples))
    per_condition: dict[str, dict[str, list]] = {c: defaultdict(list) for c in CONDITIONS}
    blank: dict[str, list] = defaultdict(list)
    n = 0
    with eval_mode(model):
        for ex, ex_wrong, ids in zip(examples, wrong, response_ids):
            if not ids:
                continue
            n += 1
            base = _logits(model, renderer.scoring_batches(("student", "blank"), [ex], [list(ids)]))
            for condition, example in (("matched", ex), ("wrong_reference", ex_wrong)):
                lg = _logits(model, renderer.scoring_batches(("teacher", "refonly"), [example], [list(ids)]))
                diag = pmi_diagnostics(lg["teacher"], lg["refonly"], base["student"])
                for key in QUANTITIES:
                    per_condition[condition][key].append(diag[f"{key}_per_position"].cpu())
                per_condition[condition]["kl_teacher_student"].append(
                    diag["kl_teacher_student_per_position"].cpu())
                if condition == "matched":
                    split = blank_decomposition(base["student"], lg["refonly"], base["blank"])
                    for key in BLANK_QUANTITIES:
                        blank[key].append(split[f"{key}_per_position"].cpu())
    if n == 0:
        raise ValueError("controls: no non-empty response to score")
    return ControlScores(
        per_condition={c: {k: torch.cat(v) for k, v in d.items()} for c, d in per_condition.items()},
        blank={k: torch.cat(v) for k, v in blank.items()}, num_responses=n,
        pairing=[(ex.id, ids_order[d]) for ex, d in zip(examples, donors)],
    )


def _summary_row(label: str, quantity: str, values: torch.Tensor, kl_mass: torch.Tensor | None) -> dict:
    s = distribution_summary(values)
    row = {"condition": label, "quantity": quantity, "n": int(values.numel()),
           **{k: s[k] for k in ("mean", "median", "q10", "q25", "q75", "q90", "frac_above_1")}}
    if kl_mass is not None:
        row["kl_top10_share"] = top_share(kl_mass, 0.1)
    return row


def control_tables(scores: ControlScores) -> tuple[list[dict], list[dict], list[dict]]:
    """(side-by-side rows per condition and quantity, content-effect rows, blank-split rows)."""
    side = []
    for condition in CONDITIONS:
        d = scores.per_condition[condition]
        for q in QUANTITIES:
            side.append(_summary_row(condition, q, d[q], d["kl_teacher_student"] if q == "kl_ratio_ref" else None))
    effect = []
    for q in QUANTITIES:
        m = scores.per_condition["matched"][q]
        w = scores.per_condition["wrong_reference"][q]
        diff = m - w
        effect.append({"quantity": q, "matched_mean": float(m.mean()), "wrong_mean": float(w.mean()),
                       "content_effect_mean": float(diff.mean()),
                       "content_effect_median": float(diff.median()),
                       "relative_effect": float(diff.mean() / m.mean()) if float(m.mean()) else 0.0})
    blank = [_summary_row("matched", q, scores.blank[q], None) for q in BLANK_QUANTITIES]
    return side, effect, blank


def write_controls(scores: ControlScores, output_dir: str | Path, *, title_note: str = "") -> dict:
    """controls_side_by_side.{md,csv}, controls_content_effect.{md,csv}, controls_blank.{md,csv},
    controls_hist.png, controls_pairing.csv; returns the three tables."""
    from selfdistill.analysis.plots import histograms
    from selfdistill.analysis.tables import write_table

    out = Path(output_dir)
    side, effect, blank = control_tables(scores)
    cols = ["condition", "quantity", "n", "mean", "median", "q10", "q25", "q75", "q90",
            "frac_above_1", "kl_top10_share"]
    write_table(side, cols, out / "controls_side_by_side",
                title=f"Diagnostics with matched vs wrong (another problem's) reference{title_note}")
    write_table(effect, list(effect[0]), out / "controls_content_effect",
                title="Content effect = matched - wrong reference (per token, same tokens)")
    write_table(blank, cols[:-1], out / "controls_blank",
                title="No-context baseline: Δ_ref = (B - S) 'question removed' + (R - B) 'reference added'")
    write_table([{"problem_id": a, "reference_of": b} for a, b in scores.pairing],
                ["problem_id", "reference_of"], out / "controls_pairing")
    for q in ("norm_ratio_ref_total", "kl_ratio_ref"):
        histograms({c: scores.per_condition[c][q].clamp(max=5.0).tolist() for c in CONDITIONS},
                   out / f"controls_{q}_hist.png", title=f"{q} per token (clamped at 5)", xlabel=q)
    histograms({q: scores.blank[q].tolist() for q in ("cos_blank_shift_ref", "cos_ref_over_blank_ref")},
               out / "controls_blank_hist.png", title="cosines to Δ_ref per token", xlabel="cosine")
    return {"side_by_side": side, "content_effect": effect, "blank": blank}
