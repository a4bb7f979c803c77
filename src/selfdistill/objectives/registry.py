"""Config names -> objective functions (the verl ``register_*`` pattern).

- divergences: ``fn(student_logits, target_logprobs, **kw) -> [..., T]``
- targets: ``fn(logits: Mapping[role, Tensor], **kw) -> log-probs [..., V]``; each declares the
  roles whose logits it reads (``fn.roles``), so the trainer knows which passes to run
- losses: per-token loss functions ``-> [B, T]``
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

from torch import Tensor

from .divergences import forward_kl, generalized_jsd, reverse_kl
from .policy import clipped_pg_loss, srpo_loss
from .targets import purified_target_logprobs, raw_target_logprobs, trust_region_logits, log_probs


class Registry:
    """A named table of functions; unknown names raise a KeyError listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._fns: dict[str, Callable] = {}

    def register(self, name: str, **attrs) -> Callable[[Callable], Callable]:
        def deco(fn: Callable) -> Callable:
            if name in self._fns:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            for key, value in attrs.items():
                setattr(fn, key, value)
            self._fns[name] = fn
            return fn
        return deco

    def __getitem__(self, name: str) -> Callable:
        try:
            return self._fns[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._fns

    def names(self) -> list[str]:
        return sorted(self._fns)


DIVERGENCES = Registry("divergence")
TARGETS = Registry("target")
LOSSES = Registry("loss")
register_divergence = DIVERGENCES.register
register_target = TARGETS.register
register_loss = LOSSES.register

register_divergence("jsd")(generalized_jsd)
register_divergence("forward_kl")(forward_kl)
register_divergence("reverse_kl")(reverse_kl)


@register_target("raw", roles=("teacher",))
def raw_target(logits: Mapping[str, Tensor], *, temperature: float = 1.0) -> Tensor:
    """OPSD: the privileged teacher's log-probs."""
    return raw_target_logprobs(logits["teacher"], temperature=temperature)


def _purified_roles(anchor: str = "base", **_) -> tuple[str, ...]:
    return ("teacher", "refonly", "anchor") if anchor == "base" else ("teacher", "refonly", "student")


@register_target("purified", roles=("teacher", "refonly", "anchor"), roles_for=_purified_roles)
def purified_target(logits: Mapping[str, Tensor], *, anchor: str = "base", **kwargs) -> Tensor:
    """Purified OPSD. ``anchor="base"`` (paper: the frozen base on the question, role "anchor")
    or ``"student"`` (the detached student logits, saves a pass). Other keywords: see
    :func:`purified_target_logprobs`."""
    if anchor not in ("base", "student"):
        raise ValueError(f"purified anchor must be 'base' or 'student', got {anchor!r}")
    anchor_logits = logits["anchor"] if anchor == "base" else logits["student"]
    return purified_target_logprobs(logits["teacher"], logits["refonly"], anchor_logits, **kwargs)


@register_target("trust_region", roles=("teacher", "live"))
def trust_region_target(logits: Mapping[str, Tensor], *, r: float, temperature: float = 1.0) -> Tensor:
    """SDPO trust-region teacher: ``log_softmax(lerp(teacher, live, r) / tau)``.

    Both logit sets are on the TEACHER context (question + sibling / feedback), [..., V]:
    ``"teacher"`` is the reference teacher (the initial policy), ``"live"`` the current student's
    weights run without grad on that same context. r = 0 is the reference teacher, r = 1 the
    current policy given the privileged context. The question-only student pass ("student") is
    NOT an input: lerping toward it made r = 1 give loss 0 whatever the teacher (issue 19 item 6).
    """
    if "live" not in logits:
        raise KeyError(
            "trust_region target needs 'live': the current student's logits on the TEACHER context "
            "(same prompt as 'teacher', no grad). 'student' is the question-only pass and is not a "
            f"substitute; got roles {sorted(logits)}"
        )
    return log_probs(trust_region_logits(logits["teacher"], logits["live"], r), temperature=temperature)


register_loss("distill")(generalized_jsd)
register_loss("grpo")(clipped_pg_loss)
register_loss("srpo")(srpo_loss)


def make_target_fn(name: str, **kwargs) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """The target named ``name`` with its keywords bound; ``.roles`` lists the passes it reads
    ("student" = the detached student logits, always available)."""
    fn = TARGETS[name]
    bound = functools.partial(fn, **kwargs)
    roles_for = getattr(fn, "roles_for", None)
    bound.roles = roles_for(**kwargs) if roles_for else fn.roles  # type: ignore[attr-defined]
    return bound
