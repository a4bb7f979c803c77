"""One micro-batch of a step, composed from the method's record (``selfdistill.methods``):
render its contexts (:func:`plan`), run the no-grad passes its target reads (:func:`score`), then
the student pass and the loss (:func:`compute_loss`).

Nothing here tests a method's name: the record says which contexts exist, which registry target
(``objectives.TARGETS``) builds the distillation target from which passes, which tokens take the
distillation loss and which the policy gradient.

The loss of a micro-batch is already divided by the GLOBAL count of loss units (tokens, or
sequences with ``aggregation=sequence``) of its optimizer update, so summing micro-batches and
processes gives the update's global mean whatever the split. With one update per step
(``schedule.ppo_epochs`` = ``schedule.mini_batches`` = 1, the default) the rollout policy is the
current policy: the PPO ratio is ``exp(logp - sg(logp))`` = 1 and the SDPO importance weight is 1,
so neither is computed. With more updates the sampling policy's log-probs (:func:`policy_logprobs`,
no grad, before the first update) enter both: the PPO ratio leaves 1 and its clip can bind
(counted for ``clip_frac``), and the distillation loss is weighted by
``min(exp(logp - logp_old), objective.is_clip)`` (detached).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import Tensor

from selfdistill import methods, objectives as obj
from selfdistill.contexts import ScoringBatch

from .config import TrainConfig
from .passes import (  # noqa: F401  (ResponseScorer re-exported for the loop)
    Passes,
    ResponseScorer,
    entropy,
    forward_inputs,
    per_position,
    run_passes,
    token_logprobs,
)

# target role -> (rendered context, handle of ``Passes`` that scores it); None: the context is the
# method's teacher context. "student" (the detached student logits) needs no pass.
ROLE_SOURCES = {"teacher": (None, "teacher"), "live": (None, "live"), "refonly": ("refonly", "base"),
                "anchor": ("base", "base")}


def roles_for(cfg: TrainConfig) -> tuple[str, ...]:
    """Contexts rendered for each sample (the student's always first)."""
    method = methods.of(cfg.method)
    roles = ["student"]
    if method.teacher_context:
        roles.append(method.teacher_context)
    if methods.diagnostics_on(method, cfg.diagnostics.pmi):
        roles.append("refonly")
    if "base" in method.base_roles and cfg.method.anchor == "base":
        roles.append("base")
    if method.context_scores:
        roles.append("reprompt")  # the context c of u_t = log pi(y|x,c) - log pi(y|x)
    return tuple(roles)


@dataclass
class MicroBatch:
    """Rendered contexts and per-row loss routing for one micro-batch.

    ``distill_mask_B_T`` / ``pg_mask_B_T`` select the tokens of each loss; ``unit_weights_B_T``
    turns the global divisor into tokens (all ones) or sequences (1 / length per token).
    """

    batches: dict[str, ScoringBatch]  # role -> its rendered contexts (student first)
    response_mask_B_T: Tensor
    distill_mask_B_T: Tensor | None
    pg_mask_B_T: Tensor | None
    unit_weights_B_T: Tensor
    advantages_B: Tensor | None
    rows: list[int]  # indices into the step's Rollouts

    @property
    def loss_units(self) -> float:
        mask = torch.zeros_like(self.response_mask_B_T)
        for m in (self.distill_mask_B_T, self.pg_mask_B_T):
            if m is not None:
                mask = mask | m
        return float((self.unit_weights_B_T * mask).sum())


@dataclass
class MicroResult:
    loss: Tensor
    divergence_B_T: Tensor | None = None  # detached per-token divergence (distill tokens)
    divergence_mask_B_T: Tensor | None = None
    sums: dict[str, float] = field(default_factory=dict)  # metric numerators / denominators
    kl_ratio_N: Tensor | None = None  # per-position KL(T||R) / KL(T||S) (diagnostics), for medians


def _to(batch, device):
    """A ScoringBatch with its tensors on ``device``."""
    moved = {f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)
             if isinstance(getattr(batch, f.name), Tensor)}
    return dataclasses.replace(batch, **moved)


