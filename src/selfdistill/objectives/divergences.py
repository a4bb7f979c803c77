"""Per-position divergences between a student and a target next-token distribution.

Convention (TRL GKD / OPSD, methods.md section 1): with P_t the target and P_s the student,
``m = beta * P_t + (1 - beta) * P_s`` and ``JSD_beta = beta KL(P_t || m) + (1 - beta) KL(P_s || m)``.
``beta = 0`` is EXACTLY forward KL(P_t || P_s) and ``beta = 1`` EXACTLY reverse KL(P_s || P_t)
(the limits of JSD_beta / beta and JSD_beta / (1 - beta)); both ends are special-cased.

Everything is computed in log space. The target is detached: gradients reach only the student.
Output dtype: float64 if either input is float64, else float32 (bf16/fp16 inputs are upcast).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SUPPORTS = ("full", "teacher_topk", "student_topk")


def sdpo_alpha_to_beta(alpha: float) -> float:
    """Convert SDPO's JSD weight ``alpha`` to this module's ``beta``.

    SDPO's code builds ``m = (1 - alpha) P_s + alpha P_t`` and takes
    ``lerp(KL(P_s||m), KL(P_t||m), alpha) = (1 - alpha) KL(P_s||m) + alpha KL(P_t||m)``,
    with alpha = 0 forward KL and alpha = 1 reverse KL. Written out, that is the same mixture and
    the same weights as TRL's beta, so the conversion is the identity. It exists so configs that
    carry SDPO's name say so explicitly, and so a test pins the equivalence.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"sdpo alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def tail_logmass(logprobs: Tensor, topk_ids: Tensor) -> Tensor:
    """log of the probability mass OUTSIDE the top-k ids, [..., 1], from the non-top-k entries.

    ``logprobs`` [..., V] are normalized log-probs, ``topk_ids`` [..., K] long. The tail is the
    logsumexp of the entries not in ``topk_ids``, never ``log(1 - sum_topk P)``: when the top-k
    mass rounds to 1 in float32 (a peaked side, tail below ~6e-8) that difference cancels to 0 and
    the old floor turned a true tail of 1e-8 into 1e-38 (forward KL 77.6 nats instead of 24.5 in
    tests/test_objectives_tail.py's setting). Gradients flow to the non-top-k entries.

    One extra column at ``log(tiny)`` joins the logsumexp: it keeps an empty tail (K = V, or every
    non-top-k entry at -inf) finite with a finite gradient (an all -inf logsumexp has a NaN one),
    and adds at most ``tiny`` (1e-38 in float32) to the mass.
    """
    floor = math.log(torch.finfo(logprobs.dtype).tiny)
    in_topk = torch.zeros_like(logprobs, dtype=torch.bool).scatter_(-1, topk_ids, True)
    rest = logprobs.masked_fill(in_topk, -math.inf)
    rest = torch.cat([rest, rest.new_full((*rest.shape[:-1], 1), floor)], dim=-1)
    return torch.logsumexp(rest, dim=-1, keepdim=True)


