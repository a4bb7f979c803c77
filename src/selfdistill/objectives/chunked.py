"""Distillation loss from hidden states, chunk by chunk over positions.

The direct path materialises [B, T, V] logits for every pass (student, teacher, refonly, anchor),
which at T = 8192, V = 151936 is ~5 GB per set in float32. The chunked path projects only
``chunk_size`` valid positions at a time, computes the target, the per-position divergence AND
its gradient w.r.t. the student hidden states / output weight inside the forward (a custom
``autograd.Function``), and keeps only those gradients ([N, H] and [V, H]). Nothing of size
[chunk, V] survives a chunk, and no pass is recomputed in backward. Double backward is not
supported. Masked positions are skipped entirely.

For forward or reverse KL on the full vocabulary (beta 0 or 1, no top-k support) the chunk's
divergence and logit gradient come in closed form from ``divergences.kl_with_logit_grad``
(no autograd graph, ~3x faster); other settings back-propagate ``generalized_jsd`` per chunk.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import torch
from torch import Tensor

from .aggregate import token_mean
from .divergences import generalized_jsd, kl_with_logit_grad

TargetFn = Callable[[Mapping[str, Tensor]], Tensor]


class DistillLossOutput(NamedTuple):
    loss: Tensor  # scalar: sum(weights * divergence over valid tokens) / num_tokens_global
    per_position_B_T: Tensor  # detached unweighted divergence, 0 where mask == 0


def project(hidden_N_H: Tensor, weight_V_H: Tensor, bias_V: Tensor | None = None,
            logit_softcap: float | None = None) -> Tensor:
    """Output layer: ``hidden @ W^T (+ b)``, then ``cap * tanh(logits / cap)`` if a soft-cap is set."""
    logits = torch.nn.functional.linear(hidden_N_H, weight_V_H, bias_V)
    if logit_softcap is not None:
        logits = logit_softcap * torch.tanh(logits / logit_softcap)
    return logits


class _ChunkedDistill(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student_N_H, weight_V_H, bias_V, coef_N, targets_N_H, target_weights, target_fn,
                div_kwargs, topk_ids_N_K, softcap, chunk_size, observe):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n = student_N_H.shape[0]
        grad_h = torch.zeros_like(student_N_H) if need_h else None
        # W / b gradients sum over chunks: accumulate in at least float32, cast back at the end
        acc = lambda x: torch.zeros_like(x, dtype=torch.promote_types(x.dtype, torch.float32))  # noqa: E731
        grad_w = acc(weight_V_H) if need_w else None
        grad_b = acc(bias_V) if need_b else None
        per_pos = []
        closed_form = _closed_form(div_kwargs, topk_ids_N_K)
        for start in range(0, n, chunk_size):
            rows = slice(start, start + chunk_size)
            logits = {k: project(v[rows], *target_weights.get(k, (weight_V_H, bias_V)), softcap)
                      for k, v in targets_N_H.items()}
            if closed_form:
                div = _closed_form_chunk(student_N_H[rows], weight_V_H, bias_V, coef_N[rows], logits, target_fn,
                                         div_kwargs, softcap, observe, grads=(grad_h, grad_w, grad_b), rows=rows)
                per_pos.append(div)
                continue
            with torch.enable_grad():
                h = student_N_H[rows].detach().requires_grad_(need_h)
                w = weight_V_H.detach().requires_grad_(need_w)
                b = None if bias_V is None else bias_V.detach().requires_grad_(need_b)
                s_logits = project(h, w, b, softcap)
                with torch.no_grad():
                    target = _target_and_observe(logits, s_logits.detach(), target_fn, observe)
                del logits
                kw = dict(div_kwargs)
                if topk_ids_N_K is not None:
                    kw["topk_ids"] = topk_ids_N_K[rows]
                div = generalized_jsd(s_logits, target, **kw)
                del target
                inputs = [x for x, need in ((h, need_h), (w, need_w), (b, need_b)) if need]
                if inputs:
                    grads = list(torch.autograd.grad((div * coef_N[rows]).sum(), inputs))
                    if need_h:
                        grad_h[rows] = grads.pop(0)
                    if need_w:
                        grad_w += grads.pop(0)
                    if need_b:
                        grad_b += grads.pop(0)
            per_pos.append(div.detach())
            del s_logits, div
        per_pos_N = torch.cat(per_pos) if per_pos else coef_N.new_zeros(0)
        grad_w = None if grad_w is None else grad_w.to(weight_V_H.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias_V.dtype)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        loss = (per_pos_N * coef_N.to(per_pos_N.dtype)).sum()
        ctx.mark_non_differentiable(per_pos_N)
        return loss, per_pos_N

    @staticmethod
    def backward(ctx, grad_loss, _grad_per_pos):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_loss.to(g.dtype)  # noqa: E731
        return scale(grad_h), scale(grad_w), scale(grad_b), *([None] * 10)


def _closed_form(div_kwargs: Mapping, topk_ids_N_K: Tensor | None) -> bool:
    """Forward or reverse KL on the full vocabulary: the chunk's gradient has a closed form."""
    return (topk_ids_N_K is None and div_kwargs.get("support", "full") == "full"
            and float(div_kwargs.get("beta", 0.5)) in (0.0, 1.0))