def plan(cfg: TrainConfig, renderer, rollouts, rows: list[int], *, device=None) -> MicroBatch:
    """Render every role for ``rows`` of ``rollouts`` and decide which tokens take which loss.

    Every tensor of the result lives on ``device`` (the model's; default CPU)."""
    sib = None if rollouts.siblings is None else [rollouts.siblings[i] for i in rows]
    examples = [rollouts.examples[i] for i in rows]
    # environment feedback of the data (Example.feedback) reaches the reprompt, which uses it
    # only when no successful sibling exists (SDPO's rule, contexts.prompts.reprompt_text)
    feedback = [e.feedback for e in examples] if any(e.feedback for e in examples) else None
    batches = renderer.scoring_batches(
        roles_for(cfg), examples,
        [rollouts.response_ids[i] for i in rows], siblings=sib, feedbacks=feedback,
    )
    student = batches["student"]
    kept = [rows[k] for k in student.kept]
    resp = student.response_mask_B_T.bool()
    method = methods.of(cfg.method)
    distill = pg = adv = None
    if method.distill == "response":
        distill = resp
    elif method.distill == "with_context":
        distill = batches[method.teacher_context].loss_mask_B_T.bool()
    if methods.takes_pg(method, cfg.objective.hybrid_lambda):
        adv = rollouts.advantages_B[kept]
        pg = resp
    if method.distill == "routed":
        correct = torch.tensor([rollouts.rewards[i] >= 1.0 for i in kept])
        route = obj.srpo_route(correct, batches[method.teacher_context].has_context_B.bool())
        distill = resp & route[:, None]
        if method.policy_gradient == "unrouted":
            pg = resp & ~route[:, None]
    if cfg.objective.aggregation == "sequence":
        lengths = resp.sum(-1, keepdim=True).clamp(min=1)
        units = resp.float() / lengths
    else:
        units = resp.float()
    dev = lambda t: None if t is None else t.to(device or "cpu")  # noqa: E731
    batches = {role: _to(b, device or "cpu") for role, b in batches.items()}
    return MicroBatch(batches, dev(resp), dev(distill), dev(pg), dev(units), dev(adv), kept)


def target_kwargs(cfg: TrainConfig, name: str) -> dict:
    """Keywords of the registry target ``name`` from the config."""
    o, m = cfg.objective, cfg.method
    if name == "trust_region":
        return dict(r=m.trust_region_mix, temperature=o.temperature)
    if name == "purified":
        return dict(anchor=m.anchor, beta=o.purified_beta, clip=o.purified_clip, center=o.purified_center,
                    temperature=o.temperature)
    return dict(temperature=o.temperature)


def _target(cfg: TrainConfig, passes: Passes, mb: MicroBatch, *, diagnostics: bool):
    """(role -> hidden_B_T_H, role -> output layer, target_fn), all without grad. The target is
    built by name from ``objectives.TARGETS``; its ``roles`` say which passes run (``ROLE_SOURCES``).
    Roles the target does not read (refonly for OPSD's diagnostics) are projected for the metrics
    only."""
    method = methods.of(cfg.method)
    name = methods.target_name(method, cfg.method.teacher)
    fn = obj.make_target_fn(name, **target_kwargs(cfg, name))
    roles = [r for r in fn.roles if r != "student"]
    if diagnostics and "refonly" not in roles:
        roles.append("refonly")
    handles = {"teacher": passes.teacher, "live": passes.live, "base": passes.base}
    plan = {}
    for role in sorted(roles, key=list(ROLE_SOURCES).index):
        context, handle = ROLE_SOURCES[role]
        plan[role] = (handles[handle], mb.batches[context or method.teacher_context])
    hidden = run_passes(plan, share_prefixes=passes.share_prefixes)
    layers = {name: handle.output_layer() for name, (handle, _) in plan.items()}
    return hidden, layers, fn


def _divergence_kwargs(cfg: TrainConfig) -> dict:
    o = cfg.objective
    kw = dict(beta=o.beta, temperature=o.temperature, token_clip=o.token_clip)
    if o.support != "full":
        kw.update(support=o.support, topk=o.topk, tail=o.tail)
    return kw