def restrict_support(
    student_logprobs: Tensor,
    target_logprobs: Tensor,
    *,
    support: str = "full",
    topk: int = 100,
    tail: bool = True,
    topk_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Restrict both log-prob tensors [..., V] to a common support and keep both normalized.

    Returns ``(s_sup, t_sup)`` of shape [..., V] for ``support="full"``, else [..., K+1] with a
    tail bucket (the log-mass of the non-top-k entries, :func:`tail_logmass`) when ``tail`` is True, or [..., K] renormalized over
    the top-k when ``tail`` is False. The top-k ids are the target's (``teacher_topk``), the
    student's (``student_topk``, chosen on detached values) or explicit ``topk_ids`` [..., K].
    """
    if topk_ids is None and support == "full":
        return student_logprobs, target_logprobs
    if topk_ids is None:
        if support not in SUPPORTS:
            raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        side = target_logprobs if support == "teacher_topk" else student_logprobs.detach()
        k = min(topk, side.shape[-1])
        topk_ids = side.topk(k, dim=-1).indices
    else:
        if topk_ids.shape[:-1] != student_logprobs.shape[:-1]:
            raise ValueError(
                f"topk_ids shape {tuple(topk_ids.shape)} must be [..., K] with leading dims "
                f"{tuple(student_logprobs.shape[:-1])} matching the logits"
            )
        topk_ids = topk_ids.long()
    s_k = student_logprobs.gather(-1, topk_ids)
    t_k = target_logprobs.gather(-1, topk_ids)
    if tail:
        # each side's tail from its own non-top-k entries (see tail_logmass: no 1 - sum)
        s_tail = tail_logmass(student_logprobs, topk_ids)
        t_tail = tail_logmass(target_logprobs, topk_ids)
        return torch.cat([s_k, s_tail], dim=-1), torch.cat([t_k, t_tail], dim=-1)
    return s_k.log_softmax(dim=-1), t_k.log_softmax(dim=-1)


def _p_logratio(logp_a: Tensor, logp_b: Tensor) -> Tensor:
    """Elementwise P_a (log P_a - log P_b), 0 where P_a = 0 (no NaN in value or gradient)."""
    valid = logp_a > -math.inf
    a = torch.where(valid, logp_a, torch.zeros_like(logp_a))
    b = torch.where(valid, logp_b, torch.zeros_like(logp_b))
    return torch.where(valid, a.exp() * (a - b), torch.zeros_like(a))


def divergence_terms(s_B_V: Tensor, t_B_V: Tensor, beta: float) -> Tensor:
    """Per-vocabulary-entry terms whose sum over the last dim is JSD_beta (exact ends at 0, 1)."""
    if beta == 0.0:
        return _p_logratio(t_B_V, s_B_V)
    if beta == 1.0:
        return _p_logratio(s_B_V, t_B_V)
    log_m = torch.logaddexp(t_B_V + math.log(beta), s_B_V + math.log1p(-beta))
    return beta * _p_logratio(t_B_V, log_m) + (1.0 - beta) * _p_logratio(s_B_V, log_m)


def _check(student_logits: Tensor, target_logprobs: Tensor, mask: Tensor | None, beta: float,
           temperature: float, token_clip: float | None) -> None:
    if student_logits.shape != target_logprobs.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and target_logprobs "
            f"{tuple(target_logprobs.shape)} must have the same shape [..., T, V]; score every "
            "role on the same response ids"
        )
    if mask is not None and mask.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} must equal the logits' leading shape "
            f"{tuple(student_logits.shape[:-1])}"
        )
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1] (0 forward KL, 1 reverse KL), got {beta}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if token_clip is not None and token_clip <= 0:
        raise ValueError(f"token_clip must be > 0 or None, got {token_clip}")


def generalized_jsd(
    student_logits: Tensor,
    target_logprobs: Tensor,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    mask: Tensor | None = None,
    token_clip: float | None = None,
    support: str = "full",
    topk: int = 100,
    tail: bool = True,
    topk_ids: Tensor | None = None,
) -> Tensor:
    """Per-position generalized JSD between student and target; shape [..., T].

    Args:
        student_logits: [..., T, V] raw student logits (any float dtype; gradients flow here).
        target_logprobs: [..., T, V] target log-probabilities (detached here).
        beta: JSD weight in [0, 1]; 0 forward KL(target||student), 1 reverse KL(student||target).
        temperature: distillation temperature tau; the student logits are divided by it.
        mask: optional [..., T]; the result is exactly 0 where mask == 0.
        token_clip: if set, each vocabulary term of the sum is clamped to at most this value
            (OPSD ``jsd_token_clip``).
        support / topk / tail / topk_ids: see :func:`restrict_support`.

    Returns nats per position, float64 if an input is float64 else float32.
    """
    _check(student_logits, target_logprobs, mask, beta, temperature, token_clip)
    dtype = compute_dtype(student_logits, target_logprobs)
    s = (student_logits.to(dtype) / temperature).log_softmax(dim=-1)
    t = target_logprobs.detach().to(dtype)
    s, t = restrict_support(s, t, support=support, topk=topk, tail=tail, topk_ids=topk_ids)
    terms = divergence_terms(s, t, float(beta))
    if token_clip is not None:
        terms = terms.clamp(max=token_clip)
    per_pos = terms.sum(dim=-1)
    if mask is not None:
        per_pos = torch.where(mask.bool(), per_pos, torch.zeros_like(per_pos))
    return per_pos


def forward_kl(student_logits: Tensor, target_logprobs: Tensor, **kwargs) -> Tensor:
    """KL(target || student) per position [..., T]; same keywords as :func:`generalized_jsd`."""
    return generalized_jsd(student_logits, target_logprobs, beta=0.0, **kwargs)


def reverse_kl(student_logits: Tensor, target_logprobs: Tensor, **kwargs) -> Tensor:
    """KL(student || target) per position [..., T]; same keywords as :func:`generalized_jsd`."""
    return generalized_jsd(student_logits, target_logprobs, beta=1.0, **kwargs)


def kl_with_logit_grad(
    student_logits_N_V: Tensor,
    target_logprobs_N_V: Tensor,
    *,
    beta: float = 0.0,
    temperature: float = 1.0,
    token_clip: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Forward (``beta = 0``) or reverse (``beta = 1``) KL on the full vocabulary, per position,
    with its gradient w.r.t. the student logits in closed form (no autograd graph).

    Same value as :func:`generalized_jsd` with these keywords (token_clip clamps each vocabulary
    term; a clamped term passes no gradient, as ``clamp``'s does not), in about a third of the
    time of building and back-propagating its graph. With ``s = log_softmax(z / tau)``, ``g_v =
    d div / d s_v`` (``-P_t`` forward, ``P_s (s - t + 1)`` reverse, 0 where clamped), the gradient is
    ``(g - P_s * sum(g)) / tau``.

    Returns ``(div_N, grad_N_V)``: nats per position and ``d div_n / d z_{n, v}``, both float32
    (float64 if an input is float64). The target is treated as a constant.
    """
    if beta not in (0.0, 1.0):
        raise ValueError(f"kl_with_logit_grad covers beta 0 (forward KL) or 1 (reverse KL), got {beta}")
    _check(student_logits_N_V, target_logprobs_N_V, None, beta, temperature, token_clip)
    # in-place arithmetic on few [N, V] buffers: on a CPU a fresh large tensor costs more in page
    # faults than the arithmetic that fills it
    dtype = compute_dtype(student_logits_N_V, target_logprobs_N_V)
    s = student_logits_N_V.detach().to(dtype, copy=True)
    if temperature != 1.0:
        s.div_(temperature)
    s.sub_(torch.logsumexp(s, dim=-1, keepdim=True))  # log P_s
    t = target_logprobs_N_V.detach().to(dtype)
    if beta == 0.0:
        g = t.exp()  # P_t, then d div / d s = -P_t
        # P_t (t - s), 0 where P_t = 0 (t = -inf is floored to a finite value times 0)
        terms = t.clamp(min=torch.finfo(dtype).min).sub_(s).mul_(g)
        g.neg_()
        p_s = s.exp_()
    else:
        p_s = s.exp()
        terms = (s - t).mul_(p_s)  # P_s (s - t)
        g = terms + p_s  # P_s (s - t + 1)
        del s
    if token_clip is not None:
        g.masked_fill_(terms > token_clip, 0.0)
        terms.clamp_(max=token_clip)
    div = terms.sum(dim=-1)
    del terms
    grad = g.sub_(p_s.mul_(g.sum(dim=-1, keepdim=True)))
    if temperature != 1.0:
        grad.div_(temperature)
    return div, grad