def _target_and_observe(logits: dict, student_logits: Tensor, target_fn, observe) -> Tensor:
    """The chunk's target log-probs; ``observe`` sees the same role logits (no grad)."""
    roles = {**logits, "student": student_logits}
    if observe is not None:
        observe(roles)
    return target_fn(roles)


@torch.no_grad()
def _closed_form_chunk(h_N_H, weight_V_H, bias_V, coef_N, logits, target_fn, div_kwargs, softcap, observe,
                       *, grads, rows) -> Tensor:
    """One chunk of ``_ChunkedDistill.forward`` without an autograd graph: the per-position
    divergence and its logit gradient from ``kl_with_logit_grad``, chained through the soft-cap
    and the output layer into ``grads`` = (grad_h [N, H] rows, grad_w [V, H], grad_b [V])."""
    grad_h, grad_w, grad_b = grads
    s_logits = project(h_N_H, weight_V_H, bias_V, softcap)
    target = _target_and_observe(logits, s_logits, target_fn, observe)
    logits.clear()
    kw = {k: v for k, v in div_kwargs.items() if k in ("beta", "temperature", "token_clip")}
    div, g = kl_with_logit_grad(s_logits, target, **kw)
    del target
    g.mul_(coef_N.to(g.dtype)[:, None])
    if softcap is not None:  # d (cap tanh(x / cap)) / dx = 1 - (logits / cap)^2
        g.mul_(1.0 - (s_logits.to(g.dtype) / softcap).square_())
    del s_logits
    if grad_b is not None:
        grad_b += g.sum(0)
    g = g.to(h_N_H.dtype)
    if grad_h is not None:
        grad_h[rows] = g @ weight_V_H
    if grad_w is not None:
        grad_w += (g.T @ h_N_H).to(grad_w.dtype)
    return div


def _validate(student_hidden_B_T_H: Tensor, target_hidden: Mapping[str, Tensor], mask_B_T: Tensor,
              target_fn: TargetFn, weight_V_H: Tensor, target_weights: Mapping[str, Tensor] | None) -> None:
    if student_hidden_B_T_H.dim() != 3:
        raise ValueError(f"student hidden must be [B, T, H], got {tuple(student_hidden_B_T_H.shape)}")
    if mask_B_T.shape != student_hidden_B_T_H.shape[:2]:
        raise ValueError(f"mask {tuple(mask_B_T.shape)} must be [B, T] = {tuple(student_hidden_B_T_H.shape[:2])}")
    if weight_V_H.dim() != 2 or weight_V_H.shape[1] != student_hidden_B_T_H.shape[2]:
        raise ValueError(f"weight must be [V, H] with H = {student_hidden_B_T_H.shape[2]}, got {tuple(weight_V_H.shape)}")
    for role, h in target_hidden.items():
        if h.shape != student_hidden_B_T_H.shape:
            raise ValueError(f"target_hidden[{role!r}] has shape {tuple(h.shape)}; every role must match the "
                             f"student's {tuple(student_hidden_B_T_H.shape)} (same response positions)")
    for role, w in (target_weights or {}).items():
        if role not in target_hidden or w.shape != weight_V_H.shape:
            raise ValueError(f"target_weights[{role!r}] must be a [V, H] = {tuple(weight_V_H.shape)} weight of a "
                             f"role in target_hidden {sorted(target_hidden)}, got {tuple(w.shape)}")
    missing = [r for r in getattr(target_fn, "roles", ()) if r != "student" and r not in target_hidden]
    if missing:
        raise KeyError(f"target needs hidden states for roles {missing}; got {sorted(target_hidden)}")


def _weights_and_kwargs(divergence_kwargs, weights_B_T, mask_B_T):
    kw = dict(divergence_kwargs or {})
    if "mask" in kw:
        raise ValueError("pass the mask as mask_B_T, not inside divergence_kwargs")
    w = torch.ones(mask_B_T.shape) if weights_B_T is None else weights_B_T.detach()
    return kw, kw.pop("topk_ids", None), w


def _role_layers(target_weights, target_biases) -> dict[str, tuple[Tensor, Tensor | None]]:
    """role -> (weight, bias) for roles whose output layer differs from the student's."""
    biases = target_biases or {}
    return {k: (w.detach(), None if biases.get(k) is None else biases[k].detach())
            for k, w in (target_weights or {}).items()}


