"""Policy-gradient pieces: GRPO/DAPO advantages, clipped loss, the share of tokens the clip binds,
DAPO's soft overlong punishment and the k3 KL estimate to a reference (methods.md section 5), SRPO
routing and entropy weights (section 6), Anti-Self-Distillation advantage (section 7) and SDPO's
importance ratio (section 4). Per-token values; aggregation lives in ``aggregate.py``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class GroupAdvantages(NamedTuple):
    advantages_G_N: Tensor
    zero_signal_fraction: float  # share of groups whose rewards are all equal (no gradient)


def group_advantages(rewards_G_N: Tensor, *, normalize_std: bool = False, eps: float = 1e-6) -> GroupAdvantages:
    """``A_i = r_i - mean_group(r)``, optionally divided by ``std_group(r) + eps`` (unbiased std;
    a group of one has std 0). rewards_G_N: G groups (prompts) x N rollouts."""
    if rewards_G_N.dim() != 2:
        raise ValueError(f"rewards must be [G, N] (groups x rollouts), got shape {tuple(rewards_G_N.shape)}")
    r = rewards_G_N.float() if not rewards_G_N.is_floating_point() else rewards_G_N
    adv = r - r.mean(dim=1, keepdim=True)
    if normalize_std:
        std = r.std(dim=1, keepdim=True) if r.shape[1] > 1 else torch.zeros_like(r[:, :1])
        adv = adv / (std + eps)
    flat = (r.amax(dim=1) == r.amin(dim=1)).float()
    return GroupAdvantages(adv, float(flat.mean()) if flat.numel() else 0.0)


def _expand_adv(adv: Tensor, like_B_T: Tensor) -> Tensor:
    if adv.shape == like_B_T.shape:
        return adv
    if adv.dim() == 1 and adv.shape[0] == like_B_T.shape[0]:
        return adv[:, None].expand_as(like_B_T)
    raise ValueError(f"advantages must be [B] or [B, T] matching {tuple(like_B_T.shape)}, got {tuple(adv.shape)}")


def clipped_pg_loss(
    logp_new_B_T: Tensor,
    logp_old_B_T: Tensor,
    adv: Tensor,
    mask_B_T: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> Tensor:
    """PPO/DAPO clipped surrogate per token [B, T], to minimise:
    ``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)`` with ``rho = exp(logp_new - logp_old)``;
    0 where mask == 0. ``adv`` is [B] (sequence advantage) or [B, T]."""
    if logp_new_B_T.shape != logp_old_B_T.shape or logp_new_B_T.shape != mask_B_T.shape:
        raise ValueError(
            f"logp_new {tuple(logp_new_B_T.shape)}, logp_old {tuple(logp_old_B_T.shape)} and mask "
            f"{tuple(mask_B_T.shape)} must all be [B, T]"
        )
    a = _expand_adv(adv, logp_new_B_T).to(logp_new_B_T.dtype).detach()
    ratio = torch.exp(logp_new_B_T - logp_old_B_T.detach())
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = -torch.minimum(ratio * a, clipped * a)
    return torch.where(mask_B_T.bool(), loss, torch.zeros_like(loss))


def srpo_route(correct_B: Tensor, has_sibling_B: Tensor) -> Tensor:
    """SRPO routing ``z = (1 - correct) * has_successful_sibling`` as a bool [B]: True routes the
    sample to the distillation loss, False to the GRPO loss."""
    return (~correct_B.bool()) & has_sibling_B.bool()


def srpo_loss(pg_loss_B_T: Tensor, distill_loss_B_T: Tensor, route_B: Tensor,
              distill_weights_B_T: Tensor | None = None) -> Tensor:
    """Per-token SRPO loss [B, T]: weighted distillation where ``route_B`` else policy gradient."""
    d = distill_loss_B_T if distill_weights_B_T is None else distill_loss_B_T * distill_weights_B_T.detach()
    return torch.where(route_B.bool()[:, None], d, pg_loss_B_T)


@torch.no_grad()
def teacher_entropy_weights(teacher_logits: Tensor, *, beta_h: float = 1.0, temperature: float = 1.0) -> Tensor:
    """SRPO token weights ``exp(-beta_h * H)`` [..., T], H the teacher's entropy in nats."""
    logp = (teacher_logits.float() if teacher_logits.dtype != torch.float64 else teacher_logits)
    logp = (logp / temperature).log_softmax(dim=-1)
    entropy = -(logp.exp() * torch.where(logp > -math.inf, logp, torch.zeros_like(logp))).sum(-1)
    return torch.exp(-beta_h * entropy)


