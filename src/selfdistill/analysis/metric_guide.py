"""What the training metrics mean, for readers of `selfdistill report`: a title and unit per key
and, per group of keys, one line on how to read it. Keys not listed here keep their raw name.

The groups follow what a reader asks of a run (did the loss settle, did accuracy move, did
responses get longer, did epistemic markers rise, what do the Purified OPSD diagnostics say),
not the metric key prefixes. docs/training.md ("Metrics") defines every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """A panel group of the report: its title, how to read it, and the keys it takes."""

    name: str
    title: str
    how_to_read: str
    prefixes: tuple[str, ...]


GROUPS: tuple[Group, ...] = (
    Group("loss", "Loss and optimisation",
          "The loss should fall or level off; a rising gradient norm, skipped steps or a jumpy loss "
          "signal instability (lower optimizer.lr). kl/p* are the per-token divergence quantiles.",
          ("loss", "grad_norm", "lr", "kl/", "clip_frac", "skipped", "loss_scale")),
    Group("accuracy", "Accuracy on the training samples",
          "Share of sampled responses whose answer matches the gold answer (higher is better; noisy "
          "with few prompts per step). Empty when the data has no answers.",
          ("accuracy", "reward/", "grpo/", "sdpo/")),
    Group("eval", "Held-out evaluation (eval section)",
          "Accuracy of the current policy on the held-out problems of eval.data (higher is better); "
          "the honest measure of progress, next to the base model's numbers.",
          ("eval/",)),
    Group("length", "Response length",
          "Sampled tokens per response and the share cut at sampling.max_new_tokens; a rising "
          "truncated share means answers are cut off before they end.",
          ("response/", "data/")),
    Group("markers", "Epistemic markers",
          "Words like 'wait', 'maybe', 'let me check' per 1000 sampled tokens: standard OPSD tends "
          "to raise them, Purified OPSD should not (docs/analysis.md).",
          ("markers/",)),
    Group("diagnostics", "Teacher signal diagnostics",
          "Purified OPSD decomposition (docs/diagnostics.md): ||delta_ref|| / ||delta_total|| above 1 "
          "and a high cos(total, ref) mean the reference alone, not the problem, drives the teacher's "
          "signal. Teacher entropy in nats.",
          ("pmi/", "pmi_ctrl/", "teacher/", "antisd/")),
    Group("speed", "Time per step",
          "Wall-clock seconds per step and per phase; for planning runs, not for quality.",
          ("time/", "tokens_per_s")),
)
OTHER = Group("other", "Other metrics", "Metrics this report has no description for (raw keys).", ())

FRACTION = "fraction 0-1"
TITLES: dict[str, tuple[str, str]] = {
    "loss": ("training loss", "per loss unit (token)"),
    "grad_norm": ("gradient norm before clipping", "L2 norm"),
    "lr": ("learning rate", "lr"),
    "kl/p10": ("per-token divergence, 10th percentile", "nats"),
    "kl/p50": ("per-token divergence, median", "nats"),
    "kl/p90": ("per-token divergence, 90th percentile", "nats"),
    "clip_frac": ("tokens with a clipped ratio", FRACTION),
    "skipped": ("step skipped (non-finite)", "0 or 1"),
    "accuracy": ("correct samples", FRACTION),
    "reward/mean": ("mean reward", "reward"),
    "grpo/zero_signal_frac": ("groups with equal rewards (no signal)", FRACTION),
    "sdpo/context_frac": ("samples with a teacher context", FRACTION),
    "response/length_mean": ("response length", "tokens"),
    "response/truncated_frac": ("responses cut at max_new_tokens", FRACTION),
    "data/dropped_rows": ("rows dropped as over-length", "rows"),
    "markers/per_1k": ("epistemic markers", "per 1000 tokens"),
    "teacher/entropy": ("teacher entropy", "nats"),
    "pmi/cos_total_ref": ("cos(delta_total, delta_ref)", "cosine"),
    "pmi/cos_total_it": ("cos(delta_total, delta_it)", "cosine"),
    "pmi/norm_ratio_ref_total": ("||delta_ref|| / ||delta_total||, mean", "ratio"),
    "pmi/norm_ratio_frac_above_1": ("positions with ||delta_ref|| > ||delta_total||", FRACTION),
    "pmi/kl_ratio_ref": ("KL(T||R) / KL(T||S), mean", "ratio"),
    "pmi/kl_ratio_ref_median": ("KL(T||R) / KL(T||S), median", "ratio"),
    "pmi/tanh_clip_frac": ("positions in the tanh clip", FRACTION),
    "tokens_per_s": ("sampled tokens per second", "tokens/s"),
    "time/step_s": ("whole step", "seconds"),
    "time/rollout_s": ("generation", "seconds"),
    "time/score_s": ("rewards, rendering, teacher passes", "seconds"),
    "time/loss_s": ("student forward and backward", "seconds"),
    "eval/mean_tokens": ("held-out response length", "tokens"),
    "eval/truncated_frac": ("held-out responses cut off", FRACTION),
    "eval/markers_per_1k": ("held-out epistemic markers", "per 1000 tokens"),
    "eval/problems": ("held-out problems", "problems"),
    "eval/time_s": ("evaluation time", "seconds"),
}
_EVAL_RATE = re.compile(r"^eval/(avg|pass|maj)@(\d+)$")
_EVAL_WORDS = {"avg": "mean accuracy over {k} samples", "pass": "pass@{k} (unbiased)",
               "maj": "majority vote of {k} samples"}


def group_of(key: str) -> Group:
    """The report group of a metric key (OTHER when no group claims it)."""
    for group in GROUPS:
        if any(key == p or (p.endswith("/") and key.startswith(p)) for p in group.prefixes):
            return group
    return OTHER


def title_and_unit(key: str) -> tuple[str, str]:
    """(panel title, y-axis unit) of a metric key; the raw key and no unit when unknown."""
    if key in TITLES:
        return TITLES[key]
    match = _EVAL_RATE.match(key)
    if match:
        return f"held-out {_EVAL_WORDS[match[1]].format(k=match[2])}", FRACTION
    return key, ""
