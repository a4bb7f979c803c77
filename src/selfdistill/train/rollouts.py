"""Rollout and scoring: sample responses for this process's prompts, reward them, pick siblings.

Groups never straddle processes (all n rollouts of a prompt are sampled on one process), so group
advantages and SDPO siblings are computed locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from selfdistill.types import Example

from selfdistill import methods

from .config import TrainConfig


@dataclass
class Rollouts:
    """One process's samples for one step, one entry per sample (n consecutive per prompt).

    Attributes:
        examples: the example of each sample.
        group_ids: global prompt index of each sample (its group).
        response_ids: sampled token ids.
        texts: decoded responses.
        truncated: True when a response hit max_new_tokens.
        rewards: 1.0 / 0.0 per sample, or None when nothing was scored.
        siblings: SDPO/SRPO: the first successful OTHER sample of the group (text) or None.
        advantages_B: GRPO/SRPO group advantages (float32 [B]) or None.
        zero_signal_fraction: share of groups whose rewards are all equal (no PG signal).
        overlong_B: DAPO overlong penalty added to each reward before the advantages (float64
            [B], <= 0), or None when the shaping is off.
    """

    examples: list[Example]
    group_ids: list[int]
    response_ids: list[list[int]]
    texts: list[str]
    truncated: list[bool]
    rewards: list[float] | None = None
    siblings: list[str | None] | None = None
    advantages_B: torch.Tensor | None = None
    zero_signal_fraction: float | None = None
    overlong_B: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def select(self, rows: Sequence[int]) -> "Rollouts":
        """The samples ``rows`` (whole groups, so advantages and siblings stay valid);
        ``zero_signal_fraction`` is recomputed from the kept rewards."""
        rows = list(rows)
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]  # noqa: E731
        idx = torch.tensor(rows, dtype=torch.long)
        out = Rollouts(pick(self.examples), pick(self.group_ids), pick(self.response_ids), pick(self.texts),
                       pick(self.truncated), pick(self.rewards), pick(self.siblings),
                       None if self.advantages_B is None else self.advantages_B[idx],
                       None, None if self.overlong_B is None else self.overlong_B[idx])
        if self.zero_signal_fraction is not None:
            out.zero_signal_fraction = len(flat_groups(out)) / max(len(set(out.group_ids)), 1)
        return out

    @staticmethod
    def concat(parts: Sequence["Rollouts"]) -> "Rollouts":
        """The samples of ``parts`` in order (group ids must already be distinct)."""
        first = parts[0]
        cat = lambda name: (None if getattr(first, name) is None  # noqa: E731
                            else [x for p in parts for x in getattr(p, name)])
        tensor = lambda name: (None if getattr(first, name) is None  # noqa: E731
                               else torch.cat([getattr(p, name) for p in parts]))
        out = Rollouts(cat("examples"), cat("group_ids"), cat("response_ids"), cat("texts"), cat("truncated"),
                       cat("rewards"), cat("siblings"), tensor("advantages_B"), None, tensor("overlong_B"))
        if first.zero_signal_fraction is not None:
            out.zero_signal_fraction = len(flat_groups(out)) / max(len(set(out.group_ids)), 1)
        return out


def flat_groups(ro: Rollouts) -> list[int]:
    """Group ids (in order of appearance) whose rewards are all equal: all 0 or all 1 with binary
    rewards, so their group advantage is 0 (DAPO dynamic sampling drops them). Raw rewards, not the
    overlong-shaped ones, as DAPO's recipe filters on accuracy."""
    rewards: dict[int, list[float]] = {}
    for g, r in zip(ro.group_ids, ro.rewards or []):
        rewards.setdefault(g, []).append(r)
    return [g for g, rs in rewards.items() if max(rs) == min(rs)]


def sampling_params(cfg: TrainConfig, *, step: int, rank: int, batch: int = 0):
    """SamplingParams of a step; the seed depends on (seed, step, rank, batch) so resumes replay
    exactly. ``batch``: dynamic sampling's extra batches of a step (0: the first)."""
    from selfdistill.rollout import SamplingParams

    s = cfg.sampling
    greedy = s.temperature == 0
    return SamplingParams(
        temperature=1.0 if greedy else s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        max_new_tokens=s.max_new_tokens,
        seed=(cfg.seed * 1_000_003 + step * 1_009 + rank + batch * 7_919_111) % (2**31),
        do_sample=not greedy,
        n=s.rollouts_per_prompt,
    )


