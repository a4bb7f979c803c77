"""Diagnostics controls during training (issue 9), every ``diagnostics.controls_every`` steps.

On the step's own rollouts: the Purified-OPSD diagnostics with each problem's reference replaced
by another problem's (a seeded derangement within the step's batch), the content effect
(matched - wrong), and the blank-baseline split of Delta_ref. Teacher, reference-only and blank
passes use the frozen base (as the matched diagnostics do); the student is the current policy.

Cost: four extra no-grad forwards per response (wrong teacher, wrong reference-only, blank, and
the student's logits once more), one response at a time with full [T, V] logits (not chunked),
so keep it to occasional steps. Needs at least two distinct problems in the step.
"""

from __future__ import annotations

import torch

from selfdistill import objectives as obj
from selfdistill.analysis.controls import wrong_reference_examples

from .passes import forward_inputs

KEYS = ("norm_ratio_ref_total", "cos_total_ref", "cos_total_it", "kl_ratio_ref")


@torch.no_grad()
def control_metrics(renderer, base, live, examples, response_ids, *, seed: int) -> dict[str, float]:
    """Flat ``pmi_ctrl/*`` metrics (token-weighted means over the step's responses), or {} when
    the step has fewer than two distinct problems."""
    if len({ex.id for ex in examples}) < 2:
        return {}
    wrong, _ = wrong_reference_examples(examples, seed)
    per: dict[str, list[torch.Tensor]] = {}

    def add(key: str, values: torch.Tensor) -> None:
        per.setdefault(key, []).append(values.double())

    for ex, ex_wrong, ids in zip(examples, wrong, response_ids):
        if not ids:
            continue
        real = renderer.scoring_batches(("student", "teacher", "refonly", "blank"), [ex], [list(ids)])
        swapped = renderer.scoring_batches(("teacher", "refonly"), [ex_wrong], [list(ids)])
        if not real["student"].kept or not swapped["teacher"].kept:
            continue  # dropped by the over-length policy in some role
        s = live.logits(forward_inputs(real["student"]))
        lg = {k: base.logits(forward_inputs(b)) for k, b in real.items() if k != "student"}
        lw = {k: base.logits(forward_inputs(b)) for k, b in swapped.items()}
        mask = real["student"].response_mask_B_T
        matched = obj.pmi_diagnostics(lg["teacher"], lg["refonly"], s, mask)
        other = obj.pmi_diagnostics(lw["teacher"], lw["refonly"], s, mask)
        split = obj.blank_decomposition(s, lg["refonly"], lg["blank"], mask)
        for key in KEYS:
            add(f"matched_{key}", matched[f"{key}_per_position"])
            add(f"wrong_{key}", other[f"{key}_per_position"])
        for key in ("cos_blank_shift_ref", "cos_ref_over_blank_ref"):
            add(key, split[f"{key}_per_position"])
    if not per:
        return {}
    mean = {k: float(torch.cat(v).mean()) for k, v in per.items()}
    out = {f"pmi_ctrl/wrong_{k}": mean[f"wrong_{k}"] for k in KEYS}
    out.update({f"pmi_ctrl/content_effect_{k}": mean[f"matched_{k}"] - mean[f"wrong_{k}"] for k in KEYS})
    out["pmi_ctrl/cos_blank_shift_ref"] = mean["cos_blank_shift_ref"]
    out["pmi_ctrl/cos_ref_over_blank_ref"] = mean["cos_ref_over_blank_ref"]
    return out
