"""Distillation targets: log-probabilities [..., V] computed without gradients.

- raw (OPSD): ``log_softmax(teacher_logits / tau)``
- purified (Purified OPSD, methods.md section 3 steps 1-4)
- trust region (SDPO): teacher logits ``lerp(ref_logits, student_logits, r)``, both on the
  teacher context
"""

from __future__ import annotations

import torch
from torch import Tensor

from .divergences import compute_dtype


def log_probs(logits: Tensor, *, temperature: float = 1.0, dtype: torch.dtype | None = None) -> Tensor:
    """``log_softmax(logits / temperature)`` over the last dim, upcast to float32/float64."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    dtype = dtype or compute_dtype(logits)
    return (logits.to(dtype) / temperature).log_softmax(dim=-1)


@torch.no_grad()
def raw_target_logprobs(teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """OPSD target: the privileged teacher's log-probs [..., V], detached."""
    return log_probs(teacher_logits.detach(), temperature=temperature)


def _check_same_shape(**named: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in named.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(
            f"logit sets must share one shape [..., T, V], got {shapes}; score every role on "
            "the same response ids and the same vocabulary"
        )


def purified_delta(
    teacher_logprobs: Tensor, refonly_logprobs: Tensor, *, clip: float | None = 10.0, center: bool = True
) -> Tensor:
    """Steps 1-3: ``Delta = log P_T - log P_ref``, centred over the vocabulary, soft-clipped
    as ``c * tanh(Delta / c)``. ``clip=None`` disables the clip. Shape [..., V]."""
    delta = teacher_logprobs - refonly_logprobs
    if center:
        delta = delta - delta.mean(dim=-1, keepdim=True)
    if clip is not None:
        if clip <= 0:
            raise ValueError(f"clip must be > 0 or None, got {clip}")
        delta = clip * torch.tanh(delta / clip)
    return delta


@torch.no_grad()
def purified_target_logprobs(
    teacher_logits: Tensor,
    refonly_logits: Tensor,
    anchor_logits: Tensor,
    *,
    beta: float = 1.0,
    clip: float | None = 10.0,
    center: bool = True,
    temperature: float = 1.0,
) -> Tensor:
    """Purified OPSD target ``log P*`` [..., V] with ``P* ∝ P_0 exp(Delta_it / beta)``.

    Args:
        teacher_logits: [..., T, V] privileged teacher pi_0(.|q, r, y_<t).
        refonly_logits: [..., T, V] reference-only teacher pi_0(.|r, y_<t).
        anchor_logits: [..., T, V] anchor P_0: the frozen base on q (paper) or the detached
            student (saves a pass).
        beta: KL-regularisation strength of the closed form (> 0); 1 in the paper.
        clip: soft-clip bound c of ``c * tanh(Delta / c)``; None disables it.
        center: subtract the unweighted vocabulary mean of Delta before the clip.
        temperature: distillation temperature tau applied to all three logit sets.
    """
    _check_same_shape(teacher=teacher_logits, refonly=refonly_logits, anchor=anchor_logits)
    if beta <= 0:
        raise ValueError(f"purified beta must be > 0, got {beta}")
    dtype = compute_dtype(teacher_logits, refonly_logits, anchor_logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if center:
        # log_softmax only subtracts a per-position constant, which the centring of Delta and the
        # final log_softmax remove anyway: work on the scaled logits (3 fewer passes over V)
        lt, lr, l0 = (x.to(dtype) / temperature for x in (teacher_logits, refonly_logits, anchor_logits))
    else:
        lt, lr, l0 = (log_probs(x, temperature=temperature, dtype=dtype)
                      for x in (teacher_logits, refonly_logits, anchor_logits))
    delta = purified_delta(lt, lr, clip=clip, center=center)
    return (l0 + delta / beta).log_softmax(dim=-1)


@torch.no_grad()
def trust_region_logits(ref_logits: Tensor, student_logits: Tensor, r: float) -> Tensor:
    """SDPO trust-region teacher logits ``lerp(ref, student, r) = ref + r (student - ref)``, [..., V],
    detached. Both must be scored on the TEACHER context: ``ref_logits`` from the reference
    teacher weights, ``student_logits`` from the current student weights (not the student's
    question-only pass). r = 0 is the reference teacher, r = 1 the current policy on that context."""
    _check_same_shape(ref=ref_logits, student=student_logits)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"trust-region r must be in [0, 1], got {r}")
    dtype = compute_dtype(ref_logits, student_logits)
    return torch.lerp(ref_logits.to(dtype), student_logits.detach().to(dtype), r)
