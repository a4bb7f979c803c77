"""Loss aggregation that does not depend on how the global batch is split.

``token_mean`` divides by the number of valid tokens of the GLOBAL batch, so summing the values
of every micro-batch / rank gives exactly the global token mean (methods.md section 1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(values_B_T: Tensor, mask_B_T: Tensor) -> None:
    if values_B_T.shape != mask_B_T.shape:
        raise ValueError(f"values {tuple(values_B_T.shape)} and mask {tuple(mask_B_T.shape)} must match")


def token_mean(values_B_T: Tensor, mask_B_T: Tensor, *, num_tokens_global: int | float | Tensor | None = None) -> Tensor:
    """``sum(values * mask) / num_tokens_global`` (scalar). Without ``num_tokens_global`` the local
    ``mask.sum()`` is used (then it is the plain local mean). A zero denominator gives 0."""
    _check(values_B_T, mask_B_T)
    m = mask_B_T.bool()
    total = torch.where(m, values_B_T, torch.zeros_like(values_B_T)).sum()
    denom = m.sum() if num_tokens_global is None else torch.as_tensor(num_tokens_global)
    denom = denom.to(total.dtype).clamp(min=1.0)
    return total / denom


def sequence_mean(values_B_T: Tensor, mask_B_T: Tensor, *, num_sequences_global: int | float | Tensor | None = None) -> Tensor:
    """Mean over sequences of each sequence's token mean (option; not the default). Sequences
    with no valid token contribute 0; the divisor is ``num_sequences_global`` or B."""
    _check(values_B_T, mask_B_T)
    m = mask_B_T.bool()
    per_seq = torch.where(m, values_B_T, torch.zeros_like(values_B_T)).sum(-1)
    per_seq = per_seq / m.sum(-1).to(per_seq.dtype).clamp(min=1.0)
    denom = values_B_T.shape[0] if num_sequences_global is None else num_sequences_global
    return per_seq.sum() / torch.as_tensor(denom, dtype=per_seq.dtype).clamp(min=1.0)


AGGREGATIONS = {"token": token_mean, "sequence": sequence_mean}


def aggregate(values_B_T: Tensor, mask_B_T: Tensor, *, mode: str = "token", num_global: int | float | Tensor | None = None) -> Tensor:
    """Dispatch to ``token_mean`` (default) or ``sequence_mean`` by name."""
    if mode == "token":
        return token_mean(values_B_T, mask_B_T, num_tokens_global=num_global)
    if mode == "sequence":
        return sequence_mean(values_B_T, mask_B_T, num_sequences_global=num_global)
    raise KeyError(f"unknown aggregation {mode!r}; valid: {sorted(AGGREGATIONS)}")
