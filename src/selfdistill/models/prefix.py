"""No-grad passes of one model over several contexts that share prompt prefixes.

Purified OPSD scores each response under three contexts with the same frozen weights: privileged
(q + r), reference-only (r) and base (q). Their prompts share the chat header, and the privileged
and base prompts also share the whole question. ``shared_prefix_hidden`` builds a prefix trie over
the roles' prompts (per row), runs each shared prefix once, keeps its keys/values, and runs only
the remaining prompt tokens and the response of each role on top of them. The result equals one
``response_hidden`` per role (same positions, same masks; tests compare in float64).

Layout of a row in a pass on top of a prefix: the prefix's columns (from the cache), then this
segment left-padded to the longest in the batch. Padding in the middle is masked like padding on
the left, and positions continue from the row's own prefix length, so rows of different prefix
lengths share a batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfdistill.models.forward import ForwardInputs, decoder, length_multiple, pad_columns
from selfdistill.models.lora import adapter_compute


@dataclass
class _Op:
    """One forward: extend prefix ``parent`` by per-row ``tokens`` (-> node ``node``), or, with
    ``batch`` set, run the rest of that role's prompt plus its response on top of ``parent``."""

    parent: int
    node: int
    tokens: list[list[int]]
    batch: int | None = None


def prompts(inputs: ForwardInputs) -> list[list[int]]:
    """The real (unpadded) prompt tokens of each row of a left-padded batch."""
    ids, mask, start = inputs.ids_B_L, inputs.attention_mask_B_L, inputs.response_start
    return [ids[i, :start][mask[i, :start].bool()].tolist() for i in range(ids.shape[0])]


def _lcp(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b)) - 1  # keep one prompt token for the last pass: it predicts y_0
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return max(k, 0)


def plan(prompts: list[list[list[int]]]) -> list[_Op]:
    """Forwards of the prefix trie over ``prompts[role][row]`` (depth-first, parents first)."""
    ops: list[_Op] = []
    B = len(prompts[0])

    def walk(parent: int, depth: list[int], members: list[int]) -> None:
        if len(members) == 1:
            m = members[0]
            ops.append(_Op(parent, -1, [prompts[m][i][depth[i]:] for i in range(B)], batch=m))
            return
        lcp = lambda a, b: [_lcp(prompts[a][i], prompts[b][i]) for i in range(B)]  # noqa: E731
        shared = [min(x) for x in zip(*(lcp(members[0], m) for m in members[1:]))]
        node = parent
        if any(s > d for s, d in zip(shared, depth)):
            node = len(ops) + 1
            ops.append(_Op(parent, node, [prompts[members[0]][i][depth[i]:shared[i]] for i in range(B)]))
        groups: list[list[int]] = []
        for m in members:  # m joins a group whose first member shares more than ``shared`` in every row
            home = next((g for g in groups if all(x > s for x, s in zip(lcp(g[0], m), shared))), None)
            if home is None:
                groups.append([m])
            else:
                home.append(m)
        if len(groups) == 1:
            groups = [[m] for m in members]
        for g in groups:
            walk(node, shared, g)

    walk(0, [0] * B, list(range(len(prompts))))
    return ops


def plan_cost(ops: list[_Op], T: int) -> int:
    """Token columns the plan runs (rows x padded segment length): the CPU cost, roughly."""
    cost = 0
    for op in ops:
        width = max((len(t) for t in op.tokens), default=0) + (T if op.batch is not None else 0)
        cost += len(op.tokens) * width
    return cost


@dataclass
class _Prefix:
    kv: list[tuple[Tensor, Tensor]]  # per layer, [B, kv_heads, P, head_dim]
    mask_B_P: Tensor  # long
    lengths: list[int]  # real tokens per row