@dataclass
class Targets:
    """No-grad passes of one micro-batch: role -> hidden [B, T, H], role -> output layer, the
    target function over their logits, and the teacher's entropy per token [B, T] (nats) when a
    weight needs it before the loss (SRPO, anti-sd); otherwise None and the loss measures it
    on the teacher logits it projects anyway."""

    hidden: dict
    layers: dict
    fn: Callable | None
    entropy_B_T: Tensor | None
    context_logp_B_T: Tensor | None = None  # anti-sd: log pi(y_t | x, c, y_<t), 0 without context
    context_mask_B_T: Tensor | None = None


def _antisd_scores(passes: Passes, mb: MicroBatch) -> Targets:
    """Anti-self-distillation (GRPO): the current policy on the sibling context, no grad."""
    batch = mb.batches["reprompt"]
    hidden_B_T_H = passes.live.hidden(forward_inputs(batch))
    layer = passes.live.output_layer()
    mask = batch.loss_mask_B_T.bool()
    with torch.no_grad():
        logp = token_logprobs(hidden_B_T_H, layer, batch.response_ids_B_T, passes.chunk_size)
    ent = per_position(hidden_B_T_H, layer, mask, passes.chunk_size, entropy)
    return Targets({}, {}, None, ent, torch.where(mask, logp, torch.zeros_like(logp)), mask)

def score(cfg: TrainConfig, passes: Passes, mb: MicroBatch) -> Targets | None:
    """Teacher / reference-only / anchor passes (no grad); None for methods without a target."""
    method = methods.of(cfg.method)
    if method.context_scores:
        return _antisd_scores(passes, mb)
    if mb.distill_mask_B_T is None:
        return None
    hidden, layers, fn = _target(cfg, passes, mb, diagnostics=cfg.diagnostics.pmi)
    ent = None
    if method.token_weights == "teacher_entropy":  # exp(-beta_H * H_teacher) is needed up front
        ent = per_position(hidden["teacher"], layers["teacher"], mb.distill_mask_B_T, passes.chunk_size,
                           functools.partial(entropy, temperature=cfg.objective.temperature))
    return Targets(hidden, layers, fn, ent)


def policy_logprobs(handle, mb: MicroBatch, chunk: int) -> Tensor:
    """``log pi(y_t | x, y_<t)`` [B, T] (float32, no grad) of the sampled response tokens under
    ``handle`` (a ``models`` teacher handle: ``live`` before the first update gives the sampling
    policy's log-probs, ``fixed`` the frozen initial policy's for the KL term); 0 off the
    response mask."""
    student = mb.batches["student"]
    hidden_B_T_H = run_passes({"student": (handle, student)})["student"]
    with torch.no_grad():
        logp = token_logprobs(hidden_B_T_H, handle.output_layer(), student.response_ids_B_T, chunk)
    return torch.where(mb.response_mask_B_T, logp, torch.zeros_like(logp))


def graph_anchor(hidden_B_T_H: Tensor) -> Tensor:
    """A float32 zero that depends on every parameter behind ``hidden_B_T_H``: DDP needs a gradient
    from each rank even when no token of a micro-batch carries a loss. Summed in float32: a float16
    sum over [B, T, H] overflows to inf, and inf * 0 is NaN."""
    return hidden_B_T_H.sum(dtype=torch.float32) * 0.0


