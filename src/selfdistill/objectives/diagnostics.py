"""Diagnostics of the OPSD signal (methods.md section 3; issue 9), all without gradients.

Vectors are per-position vocabulary vectors of log-prob differences. Degenerate cases are defined,
never NaN: a cosine with a zero vector is 0; a norm ratio or KL ratio with a zero denominator is 0
(those positions are counted in ``degenerate_fraction``).

Per-position tensors are returned flattened to the valid positions, shape [N] (N = mask.sum()),
so callers can take quantiles (:func:`distribution_summary`) and concentration (:func:`top_share`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .divergences import compute_dtype
from .targets import _check_same_shape, log_probs


def _valid_rows(mask: Tensor | None, lead_shape: torch.Size) -> Tensor:
    if mask is None:
        return torch.ones(lead_shape, dtype=torch.bool).reshape(-1)
    if mask.shape != lead_shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal {tuple(lead_shape)}")
    return mask.bool().reshape(-1)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def cosine(a_N_V: Tensor, b_N_V: Tensor) -> Tensor:
    """Row-wise cosine [N]; 0 where either row is the zero vector."""
    return _safe_div((a_N_V * b_N_V).sum(-1), a_N_V.norm(dim=-1) * b_N_V.norm(dim=-1))


def _mean(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else 0.0


def _flat_logprobs(mask: Tensor | None, **logits: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    _check_same_shape(**logits)
    first = next(iter(logits.values()))
    rows = _valid_rows(mask, first.shape[:-1])
    dtype = compute_dtype(*logits.values())
    out = {k: log_probs(v.detach(), dtype=dtype).reshape(-1, v.shape[-1])[rows] for k, v in logits.items()}
    return out, rows


def _rowdot(a_N_V: Tensor, b_N_V: Tensor) -> Tensor:
    """Row-wise dot product [N] without an [N, V] temporary."""
    return torch.einsum("nv,nv->n", a_N_V, b_N_V)


def _tanh_bend_threshold(rel: float = 0.01) -> float:
    """u0 > 0 with tanh(u0) / u0 = 1 - rel (tanh(u)/u decreases on u > 0), by bisection in float64."""
    lo, hi = 1e-9, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.tanh(mid) / mid > 1 - rel else (lo, mid)
    return (lo + hi) / 2


_TANH_BEND_U = _tanh_bend_threshold()


@torch.no_grad()
def pmi_diagnostics(
    teacher_logits: Tensor,
    refonly_logits: Tensor,
    student_logits: Tensor,
    mask: Tensor | None = None,
    *,
    clip: float = 10.0,
    center: bool = True,
) -> dict[str, Tensor | float]:
    """Purified-OPSD diagnostics from the three logit sets [..., T, V].

    With T, R, S the log-softmaxes: Delta_total = T - S, Delta_ref = R - S, Delta_it = T - R.
    Scalars (float, averaged over valid positions): ``cos_total_ref``, ``cos_total_it``,
    ``norm_ratio_ref_total`` (||Delta_ref|| / ||Delta_total||), ``tanh_clip_fraction`` (share of
    (position, vocab) entries where ``c tanh(Delta/c)`` differs from the centred Delta by more than
    1% of |Delta|), ``kl_ratio_ref_mean`` / ``kl_ratio_ref_median`` (KL(T||R) / KL(T||S)),
    ``degenerate_fraction`` (positions with Delta_total = 0), ``num_positions``.
    Per-position tensors [N]: ``*_per_position`` for the cosines, the norm ratio, the KL ratio,
    ``kl_teacher_ref_per_position`` and ``kl_teacher_student_per_position``.
    """
    lp, _ = _flat_logprobs(mask, teacher=teacher_logits, refonly=refonly_logits, student=student_logits)
    t, r, s = lp["teacher"], lp["refonly"], lp["student"]
    # one pass per quantity over [N, V] (these run on every training step of Purified OPSD):
    # norms once, dot products without [N, V] temporaries, the clip test as a threshold on |Delta|
    d_total, d_ref = t - s, r - s
    d_it = d_total - d_ref
    norm_total, norm_ref, norm_it = (d.norm(dim=-1) for d in (d_total, d_ref, d_it))
    per_pos = {
        "cos_total_ref": _safe_div(_rowdot(d_total, d_ref), norm_total * norm_ref),
        "cos_total_it": _safe_div(_rowdot(d_total, d_it), norm_total * norm_it),
        "norm_ratio_ref_total": _safe_div(norm_ref, norm_total),
    }
    p_t = t.exp()
    kl_tr = _rowdot(p_t, d_it).clamp(min=0.0)
    kl_ts = _rowdot(p_t, d_total).clamp(min=0.0)
    per_pos["kl_ratio_ref"] = _safe_div(kl_tr, kl_ts)
    # |c tanh(x/c) - x| > 0.01 |x|  <=>  tanh(u)/u < 0.99 with u = |x|/c  <=>  |x| > u0 * c
    centred = d_it - d_it.mean(dim=-1, keepdim=True) if center else d_it
    bent = centred.abs() > _TANH_BEND_U * clip
    out: dict[str, Tensor | float] = {k: _mean(v) for k, v in per_pos.items() if k != "kl_ratio_ref"}
    out["tanh_clip_fraction"] = float(bent.float().mean()) if bent.numel() else 0.0
    ratio = per_pos["kl_ratio_ref"]
    out["kl_ratio_ref_mean"] = _mean(ratio)
    out["kl_ratio_ref_median"] = float(ratio.median()) if ratio.numel() else 0.0
    out["degenerate_fraction"] = _mean((norm_total == 0).float())
    out["num_positions"] = float(t.shape[0])
    for k, v in per_pos.items():
        out[f"{k}_per_position"] = v
    out["kl_teacher_ref_per_position"] = kl_tr
    out["kl_teacher_student_per_position"] = kl_ts
    return out


@torch.no_grad()
def blank_decomposition(
    student_logits: Tensor,
    refonly_logits: Tensor,
    blank_logits: Tensor,
    mask: Tensor | None = None,
) -> dict[str, Tensor | float]:
    """No-context baseline split of Delta_ref (issue 9), logit sets [..., T, V].

    With S, R, B the log-softmaxes (B: neither problem nor reference),
    ``Delta_ref = R - S = (B - S) + (R - B)``. Returns, averaged over valid positions:
    ``cos_blank_shift_ref`` = cos(B - S, Delta_ref) (what removing the question alone explains),
    ``cos_ref_over_blank_ref`` = cos(R - B, Delta_ref) (what the reference adds over no context),
    ``norm_ref``, ``norm_blank_shift``, ``norm_ref_over_blank``; plus ``*_per_position`` [N].
    """
    lp, _ = _flat_logprobs(mask, student=student_logits, refonly=refonly_logits, blank=blank_logits)
    s, r, b = lp["student"], lp["refonly"], lp["blank"]
    d_ref, shift, ref_over_blank = r - s, b - s, r - b
    per_pos = {
        "cos_blank_shift_ref": cosine(shift, d_ref),
        "cos_ref_over_blank_ref": cosine(ref_over_blank, d_ref),
        "norm_ref": d_ref.norm(dim=-1),
        "norm_blank_shift": shift.norm(dim=-1),
        "norm_ref_over_blank": ref_over_blank.norm(dim=-1),
    }
    out: dict[str, Tensor | float] = {k: _mean(v) for k, v in per_pos.items()}
    out.update({f"{k}_per_position": v for k, v in per_pos.items()})
    return out


def _weighted_quantile(sorted_x: Tensor, cum_w: Tensor, q: float) -> float:
    idx = int(torch.searchsorted(cum_w, torch.tensor([q * float(cum_w[-1])], dtype=cum_w.dtype)).item())
    return float(sorted_x[min(idx, sorted_x.numel() - 1)])


def distribution_summary(x_per_pos: Tensor, weights: Tensor | None = None) -> dict[str, float]:
    """Mean, median, q10, q25, q75, q90 and frac_above_1 of a 1-D tensor of per-position values.

    Quantiles are the lower inverse CDF (the smallest x whose cumulative weight reaches q of the
    total; no interpolation), so with unit weights the median is ``torch.median``'s lower median.
    ``weights`` (non-negative, same shape) weight every statistic. Raises on empty input.
    """
    x = x_per_pos.detach().reshape(-1).double()
    if x.numel() == 0:
        raise ValueError("distribution_summary needs at least one position (the mask selected none)")
    w = torch.ones_like(x) if weights is None else weights.detach().reshape(-1).double()
    if w.shape != x.shape or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights must be non-negative, have x's shape and a positive sum")
    order = x.argsort()
    xs, cum = x[order], w[order].cumsum(0)
    total = float(w.sum())
    out = {"mean": float((x * w).sum()) / total, "frac_above_1": float(w[x > 1].sum()) / total}
    for name, q in (("median", 0.5), ("q10", 0.1), ("q25", 0.25), ("q75", 0.75), ("q90", 0.9)):
        out[name] = _weighted_quantile(xs, cum, q)
    return out


def top_share(x: Tensor, frac: float = 0.1) -> float:
    """Share of ``sum(x)`` carried by the top ``ceil(frac * N)`` entries (x >= 0); 0 if the sum is 0."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    x = x.detach().reshape(-1).double()
    if bool((x < 0).any()):
        raise ValueError("top_share needs non-negative values (e.g. per-position KL)")
    total = float(x.sum())
    if x.numel() == 0 or total == 0.0:
        return 0.0
    k = max(1, math.ceil(frac * x.numel()))
    return float(x.topk(k).values.sum()) / total