def _segment(tokens: list[list[int]], lengths: list[int], device, multiple: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Left-padded ids, mask and positions (continuing from ``lengths``) of per-row tokens, the
    width rounded up to ``multiple`` (masked columns: a cached segment gets a bucketed shape)."""
    width = max(len(t) for t in tokens)
    width += -width % multiple
    ids = torch.zeros(len(tokens), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    pos = torch.zeros_like(ids)
    for i, (t, n) in enumerate(zip(tokens, lengths)):
        if t:
            ids[i, width - len(t):] = torch.tensor(t)
            mask[i, width - len(t):] = 1
            pos[i, width - len(t):] = torch.arange(n, n + len(t))
    return ids.to(device), mask.to(device), pos.to(device)


def _cache(prefix: _Prefix):
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (k, v) in enumerate(prefix.kv):
        cache.update(k, v, layer)
    return cache


def _layers(cache) -> list[tuple[Tensor, Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers < 4.56


def _forward(module: nn.Module, prefix: _Prefix | None, ids, mask, pos, keep: bool):
    """Decoder body over one segment on top of ``prefix``: (last hidden state, the cache after
    the segment or None, the mask of prefix + segment)."""
    from transformers import DynamicCache

    body = decoder(module)
    if not keep:  # a final segment (cached ones are bucketed by masked left padding in _segment)
        ids, mask, pos = pad_columns(module, ids, mask, pos)
    full_mask = mask if prefix is None else torch.cat([prefix.mask_B_P, mask], dim=1)
    cache = _cache(prefix) if prefix is not None else (DynamicCache() if keep else None)
    # transformers 5 calls it ``cache``; 4.x ``past_key_values``
    name = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    with adapter_compute(module):
        out = body(input_ids=ids, attention_mask=full_mask, position_ids=pos, use_cache=keep, **{name: cache})
    return out.last_hidden_state, cache, full_mask


def run_plan(module: nn.Module, ops: list[_Op], args: list[ForwardInputs]) -> list[Tensor]:
    """Execute ``plan`` (call under ``torch.no_grad()``); ``hidden_B_T_H`` per role of ``args``."""
    device = args[0].ids_B_L.device
    B = args[0].rows
    prefixes: dict[int, _Prefix | None] = {0: None}
    out: list[Tensor | None] = [None] * len(args)
    for op in ops:
        parent = prefixes[op.parent]
        lengths = parent.lengths if parent is not None else [0] * B
        if op.batch is None:
            ids, mask, pos = _segment(op.tokens, lengths, device, length_multiple(module))
            _, cache, full_mask = _forward(module, parent, ids, mask, pos, keep=True)
            grown = [n + len(t) for n, t in zip(lengths, op.tokens)]
            prefixes[op.node] = _Prefix(_layers(cache), full_mask, grown)
            continue
        role = args[op.batch]
        r_mask, start, T = role.attention_mask_B_L, role.response_start, role.T
        resp = role.ids_B_L[:, start:]
        ids, mask, pos = _segment(op.tokens, lengths, device)
        width = ids.shape[1]
        resp_mask = r_mask[:, start:]
        resp_pos = torch.tensor([n + len(t) for n, t in zip(lengths, op.tokens)], device=device)[:, None]
        resp_pos = resp_pos + torch.arange(T, device=device)[None]
        hidden, _, _ = _forward(module, parent, torch.cat([ids, resp], 1), torch.cat([mask, resp_mask], 1),
                                torch.cat([pos, resp_pos], 1), keep=False)
        out[op.batch] = hidden[:, width - 1 : width - 1 + T]
    return out  # type: ignore[return-value]


def shareable(module: nn.Module) -> bool:
    """Whether every attention layer is full causal attention (sliding-window, linear or hybrid
    layers keep state that a reused prefix cache does not reproduce here)."""
    config = module.config
    types = getattr(config, "layer_types", None)
    if types is not None and any(t != "full_attention" for t in types):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return True


def shared_prefix_hidden(module: nn.Module, args: list[ForwardInputs]) -> list[Tensor]:
    """``response_hidden`` of ``module`` for every role in ``args`` (same rows and responses), with
    shared prompt prefixes run once. Call under ``torch.no_grad()``; ``hidden_B_T_H`` per role."""
    return run_plan(module, plan([prompts(a) for a in args]), args)
