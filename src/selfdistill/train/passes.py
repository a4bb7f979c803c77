"""Forward passes of a training step: the student scorer (with grad), no-grad passes of the
teacher handles (batched when they share weights), and per-position reductions over hidden
states that never keep ``[B, T, V]`` logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from selfdistill.models import ForwardInputs, Teacher, response_hidden



class ResponseScorer(nn.Module):
    """``model`` -> response hidden states; the module accelerate wraps (DDP) for the student pass.

    Going through this wrapper's ``forward`` lets DistributedDataParallel see the pass that needs
    gradients, while teacher passes call the unwrapped model directly under ``no_grad``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def _no_split_modules(self) -> list[str] | None:
        """The wrapped model's decoder-layer classes: FSDP's transformer auto-wrap policy reads them
        from the module it prepares, which is this one."""
        return getattr(self.model, "_no_split_modules", None)

    def forward(self, inputs: ForwardInputs) -> Tensor:
        return response_hidden(self.model, inputs)


@dataclass
class Passes:
    """The models a step needs: the student scorer (grad), the teacher handle, the frozen base."""

    scorer: nn.Module
    model: nn.Module  # unwrapped student
    teacher: Teacher | None  # scores the method's teacher context (privileged / reprompt)
    base: Teacher | None  # fixed: frozen initial weights, for the refonly / base passes
    live: Teacher | None  # the student's weights without grad (trust_region, anti-sd)
    chunk_size: int = 0
    share_prefixes: bool = True


def forward_inputs(batch) -> ForwardInputs:
    """The ``models.ForwardInputs`` of a ``contexts.ScoringBatch``."""
    return ForwardInputs.of(batch)


def stacked_hidden(handle, batches: list) -> list[Tensor]:
    """One no-grad forward of ``handle`` over several role batches of the same rows and responses.

    Prompts are left-padded to the longest ``response_start`` (masked, positions unchanged), so
    the response columns line up and one bigger batch replaces several small passes.
    """
    if len(batches) == 1:
        return [handle.hidden(forward_inputs(batches[0]))]
    start = max(b.response_start for b in batches)
    T = batches[0].response_ids_B_T.shape[1]
    pad = lambda x, b, v: torch.nn.functional.pad(x, (start - b.response_start, 0), value=v)  # noqa: E731
    ids = torch.cat([pad(b.ids_B_L, b, 0) for b in batches])
    mask = torch.cat([pad(b.attention_mask_B_L, b, 0) for b in batches])
    pos = torch.cat([pad(b.position_ids_B_L, b, 0) for b in batches])
    hidden = handle.hidden(ForwardInputs(ids, mask, pos, start, T))
    return list(hidden.split([b.ids_B_L.shape[0] for b in batches]))


# Largest share of padded (wasted) tokens accepted when stacking passes into one batch. On a CPU
# the cost is proportional to padded tokens (a batch of 8 rows already fills the cores), so only
# equal-length batches are stacked; on an accelerator a bigger batch is cheaper per token, which a
# small waste buys.
MAX_STACK_WASTE = 0.15
CPU_STACK_WASTE = 0.0


def stack_groups(batches: list, max_waste: float = MAX_STACK_WASTE) -> list[list[int]]:
    """Indices of ``batches`` grouped for stacked passes: longest first, a batch joins the current
    group while padded tokens stay within ``max_waste`` of the group's total (rows x columns)."""
    size = lambda b: (b.ids_B_L.shape[0], b.response_start)  # noqa: E731  (rows, prompt columns)
    order = sorted(range(len(batches)), key=lambda i: -size(batches[i])[1])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            members = groups[-1] + [i]
            T = batches[i].response_ids_B_T.shape[1]
            start = max(size(batches[j])[1] for j in members)
            real = sum(size(batches[j])[0] * (size(batches[j])[1] + T) for j in members)
            padded = sum(size(batches[j])[0] for j in members) * (start + T)
            if padded - real <= max_waste * padded:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


# Smallest share of cost a shared-prefix plan must save over separate passes to be used.
MIN_PREFIX_SAVING = 0.05
# Fixed cost of one forward call in token columns: on SmolLM2-135M at 2 CPU threads a no-grad
# pass of one row costs 42 ms + 0.41 ms per column (benchmarks/components.py, 2 to 385 columns;
# 34 ms + 0.31 ms in a faster hour), so a call is worth ~100 columns. A plan splits each row into more calls (shared segments, then one per context), which
# only pays when the shared columns outweigh them (e.g. 8 rows per micro-batch, not 1).
CALL_COLUMNS = 100