def antisd_phi(u: Tensor) -> Tensor:
    """``phi(u) = 0.5 (softplus(u) - log 2)``; phi(0) = 0."""
    return 0.5 * (F.softplus(u) - math.log(2.0))


def antisd_advantage(adv_grpo: Tensor, u_B_T: Tensor, lam: float) -> Tensor:
    """Anti-Self-Distillation advantage [B, T]: ``A_grpo - lam * sg(phi(u))`` with
    ``u = log pi(y_t|x,c,y_<t) - log pi(y_t|x,y_<t)``. The entropy-based switch-off is the
    caller's (pass lam = 0 while it is off)."""
    return _expand_adv(adv_grpo, u_B_T) - lam * antisd_phi(u_B_T.detach())


def sdpo_importance_ratio(logp_new_B_T: Tensor, logp_old_B_T: Tensor, *, clip: float = 2.0) -> Tensor:
    """Detached ``min(exp(logp_new - logp_old), clip)`` [B, T]; the log-ratio is clamped to
    [-20, 20] before exp to avoid overflow."""
    log_ratio = (logp_new_B_T - logp_old_B_T).detach().clamp(-20.0, 20.0)
    return log_ratio.exp().clamp(max=clip)


@torch.no_grad()
def pg_clip_binds(logp_new_B_T: Tensor, logp_old_B_T: Tensor, adv: Tensor, mask_B_T: Tensor, *,
                  eps_low: float = 0.2, eps_high: float = 0.28) -> Tensor:
    """Bool [B, T]: the tokens where the clip of :func:`clipped_pg_loss` binds, i.e. the clipped
    term is the minimum and the token's gradient is 0: ``rho > 1 + eps_high`` with ``A > 0``, or
    ``rho < 1 - eps_low`` with ``A < 0`` (verl's ``pg_clipfrac`` counts the same tokens).
    Their share of the masked tokens is the step's ``clip_frac``."""
    a = _expand_adv(adv, logp_new_B_T).to(logp_new_B_T.dtype)
    ratio = torch.exp(logp_new_B_T.detach() - logp_old_B_T.detach())
    binds = ((a > 0) & (ratio > 1.0 + eps_high)) | ((a < 0) & (ratio < 1.0 - eps_low))
    return binds & mask_B_T.bool()


def k3_kl(logp_B_T: Tensor, ref_logp_B_T: Tensor, mask_B_T: Tensor | None = None) -> Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) on tokens sampled from pi [B, T]:
    ``exp(d) - d - 1`` with ``d = log pi_ref - log pi`` (Schulman's unbiased, non-negative
    estimator; GRPO's KL term). The gradient flows through ``logp_B_T`` only:
    ``d/dlogp = 1 - exp(d)``. ``d`` is clamped to [-20, 20] so exp cannot overflow; 0 where mask == 0."""
    d = (ref_logp_B_T.detach() - logp_B_T).clamp(-20.0, 20.0)
    kl = torch.exp(d) - d - 1.0
    if mask_B_T is None:
        return kl
    return torch.where(mask_B_T.bool(), kl, torch.zeros_like(kl))


def overlong_penalty(lengths_B: Tensor, *, max_len: int, buffer: int, penalty: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment, added to the reward [B] (float64):
    ``0`` for ``L <= max_len - buffer``, ``penalty * (max_len - buffer - L) / buffer`` (linear from 0
    to ``-penalty``) inside the buffer, ``-penalty`` at and beyond ``max_len``. ``buffer`` 0: all 0."""
    lengths = lengths_B.to(torch.float64)
    if buffer <= 0:
        return torch.zeros_like(lengths)
    shaped = ((max_len - buffer) - lengths) / buffer
    return penalty * shaped.clamp(min=-1.0, max=0.0)