def chunked_distill_loss(
    student_hidden_B_T_H: Tensor,
    weight_V_H: Tensor,
    *,
    target_hidden: Mapping[str, Tensor],
    target_fn: TargetFn,
    mask_B_T: Tensor,
    divergence_kwargs: Mapping | None = None,
    weights_B_T: Tensor | None = None,
    bias_V: Tensor | None = None,
    logit_softcap: float | None = None,
    chunk_size: int = 1024,
    num_tokens_global: int | float | Tensor | None = None,
    target_weights: Mapping[str, Tensor] | None = None,
    target_biases: Mapping[str, Tensor | None] | None = None,
    observe: Callable[[Mapping[str, Tensor]], None] | None = None,
) -> DistillLossOutput:
    """Token-mean distillation loss computed ``chunk_size`` valid positions at a time.

    Args:
        student_hidden_B_T_H: final hidden states (after the final norm) at the response
            positions, with grad. Position t must predict response token t.
        weight_V_H / bias_V: the output layer (e.g. ``model.lm_head.weight``); grads flow to them
            if they require grad.
        target_hidden: role -> [B, T, H] hidden states without grad (e.g. ``{"teacher": ...,
            "refonly": ..., "anchor": ...}``), projected with the same output layer.
        target_fn: maps ``{role: logits_chunk_N_V, "student": detached student logits}`` to target
            log-probs [N, V] (see ``registry.make_target_fn``).
        mask_B_T: valid response tokens. weights_B_T: optional detached per-token weights
            (SRPO entropy weights, SDPO importance ratios).
        divergence_kwargs: keywords of :func:`generalized_jsd` (beta, temperature, token_clip,
            support, topk, tail, topk_ids [B, T, K]).
        num_tokens_global: divisor (global valid-token count); default this call's mask.sum().
        target_weights / target_biases: role -> output layer for roles whose lm_head differs
            from the student's (full fine-tuning with a frozen teacher); default: shared. A role
            with its own weight uses its own bias from target_biases (none if absent).
        observe: called without grad once per chunk with ``{role: logits_N_V, "student":
            detached student logits}`` (N valid positions of the chunk, in mask order), so
            statistics of logits the loss projects anyway (teacher entropy, diagnostics) cost no
            second projection. Roles in ``target_hidden`` that ``target_fn`` does not read are
            projected for ``observe`` only.
    Returns the scalar loss and the detached per-position divergence [B, T].
    """
    _validate(student_hidden_B_T_H, target_hidden, mask_B_T, target_fn, weight_V_H, target_weights)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    kw, topk_ids, w = _weights_and_kwargs(divergence_kwargs, weights_B_T, mask_B_T)
    B, T, H = student_hidden_B_T_H.shape
    idx = mask_B_T.reshape(-1).bool().nonzero().squeeze(1)
    denom = float(idx.numel() if num_tokens_global is None else num_tokens_global)
    coef_N = w.reshape(-1)[idx].to(torch.float64) / max(denom, 1.0)
    loss, per_pos_N = _ChunkedDistill.apply(
        student_hidden_B_T_H.reshape(-1, H)[idx], weight_V_H, bias_V, coef_N,
        {k: v.detach().reshape(-1, H)[idx] for k, v in target_hidden.items()},
        _role_layers(target_weights, target_biases), target_fn, kw,
        None if topk_ids is None else topk_ids.reshape(B * T, -1)[idx], logit_softcap, chunk_size,
        observe,
    )
    per_pos = per_pos_N.new_zeros(B * T).index_put((idx,), per_pos_N).view(B, T)
    return DistillLossOutput(loss, per_pos)


def direct_distill_loss(
    student_hidden_B_T_H: Tensor,
    weight_V_H: Tensor,
    *,
    target_hidden: Mapping[str, Tensor],
    target_fn: TargetFn,
    mask_B_T: Tensor,
    divergence_kwargs: Mapping | None = None,
    weights_B_T: Tensor | None = None,
    bias_V: Tensor | None = None,
    logit_softcap: float | None = None,
    num_tokens_global: int | float | Tensor | None = None,
    target_weights: Mapping[str, Tensor] | None = None,
    target_biases: Mapping[str, Tensor | None] | None = None,
    observe: Callable[[Mapping[str, Tensor]], None] | None = None,
) -> DistillLossOutput:
    """Reference path with the same contract as :func:`chunked_distill_loss`: materialises every
    role's [B, T, V] logits at once. For tests, benchmarks and short sequences."""
    _validate(student_hidden_B_T_H, target_hidden, mask_B_T, target_fn, weight_V_H, target_weights)
    kw, topk_ids, w = _weights_and_kwargs(divergence_kwargs, weights_B_T, mask_B_T)
    layers = _role_layers(target_weights, target_biases)
    if topk_ids is not None:
        kw["topk_ids"] = topk_ids
    s_logits = project(student_hidden_B_T_H, weight_V_H, bias_V, logit_softcap)
    with torch.no_grad():
        logits = {k: project(v, *layers.get(k, (weight_V_H, bias_V)), logit_softcap)
                  for k, v in target_hidden.items()}
        target = target_fn({**logits, "student": s_logits.detach()})
        if observe is not None:
            valid = mask_B_T.bool()
            observe({k: v[valid] for k, v in {**logits, "student": s_logits.detach()}.items()})
    div = generalized_jsd(s_logits, target, mask=mask_B_T, **kw)
    loss = token_mean(div * w.to(div.dtype), mask_B_T, num_tokens_global=num_tokens_global)
    return DistillLossOutput(loss, div.detach())