def prefix_plan(handle, batches: list, separate_calls: int | None = None) -> list | None:
    """The shared-prefix plan (``models.prefix``) of several contexts of the same rows under one
    handle, or None when it saves less than ``MIN_PREFIX_SAVING`` of the cost (token columns +
    ``CALL_COLUMNS`` per forward call) of ``separate_calls`` passes (default one per batch), or
    cannot apply."""
    from selfdistill.models import prefix

    if len(batches) < 2 or len({tuple(b.kept) for b in batches}) > 1 or not handle.shares_prefixes():
        return None
    ops = prefix.plan([prefix.prompts(forward_inputs(b)) for b in batches])
    calls = len(batches) if separate_calls is None else separate_calls
    separate = sum(b.ids_B_L.numel() for b in batches) + CALL_COLUMNS * calls
    shared = prefix.plan_cost(ops, batches[0].response_ids_B_T.shape[1]) + CALL_COLUMNS * len(ops)
    return ops if shared <= (1 - MIN_PREFIX_SAVING) * separate else None


def run_passes(plan: dict[str, tuple], max_waste: float | None = None, share_prefixes: bool = True) -> dict[str, Tensor]:
    """name -> (handle, batch) -> name -> hidden. Passes sharing a handle run their common prompt
    prefixes once (``prefix_plan``) when ``share_prefixes`` and that saves cost; otherwise
    they run as one batch when their prompt lengths are close enough (``stack_groups``;
    ``max_waste`` default: 0 on a CPU, ``MAX_STACK_WASTE`` elsewhere)."""
    by_handle: dict[int, list[str]] = {}
    for name, (handle, _) in plan.items():
        by_handle.setdefault(id(handle), []).append(name)
    hidden = {}
    for names in by_handle.values():
        handle = plan[names[0]][0]
        batches = [plan[n][1] for n in names]
        waste = max_waste
        if waste is None:
            waste = CPU_STACK_WASTE if batches[0].ids_B_L.device.type == "cpu" else MAX_STACK_WASTE
        groups = stack_groups(batches, waste)
        ops = prefix_plan(handle, batches, len(groups)) if share_prefixes else None
        if ops is not None:
            hidden.update(zip(names, handle.hidden_shared(ops, [forward_inputs(b) for b in batches])))
            continue
        for group in groups:
            for k, h in zip(group, stacked_hidden(handle, [batches[k] for k in group])):
                hidden[names[k]] = h
    return hidden


@torch.no_grad()
def per_position(hidden_B_T_H: Tensor, layer, mask_B_T: Tensor, chunk: int,
                 fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn(logits_N_V) -> [N]`` over the valid positions, ``chunk`` at a time, projecting with
    ``layer`` (``models.OutputLayer``); [B, T]."""
    idx = mask_B_T.reshape(-1).nonzero().squeeze(1)
    flat = hidden_B_T_H.reshape(-1, hidden_B_T_H.shape[-1])[idx]
    step = chunk or max(1, flat.shape[0])
    vals = [fn(layer.logits(flat[i : i + step])) for i in range(0, flat.shape[0], step)]
    out = torch.zeros(mask_B_T.numel(), dtype=torch.float32, device=hidden_B_T_H.device)
    if vals:
        out[idx] = torch.cat(vals).float()
    return out.view(mask_B_T.shape)


def entropy(logits_N_V: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy [N] in nats of ``softmax(logits / temperature)``: at the distillation tau it is the
    entropy of the distribution the target is built from."""
    logp = (logits_N_V.float() / temperature).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def token_logprobs(hidden_B_T_H: Tensor, layer, ids_B_T: Tensor, chunk: int) -> Tensor:
    """``log pi(y_t | ...)`` of the sampled ids [B, T] with gradients (to the hidden states and the
    output ``layer``, a ``models.OutputLayer``); each chunk of positions is recomputed in backward
    so no [B, T, V] tensor is kept."""
    T = hidden_B_T_H.shape[1]
    step = chunk or T

    def piece(h, ids):
        logits = layer.logits(h).float()
        return logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)

    parts = []
    for t in range(0, T, step):
        h, ids = hidden_B_T_H[:, t : t + step], ids_B_T[:, t : t + step]
        parts.append(checkpoint(piece, h, ids, use_reentrant=False) if chunk else piece(h, ids))
    return torch.cat(parts, dim=1) if parts else hidden_B_T_H.new_zeros(hidden_B_T_H.shape[:2])
