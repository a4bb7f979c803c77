"""The metrics row of one optimizer step, built from what the step produced.

Which method-specific groups appear is the method record's ``metrics`` (``selfdistill.methods``):
``pmi`` (Purified-OPSD diagnostics), ``grpo`` (zero-signal groups), ``sdpo`` (share of rows with a
teacher context), ``antisd`` (the gate's weight and the mean context shift). Sums are reduced over
processes before any ratio is taken, so a row is the same whatever the number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .metrics import quantiles


@dataclass
class StepTimer:
    """Wall-clock seconds of the named phases of a step: ``with timer("rollout"): ...``."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


@dataclass
class StepOutcome:
    """What the update did: the global loss, the gradient norm, the lr it used, and whether the
    optimizer step was skipped (non-finite loss or gradient, or a float16 overflow)."""

    loss: float
    grad_norm: float
    lr: float
    skipped: bool


def step_row(method, step: int, ro, plans, results, outcome: StepOutcome, timer: StepTimer, *,
             reduce_sum: Callable[[Tensor], Tensor], gather: Callable[[Tensor], Tensor], world: int,
             antisd_lambda: float = 0.0) -> dict:
    """The metrics row of ``step``.

    Args:
        method: the run's ``selfdistill.methods.Method``.
        ro: this process's ``Rollouts``; plans: its ``MicroBatch``es (dropped ones included);
            results: the ``MicroResult`` of every micro-batch that ran.
        reduce_sum: sums a float64 vector over processes (identity with one process).
        gather: concatenates a 1-D float64 tensor over processes.
        world: number of processes.
    """
    from selfdistill.analysis import count_epistemic_markers

    sums: dict[str, float] = {}
    for r in results:
        for k, v in r.sums.items():
            sums[k] = sums.get(k, 0.0) + v
    lengths = [len(ids) for ids in ro.response_ids]
    markers = sum(count_epistemic_markers(t, mode="word")["total"] for t in ro.texts)
    rewards = ro.rewards or []
    local = {
        "n": len(ro), "tokens": float(sum(lengths)), "truncated": float(sum(ro.truncated)),
        "markers": float(markers), "reward": float(sum(rewards)), "reward_n": float(len(rewards)),
        "correct": float(sum(r >= 1.0 for r in rewards)),
        "dropped": float(sum(len(p.batches["student"].dropped) for p in plans)),
        "context": float(sum(int(p.batches[method.teacher_context].has_context_B.sum())
                             for p in plans)) if "sdpo" in method.metrics else 0.0,
        "zero_signal": float(ro.zero_signal_fraction or 0.0),
        **({} if ro.overlong_B is None else {"overlong": float(ro.overlong_B.sum())}),
        **sums,
    }
    keys = sorted(local)
    g = dict(zip(keys, reduce_sum(torch.tensor([local[k] for k in keys], dtype=torch.float64)).cpu().tolist()))
    div = [r.divergence_B_T[r.divergence_mask_B_T.bool()] for r in results if r.divergence_B_T is not None]
    kl = quantiles(gather(torch.cat(div) if div else torch.zeros(0)))
    ratio = lambda a, b: (g.get(a, 0.0) / g[b]) if g.get(b) else None  # noqa: E731
    t = timer.seconds
    row = {
        "step": step, "loss": outcome.loss, "kl/p10": kl[0], "kl/p50": kl[1], "kl/p90": kl[2],
        "clip_frac": ratio("clipped", "clipped_n"),
        "reward/mean": ratio("reward", "reward_n"), "accuracy": ratio("correct", "reward_n"),
        "response/length_mean": g["tokens"] / max(g["n"], 1),
        "response/truncated_frac": g["truncated"] / max(g["n"], 1),
        "markers/per_1k": 1000.0 * g["markers"] / max(g["tokens"], 1),
        "teacher/entropy": ratio("teacher_entropy", "teacher_entropy_n"),
        "tokens_per_s": g["tokens"] / max(t["step"], 1e-9),
        "time/rollout_s": t["rollout"], "time/score_s": t["score"], "time/loss_s": t["loss"],
        "time/step_s": t["step"], "lr": outcome.lr, "grad_norm": outcome.grad_norm,
        "data/dropped_rows": int(g["dropped"]), "skipped": int(outcome.skipped),
    }
    if "pmi_n" in g:
        for key in ("cos_total_ref", "cos_total_it", "norm_ratio_ref_total", "kl_ratio_ref", "tanh_clip_frac"):
            row[f"pmi/{key}"] = ratio(key, "pmi_n")
        row["pmi/norm_ratio_frac_above_1"] = ratio("norm_ratio_above_1", "pmi_n")
        per_pos = [r.kl_ratio_N for r in results if r.kl_ratio_N is not None]
        row["pmi/kl_ratio_ref_median"] = quantiles(gather(torch.cat(per_pos) if per_pos else torch.zeros(0)))[1]
    if "grpo" in method.metrics:
        row["grpo/zero_signal_frac"] = g["zero_signal"] / world
    if "antisd" in method.metrics:
        row["antisd/lambda"] = antisd_lambda
        row["antisd/u_mean"] = ratio("antisd_u", "teacher_entropy_n")
    if "sdpo" in method.metrics:
        row["sdpo/context_frac"] = g["context"] / max(g["n"], 1)
    # present only when their feature is on, so a default run's row keeps its keys
    if "is_weight_n" in g:  # several updates per step: mean SDPO importance weight of distill tokens
        row["distill/is_weight"] = ratio("is_weight", "is_weight_n")
    if "kl_ref_n" in g:  # objective.kl_coef > 0: mean k3 KL to the initial policy per PG token
        row["pg/kl_ref"] = ratio("kl_ref", "kl_ref_n")
    if "overlong" in g:  # DAPO overlong shaping: mean penalty added to the rewards (<= 0)
        row["reward/overlong_penalty"] = g["overlong"] / max(g["n"], 1)
    return row
