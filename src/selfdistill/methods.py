"""Every training method, declared in one place: the method table.

A method is data. Its record says which contexts are rendered, which weights score them, which
registry target (``objectives.TARGETS``) turns their logits into the distillation target, which
response tokens take the distillation loss and which the policy gradient, what the data must hold,
which config keys it reads and which metric groups it logs. The trainer, its checks, the data
validation and the docs read these records; nothing else tests a method's name.

    METHODS = {
      opsd           teacher=teacher(privileged)  target=raw       distill=response
      purified-opsd  teacher=teacher(privileged)  target=purified  distill=response (+ refonly, base)
      sdpo           teacher=reprompt(sibling)    target=raw       distill=rows with a context (+ lambda x PG: hybrid)
      grpo           no teacher                                    policy gradient=response
      srpo           teacher=reprompt(sibling)    target=raw       distill=routed rows, PG the rest
    }
    MODIFIERS = {antisd: grpo + the live policy's log-probs on a sibling context in the advantage}

Adding a method is one record here (plus, when its target is new, one ``register_target`` in
``objectives/registry.py``); docs/design.md shows an example.

This module is a leaf (it imports nothing of ours), so every layer may read the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TEACHERS = ("fixed", "ema", "live", "trust_region")

# Config keys whose meaning depends on the method. A key outside every set below (model.*,
# optimizer.*, schedule.*, ...) applies to every method.
DISTILL_KEYS = frozenset({
    "method.teacher", "method.ema_rate", "method.trust_region_mix", "objective.beta",
    "objective.temperature", "objective.token_clip", "objective.support", "objective.topk",
    "objective.tail", "objective.is_clip",
})
PURIFIED_KEYS = frozenset({"method.anchor", "objective.purified_beta", "objective.purified_clip",
                           "objective.purified_center"})
DIAGNOSTICS_KEYS = frozenset({"diagnostics.pmi", "diagnostics.controls_every"})
PG_KEYS = frozenset({"objective.eps_low", "objective.eps_high", "objective.adv_std_norm",
                     "objective.kl_coef", "objective.overlong_buffer", "objective.overlong_penalty",
                     "sampling.dynamic_sampling", "sampling.max_sampling_batches"})
HYBRID_KEYS = frozenset({"objective.hybrid_lambda"})
ANTISD_KEYS = frozenset({"method.antisd", "method.antisd_lambda", "method.antisd_entropy_gate"})


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the ``method.name`` value.
        summary: one line for ``--help`` and the docs.
        teacher_context: the rendered role the teacher scores (``teacher``: question + reference;
            ``reprompt``: question + a successful sibling or feedback); None: no teacher.
        target: the ``objectives.TARGETS`` name of the distillation target; a ``trust_region``
            teacher replaces it by ``trust_region`` (see :func:`target_name`).
        distill: which response tokens take the distillation loss: ``response`` (all),
            ``with_context`` (rows whose teacher context exists), ``routed`` (SRPO: rows routed to
            distillation) or ``none``.
        policy_gradient: which take the clipped policy gradient: ``response``, ``unrouted``
            (SRPO: the rows not routed to distillation) or ``none``.
        needs_solution: every example needs a reference solution.
        needs_answer: rollouts are rewarded against the gold answer (every example needs one).
        groups: compares ``sampling.rollouts_per_prompt >= 2`` rollouts of a prompt.
        siblings: the teacher context holds a successful sibling rollout.
        teachers: the ``method.teacher`` values it accepts.
        diagnostics: Purified-OPSD PMI diagnostics: ``always``, ``optional``
            (``diagnostics.pmi``) or ``never``.
        base_roles: contexts scored by the frozen base beside the teacher's (``refonly``, ``base``).
        token_weights: ``teacher_entropy`` (SRPO: ``exp(-beta_H * H_teacher)`` per token) or None.
        context_scores: anti-sd: the live policy scores the sibling context without grad and its
            log-probs enter the advantage (no distillation target).
        hybrid: SDPO's hybrid advantage ``lambda A_GRPO + (1 - lambda) A_SDPO``: with
            ``objective.hybrid_lambda`` > 0 every response token also takes the clipped policy
            gradient with the group advantage, weighted lambda, and the distillation 1 - lambda
            (see :func:`takes_pg`).
        keys: the method-dependent config keys it reads (see the ``*_KEYS`` sets).
        metrics: metric groups it logs beyond the common ones: ``pmi``, ``grpo``, ``sdpo``,
            ``antisd``.
        cost_factor: step time relative to OPSD, for the size estimate.
    """

    name: str
    summary: str
    teacher_context: str | None = None
    target: str | None = None
    distill: str = "none"
    policy_gradient: str = "none"
    needs_solution: bool = False
    needs_answer: bool = False
    groups: bool = False
    siblings: bool = False
    teachers: tuple[str, ...] = TEACHERS
    diagnostics: str = "never"
    base_roles: tuple[str, ...] = ()
    token_weights: str | None = None
    context_scores: bool = False
    hybrid: bool = False
    keys: frozenset[str] = field(default_factory=frozenset)
    metrics: tuple[str, ...] = ()
    cost_factor: float = 1.0

    @property
    def distills(self) -> bool:
        return self.distill != "none"

    @property
    def uses_pg(self) -> bool:
        return self.policy_gradient != "none"