def compute_loss(cfg: TrainConfig, passes: Passes, mb: MicroBatch, targets: Targets | None,
                 num_units: float, *, diagnostics: bool, antisd_lambda: float = 0.0,
                 old_logp_B_T: Tensor | None = None, ref_logp_B_T: Tensor | None = None) -> MicroResult:
    """Student pass with gradients and the method's loss, divided by the global ``num_units``.

    ``antisd_lambda``: the anti-sd weight for this step (0 while its entropy gate is closed).
    ``old_logp_B_T``: the sampling policy's log-probs of the response tokens (:func:`policy_logprobs`)
    when the step takes several optimizer updates; None: the rollouts are on-policy (ratio 1).
    ``ref_logp_B_T``: the frozen initial policy's log-probs, for the k3 KL term (``kl_coef`` > 0).
    """
    from selfdistill.models import output_layer

    chunk = passes.chunk_size
    student = mb.batches["student"]
    student_h = passes.scorer(forward_inputs(student))
    layer = output_layer(passes.model)  # with grads: a trained lm_head (and bias) learns
    loss = graph_anchor(student_h)
    res = MicroResult(loss)
    o = cfg.objective
    method = methods.of(cfg.method)
    # SDPO hybrid: lambda * L_GRPO + (1 - lambda) * L_SDPO, the loss whose gradient is the policy
    # gradient of lambda * A_GRPO + (1 - lambda) * A_SDPO (distillation = PG with A_SDPO)
    hybrid = method.hybrid and o.hybrid_lambda > 0
    if targets is not None and targets.context_logp_B_T is not None:
        res.sums["teacher_entropy"] = float((targets.entropy_B_T * targets.context_mask_B_T).sum())
        res.sums["teacher_entropy_n"] = float(targets.context_mask_B_T.sum())
    if targets is not None and mb.distill_mask_B_T is not None:
        mask = mb.distill_mask_B_T
        ent = targets.entropy_B_T
        stats = ChunkStats(cfg, entropy=ent is None, diagnostics=diagnostics)
        if ent is not None:
            res.sums["teacher_entropy"] = float((ent * mask).sum())
            res.sums["teacher_entropy_n"] = float(mask.sum())
        token_w = mb.unit_weights_B_T.clone()
        if method.token_weights == "teacher_entropy":
            # exp(-beta_H * H_teacher), as objectives.teacher_entropy_weights, from the entropy
            # already computed chunk-wise (no [B, T, V] teacher logits are kept)
            token_w = token_w * torch.exp(-cfg.method.entropy_beta * ent)
        if old_logp_B_T is not None:  # stale rollouts: SDPO's detached, clipped importance weight
            with torch.no_grad():
                now = token_logprobs(student_h.detach(), layer, student.response_ids_B_T, chunk)
            is_w = obj.sdpo_importance_ratio(now, old_logp_B_T, clip=o.is_clip)
            token_w = token_w * is_w
            res.sums["is_weight"] = float((is_w * mask).sum())
            res.sums["is_weight_n"] = float(mask.sum())
        kw = _divergence_kwargs(cfg)
        # chunked (no [B, T, V] logits) or direct; both feed ChunkStats the same logits
        loss_fn, extra = ((obj.chunked_distill_loss, {"chunk_size": chunk}) if chunk
                          else (obj.direct_distill_loss, {}))
        out = loss_fn(
            student_h, layer.weight_V_H, bias_V=layer.bias_V, logit_softcap=layer.softcap,
            target_hidden=targets.hidden, target_fn=targets.fn, mask_B_T=mask, divergence_kwargs=kw,
            weights_B_T=token_w, num_tokens_global=num_units, observe=stats,
            target_weights={k: v.weight_V_H for k, v in targets.layers.items()},
            target_biases={k: v.bias_V for k, v in targets.layers.items()}, **extra,
        )
        d_loss, div = out.loss, out.per_position_B_T
        if hybrid:
            d_loss = d_loss * (1.0 - o.hybrid_lambda)
        loss = loss + d_loss.float()
        res.divergence_B_T, res.divergence_mask_B_T = div, mask
        res.sums.update(stats.sums)
        if diagnostics:
            res.kl_ratio_N = torch.cat(stats.kl_ratio) if stats.kl_ratio else torch.zeros(0)
    if mb.pg_mask_B_T is not None:
        ids = student.response_ids_B_T
        logp = token_logprobs(student_h, layer, ids, chunk)
        adv = mb.advantages_B
        if targets is not None and targets.context_logp_B_T is not None:
            u_B_T = torch.where(targets.context_mask_B_T, targets.context_logp_B_T - logp.detach(),
                                torch.zeros_like(logp))
            adv = obj.antisd_advantage(adv.to(logp.dtype), u_B_T, antisd_lambda)
            res.sums["antisd_u"] = float((u_B_T * targets.context_mask_B_T).sum())
        old = logp.detach() if old_logp_B_T is None else old_logp_B_T.to(logp.dtype)
        values = obj.clipped_pg_loss(logp, old, adv, mb.pg_mask_B_T, eps_low=o.eps_low, eps_high=o.eps_high)
        weighted = values * mb.unit_weights_B_T.to(values.dtype)
        pg_loss = obj.token_mean(weighted, mb.pg_mask_B_T, num_tokens_global=num_units)
        if hybrid:
            pg_loss = pg_loss * o.hybrid_lambda
        loss = loss + pg_loss.float()
        if old_logp_B_T is None:
            res.sums["clipped"] = 0.0  # on-policy: the ratio is exactly 1, nothing is ever clipped
        else:
            res.sums["clipped"] = float(obj.pg_clip_binds(logp, old, adv, mb.pg_mask_B_T,
                                                          eps_low=o.eps_low, eps_high=o.eps_high).sum())
        res.sums["clipped_n"] = float(mb.pg_mask_B_T.sum())
        if ref_logp_B_T is not None:  # k3 KL to the frozen initial policy, same token mean
            kl = obj.k3_kl(logp, ref_logp_B_T.to(logp.dtype), mb.pg_mask_B_T)
            kl_w = kl * mb.unit_weights_B_T.to(kl.dtype)
            loss = loss + (o.kl_coef * obj.token_mean(kl_w, mb.pg_mask_B_T, num_tokens_global=num_units)).float()
            res.sums["kl_ref"] = float(kl.detach().sum())
            res.sums["kl_ref_n"] = float(mb.pg_mask_B_T.sum())
    res.loss = loss
    return res


