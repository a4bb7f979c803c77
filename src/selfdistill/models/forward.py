"""Forward passes that return response hidden states / logits without [B, L, V] prompt logits.

The renderer left-pads every batch so all responses start at one column ``response_start``. The
hidden state at column ``c`` predicts the token at ``c + 1``, so the T response tokens are
predicted by columns ``[response_start - 1, response_start - 1 + T)``. We run the decoder body
(final norm included) and apply the output layer to those T columns only: the prompt part of a
long teacher context never becomes vocabulary-sized logits, and chunked objectives can use
``hidden_B_T_H`` with ``output_weight(model)`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from selfdistill.models.lora import adapter_compute

# Config fields of architectures whose logits are not plain ``hidden @ W.T + b`` (besides the
# Gemma-style soft-cap, which is honoured).
_UNSUPPORTED_LOGIT_TRANSFORMS = ("logit_scale", "logits_scaling", "output_multiplier_scale")


def decoder(model: nn.Module) -> nn.Module:
    """The transformer body (embeddings, blocks, final norm) of a causal LM, through peft."""
    body = model.get_decoder()
    if body is None or body is model:
        raise NotImplementedError(f"{type(model).__name__} exposes no decoder body (get_decoder())")
    return body


# attribute of a decoder body: its passes are padded on the right to a multiple of this many columns
_MULTIPLE_ATTR = "selfdistill_length_multiple"


def set_length_multiple(model: nn.Module, multiple: int) -> None:
    """Pad every later ``response_hidden`` (and shared-prefix final segment) of ``model`` on the
    right to a multiple of ``multiple`` columns; 1 turns it off.

    Causal attention keeps the real columns' outputs unchanged (only rounding may differ). It pays
    on a CPU: oneDNN builds and caches kernels per matrix shape, so a new sequence length costs a
    build and memory that is kept (20 SmolLM2 LoRA fwd+bwd passes of random length: 0.71 vs
    0.77 s per pass, +0.24 vs +0.37 GB resident, ``benchmarks/components.py``). Set on the decoder
    body, so peft wrappers and deep copies (frozen / EMA teachers) share it.
    """
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"length_multiple must be an integer >= 1, got {multiple!r}")
    setattr(decoder(model), _MULTIPLE_ATTR, multiple)


def length_multiple(model: nn.Module) -> int:
    """The model's length multiple (``set_length_multiple``), 1 when unset."""
    return getattr(decoder(model), _MULTIPLE_ATTR, 1)


def pad_columns(
    model: nn.Module, ids_B_L: torch.Tensor, mask_B_L: torch.Tensor, position_ids_B_L: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, mask, positions)`` with columns appended on the right up to the model's length
    multiple (``set_length_multiple``; unchanged when unset). The new columns repeat each row's
    last id and position and are attended (mask 1), so an all-ones mask stays all ones; no real
    column can see them under causal attention."""
    multiple = length_multiple(model)
    B, L = ids_B_L.shape
    extra = -L % multiple
    if extra == 0:
        return ids_B_L, mask_B_L, position_ids_B_L
    return (
        torch.cat([ids_B_L, ids_B_L[:, -1:].expand(B, extra)], dim=1),
        torch.cat([mask_B_L, mask_B_L.new_ones(B, extra)], dim=1),
        torch.cat([position_ids_B_L, position_ids_B_L[:, -1:].expand(B, extra)], dim=1),
    )


def output_weight(model: nn.Module) -> torch.Tensor:
    """The output projection ``W_V_H`` (lm_head, tied or not), through peft wrappers."""
    return model.get_output_embeddings().weight


def output_bias(model: nn.Module) -> torch.Tensor | None:
    """The output projection's bias ``b_V``, or None (the usual case)."""
    return getattr(model.get_output_embeddings(), "bias", None)


def response_hidden(
    model: nn.Module,
    ids_B_L: torch.Tensor,
    attention_mask_B_L: torch.Tensor,
    position_ids_B_L: torch.Tensor,
    response_start: int,
    T: int,
) -> torch.Tensor:
    """Final-norm hidden states ``hidden_B_T_H`` at the columns that predict the T response tokens.

    Gradients flow when called outside ``torch.no_grad()``. Raises ValueError when the response
    tokens ``[response_start, response_start + T)`` do not fit in L.
    """
    L = ids_B_L.shape[1]
    if response_start < 1 or T < 0 or response_start + T > L:
        raise ValueError(
            f"response_start={response_start}, T={T} do not fit a batch of length L={L}: "
            "need 1 <= response_start and response_start + T <= L"
        )
    ids_B_L, attention_mask_B_L, position_ids_B_L = pad_columns(
        model, ids_B_L, attention_mask_B_L, position_ids_B_L
    )
    with adapter_compute(model):
        out = decoder(model)(
            input_ids=ids_B_L,
            attention_mask=attention_mask_B_L,
            position_ids=position_ids_B_L,
            use_cache=False,
        )
    return out.last_hidden_state[:, response_start - 1 : response_start - 1 + T]


def logits_from_hidden(model: nn.Module, hidden_B_T_H: torch.Tensor) -> torch.Tensor:
    """``hidden @ W.T (+ b)``, then the config's final-logit soft-cap if it has one."""
    config = model.config
    for field in _UNSUPPORTED_LOGIT_TRANSFORMS:
        if getattr(config, field, None) not in (None, 1, 1.0):
            raise NotImplementedError(
                f"{type(model).__name__} scales its logits ({field}={getattr(config, field)}); "
                "response_logits does not reproduce that yet: add it to models/forward.py"
            )
    logits = nn.functional.linear(hidden_B_T_H, output_weight(model), output_bias(model))
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def response_logits(
    model: nn.Module,
    ids_B_L: torch.Tensor,
    attention_mask_B_L: torch.Tensor,
    position_ids_B_L: torch.Tensor,
    response_start: int,
    T: int,
) -> torch.Tensor:
    """Logits ``logits_B_T_V`` predicting the T response tokens (same as the model's own logits)."""
    hidden_B_T_H = response_hidden(
        model, ids_B_L, attention_mask_B_L, position_ids_B_L, response_start, T
    )
    return logits_from_hidden(model, hidden_B_T_H)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off inside the block; the previous train/eval flag of every submodule is restored."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training
