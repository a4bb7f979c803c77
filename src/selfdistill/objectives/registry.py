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


@register_target("purified", roles=("teacher", "refonly", "anchor"))
def purified_target(logits: Mapping[str, Tensor], **kwargs) -> Tensor:
    """Purified OPSD: see :func:`purified_target_logprobs` for the keywords."""
    return purified_target_logprobs(logits["teacher"], logits["refonly"], logits["anchor"], **kwargs)


@register_target("trust_region", roles=("teacher", "student"))
def trust_region_target(logits: Mapping[str, Tensor], *, r: float, temperature: float = 1.0) -> Tensor:
    """SDPO trust region: log-softmax of ``lerp(teacher, student, r) / tau`` (student detached)."""
    return log_probs(trust_region_logits(logits["teacher"], logits["student"], r), temperature=temperature)


register_loss("distill")(generalized_jsd)
register_loss("grpo")(clipped_pg_loss)
register_loss("srpo")(srpo_loss)


def make_target_fn(name: str, **kwargs) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """The target named ``name`` with its keywords bound; keeps the ``roles`` attribute."""
    fn = TARGETS[name]
    bound = functools.partial(fn, **kwargs)
    bound.roles = fn.roles  # type: ignore[attr-defined]
    return bound