@dataclass(frozen=True)
class Modifier:
    """A switch that changes a method's record (``flag``: the boolean config key that turns it on)."""

    name: str
    flag: str
    applies_to: tuple[str, ...]
    summary: str
    changes: str  # what it changes, for messages: "the GRPO advantage"

    def apply(self, method: Method) -> Method:
        return dataclasses.replace(
            method, name=f"{method.name}+{self.name}", siblings=True, context_scores=True,
            keys=method.keys | ANTISD_KEYS, metrics=method.metrics + (self.name,))


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("opsd", "on-policy self-distillation toward the privileged (reference-conditioned) teacher",
           teacher_context="teacher", target="raw", distill="response", needs_solution=True,
           diagnostics="optional", keys=DISTILL_KEYS | DIAGNOSTICS_KEYS),
    Method("purified-opsd", "OPSD toward the PMI target: the question-conditioned part of the teacher's "
           "shift, with a reference-only teacher and the frozen base as anchor",
           teacher_context="teacher", target="purified", distill="response", needs_solution=True,
           teachers=("fixed",), diagnostics="always", base_roles=("refonly", "base"),
           keys=DISTILL_KEYS | PURIFIED_KEYS | {"diagnostics.controls_every"}, metrics=("pmi",),
           cost_factor=1.25),
    Method("sdpo", "self-distillation toward the policy re-prompted with a successful sibling",
           teacher_context="reprompt", target="raw", distill="with_context", needs_answer=True,
           groups=True, siblings=True, hybrid=True, keys=DISTILL_KEYS | PG_KEYS | HYBRID_KEYS,
           metrics=("sdpo",)),
    Method("grpo", "GRPO/DAPO: clipped policy gradient with group-relative advantages",
           policy_gradient="response", needs_answer=True, groups=True, teachers=("fixed",),
           keys=PG_KEYS, metrics=("grpo",)),
    Method("srpo", "SDPO distillation (entropy-weighted) on routed rows, GRPO on the others",
           teacher_context="reprompt", target="raw", distill="routed", policy_gradient="unrouted",
           needs_answer=True, groups=True, siblings=True, token_weights="teacher_entropy",
           keys=DISTILL_KEYS | PG_KEYS | {"method.entropy_beta"}, metrics=("grpo", "sdpo")),
)}

MODIFIERS: dict[str, Modifier] = {
    "antisd": Modifier("antisd", "method.antisd", ("grpo",),
                       "anti-self-distillation advantage: sg(phi(log pi(y|x,c) - log pi(y|x))) added "
                       "to the GRPO advantage, gated by the sibling context's entropy",
                       "the GRPO advantage"),
}

# every key some method reads; a key in here that the chosen method does not read is refused
GOVERNED_KEYS = frozenset().union(*(m.keys for m in METHODS.values()), ANTISD_KEYS)


def get(name: str, *, modifiers: tuple[str, ...] = ()) -> Method:
    """The record of ``name`` with ``modifiers`` (MODIFIERS names) applied; ValueError names the
    valid choices."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    method = METHODS[name]
    for mod in modifiers:
        modifier = MODIFIERS[mod]
        if name not in modifier.applies_to:
            raise ValueError(f"{modifier.flag} ({modifier.name}) applies to method "
                             f"{' or '.join(modifier.applies_to)}, not {name}")
        method = modifier.apply(method)
    return method


def target_name(method: Method, teacher: str) -> str | None:
    """The registry target a step builds: the method's, or ``trust_region`` for that teacher."""
    if not method.distills:
        return None
    return "trust_region" if teacher == "trust_region" else method.target


def takes_pg(method: Method, hybrid_lambda: float) -> bool:
    """Whether a step of ``method`` computes group advantages and a policy-gradient loss: its
    record routes tokens to one, or it is hybrid and ``hybrid_lambda`` (lambda) is above 0."""
    return method.uses_pg or (method.hybrid and hybrid_lambda > 0)


def diagnostics_on(method: Method, requested: bool) -> bool:
    """Whether the PMI diagnostics (and their reference-only pass) run."""
    return method.diagnostics == "always" or (method.diagnostics == "optional" and requested)


def of(method_cfg) -> Method:
    """The record a ``method`` config section selects (its name and the modifier flags it sets)."""
    mods = tuple(n for n, m in MODIFIERS.items() if getattr(method_cfg, m.flag.split(".", 1)[1], False))
    return get(method_cfg.name, modifiers=mods)