class ChunkStats:
    """Metric sums over the logits the distillation loss projects anyway, one chunk at a time
    (``observe`` of ``objectives.chunked_distill_loss``): the teacher's entropy (nats, summed over
    positions) and, with diagnostics, the Purified-OPSD PMI diagnostics as position-weighted sums
    (``pmi_n`` positions), the count of positions whose norm ratio exceeds 1, and the per-position
    KL ratios (``kl_ratio``, for the median: their mean is carried by a few positions)."""

    KEYS = (("cos_total_ref", "cos_total_ref"), ("cos_total_it", "cos_total_it"),
            ("norm_ratio_ref_total", "norm_ratio_ref_total"), ("kl_ratio_ref", "kl_ratio_ref_mean"),
            ("tanh_clip_frac", "tanh_clip_fraction"))

    def __init__(self, cfg: TrainConfig, *, entropy: bool, diagnostics: bool) -> None:
        self.clip, self.center = cfg.objective.purified_clip, cfg.objective.purified_center
        # at the distillation tau: the entropy and diagnostics describe the distributions the
        # target is built from (and tanh_clip_frac the clip that the target really applies)
        self.tau = cfg.objective.temperature
        self.entropy, self.diagnostics = entropy, diagnostics
        self.sums: dict[str, float] = {}
        self.kl_ratio: list[Tensor] = []
        if entropy:
            self.sums.update(teacher_entropy=0.0, teacher_entropy_n=0.0)
        if diagnostics:
            self.sums.update({"pmi_n": 0.0, "norm_ratio_above_1": 0.0, **{key: 0.0 for key, _ in self.KEYS}})

    def __call__(self, logits: Mapping[str, Tensor]) -> None:
        if self.tau != 1.0:
            logits = {role: lg / self.tau for role, lg in logits.items()}
        teacher = logits["teacher"]
        if self.entropy:
            self.sums["teacher_entropy"] += float(entropy(teacher).sum())
            self.sums["teacher_entropy_n"] += float(teacher.shape[0])
        if self.diagnostics and teacher.shape[0]:
            d = obj.pmi_diagnostics(teacher, logits["refonly"], logits["student"],
                                    clip=self.clip, center=self.center)
            n = float(d["num_positions"])
            self.sums["pmi_n"] += n
            for key, src in self.KEYS:
                self.sums[key] += float(d[src]) * n
            self.sums["norm_ratio_above_1"] += float((d["norm_ratio_ref_total_per_position"] > 1).sum())
            self.kl_ratio.append(d["kl_ratio_ref_per_position"].detach().float().cpu())