def needs_rewards(cfg: TrainConfig, examples: Sequence[Example]) -> bool:
    if methods.of(cfg.method).needs_answer:
        return True
    return cfg.rewards.for_all and all(e.answer for e in examples)


def sample(cfg: TrainConfig, backend, renderer, prompts: Sequence[Example], group_offset: int,
           *, step: int, rank: int, batch: int = 0) -> Rollouts:
    """Sample ``rollouts_per_prompt`` responses per prompt from the student context."""
    params = sampling_params(cfg, step=step, rank=rank, batch=batch)
    prompt_ids = [renderer.prompt_ids("student", ex) for ex in prompts]
    samples = backend.generate(prompt_ids, params)
    examples = [prompts[s.prompt_index] for s in samples]
    out = Rollouts(
        examples=examples,
        group_ids=[group_offset + s.prompt_index for s in samples],
        response_ids=[list(s.response_ids) for s in samples],
        texts=[s.text for s in samples],
        truncated=[bool(s.truncated) for s in samples],
    )
    return out


def reward(cfg: TrainConfig, reward_scorer, out: Rollouts) -> Rollouts:
    """Attach rewards (when the method needs them or answers exist), siblings and advantages."""
    examples = out.examples
    if reward_scorer is not None and needs_rewards(cfg, examples):
        out.rewards = [float(r) for r in reward_scorer.score(out.texts, [e.answer for e in examples])]
    method = methods.of(cfg.method)
    if method.siblings:
        from selfdistill.contexts import choose_siblings

        out.siblings = choose_siblings(out.texts, out.rewards, out.group_ids)
    if methods.takes_pg(method, cfg.objective.hybrid_lambda):
        from selfdistill.objectives import group_advantages, overlong_penalty

        n = cfg.sampling.rollouts_per_prompt
        rewards_G_N = torch.tensor(out.rewards, dtype=torch.float32).view(-1, n)
        if cfg.objective.overlong_buffer > 0:  # DAPO: the advantage sees the shaped reward
            out.overlong_B = overlong_penalty(
                torch.tensor([len(ids) for ids in out.response_ids]), max_len=cfg.sampling.max_new_tokens,
                buffer=cfg.objective.overlong_buffer, penalty=cfg.objective.overlong_penalty)
            shaped = torch.tensor(out.rewards, dtype=torch.float64) + out.overlong_B
            rewards_G_N = shaped.to(torch.float32).view(-1, n)
        adv = group_advantages(rewards_G_N, normalize_std=cfg.objective.adv_std_norm)
        out.advantages_B = adv.advantages_G_N.reshape(-1)
        out.zero_signal_fraction = adv.zero_signal_fraction
    return out


class FixedRollouts:
    """A rollout backend that returns pre-fixed responses (tests, split-equivalence checks).

    ``responses(tokenizer, prompt_ids, sample_index) -> list[int]`` gives each sample's response.
    Pass ``FixedRollouts.factory(responses)`` as the loop's ``rollout_backend``.
    """

    def __init__(self, tokenizer, responses) -> None:
        self.tokenizer = tokenizer
        self.responses = responses

    @classmethod
    def factory(cls, responses):
        return lambda model, tokenizer: cls(tokenizer, responses)

    def generate(self, prompt_ids, params, *, batch_size=None):
        from selfdistill.rollout import Sample

        out = []
        for i, ids in enumerate(prompt_ids):
            for j in range(params.n):
                resp = list(self.responses(self.tokenizer, ids, j))[: params.max_new_tokens]
                out.append(Sample(prompt_index=i, response_ids=resp,
                                  text=self.tokenizer.decode(resp, skip_special_tokens=True),
                                  truncated=self.tokenizer.eos_token_id not in resp,
                                  num_tokens=len(resp)))
        return out
