"""Left-padded scoring batches: every response starts at one column in every role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from selfdistill.contexts.config import ContextError


class AlignmentError(ContextError):
    """The response ids of two roles differ (the distillation would compare different tokens)."""


@dataclass(frozen=True)
class Dropped:
    """A row removed by ``over_length="drop"``: its position in the input and why."""

    index: int
    example_id: str
    role: str
    reason: str


@dataclass
class PromptBatch:
    """Generation prompts of one role: ``ids[k]`` is the prompt of input row ``kept[k]``."""

    role: str
    ids: list[list[int]]
    kept: list[int]
    dropped: list[Dropped] = field(default_factory=list)


@dataclass
class ScoringBatch:
    """Prompt + response ids of one role, ready for a forward pass.

    Prompts are LEFT-padded so every response starts at column ``response_start``; responses are
    right-padded with the pad id. Logits at columns ``[response_start - 1, response_start - 1 + T)``
    predict the T response tokens.

    Attributes:
        role: the role rendered.
        ids_B_L: token ids, long [B, L] with L = response_start + T.
        attention_mask_B_L: 1 on real tokens, 0 on padding, long [B, L].
        position_ids_B_L: cumsum(mask) - 1 clamped at 0, long [B, L].
        response_start: first response column (= longest prompt in the batch).
        response_ids_B_T: the responses, right-padded with the pad id, long [B, T].
        response_mask_B_T: 1 on real response tokens, bool [B, T].
        has_context_B: False for rows without a teacher context (SDPO sample with neither a
            successful sibling nor feedback: rendered with the student prompt, the loss skips it).
        kept: input row index of each batch row.
        dropped: rows removed by the over-length policy, with reasons.
    """

    role: str
    ids_B_L: torch.Tensor
    attention_mask_B_L: torch.Tensor
    position_ids_B_L: torch.Tensor
    response_start: int
    response_ids_B_T: torch.Tensor
    response_mask_B_T: torch.Tensor
    has_context_B: torch.Tensor
    kept: list[int]
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def loss_mask_B_T(self) -> torch.Tensor:
        """Response tokens that carry a loss: the response mask of rows that have a context."""
        return self.response_mask_B_T & self.has_context_B[:, None]


def assemble(
    role: str,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    has_context: Sequence[bool],
    kept: list[int],
    dropped: list[Dropped],
    pad_id: int,
) -> ScoringBatch:
    """Pad prompts on the left and responses on the right into one ScoringBatch."""
    prompt_len = max((len(p) for p in prompts), default=0)
    response_len = max((len(r) for r in responses), default=0)
    rows, masks = [], []
    for prompt, response in zip(prompts, responses):
        left = prompt_len - len(prompt)
        right = response_len - len(response)
        rows.append([pad_id] * left + list(prompt) + list(response) + [pad_id] * right)
        masks.append([0] * left + [1] * (len(prompt) + len(response)) + [0] * right)
    width = prompt_len + response_len
    ids_B_L = torch.tensor(rows, dtype=torch.long).reshape(len(rows), width)
    mask_B_L = torch.tensor(masks, dtype=torch.long).reshape(len(rows), width)
    position_ids_B_L = (mask_B_L.cumsum(-1) - 1).clamp(min=0)
    return ScoringBatch(
        role=role,
        ids_B_L=ids_B_L,
        attention_mask_B_L=mask_B_L,
        position_ids_B_L=position_ids_B_L,
        response_start=prompt_len,
        response_ids_B_T=ids_B_L[:, prompt_len:],
        response_mask_B_T=mask_B_L[:, prompt_len:].bool(),
        has_context_B=torch.tensor(list(has_context), dtype=torch.bool),
        kept=list(kept),
        dropped=list(dropped),
    )


def check_alignment(batches: Mapping[str, ScoringBatch] | Sequence[ScoringBatch]) -> None:
    """Raise AlignmentError unless every batch scores the same rows and the same response ids."""
    items = list(batches.values()) if isinstance(batches, Mapping) else list(batches)
    if len(items) < 2:
        return
    first = items[0]
    for other in items[1:]:
        where = f"roles {first.role!r} and {other.role!r}"
        if first.kept != other.kept:
            raise AlignmentError(
                f"{where} keep different rows ({first.kept} vs {other.kept}); build them together "
                "with Renderer.scoring_batches so a row dropped in one role is dropped in all"
            )
        if first.response_mask_B_T.shape != other.response_mask_B_T.shape or not torch.equal(
            first.response_mask_B_T, other.response_mask_B_T
        ):
            raise AlignmentError(f"{where} have different response lengths")
        same = (first.response_ids_B_T == other.response_ids_B_T) | ~first.response_mask_B_T
        if not bool(same.all()):
            row = int((~same).any(-1).nonzero()[0])
            raise AlignmentError(
                f"{where} have different response ids in batch row {row} "
                f"(input row {first.kept[row]})"
            )
