"""Forward passes that return response hidden states / logits without [B, L, V] prompt logits.

The renderer left-pads every batch so all responses start at one column ``response_start``. The
hidden state at column ``c`` predicts the token at ``c + 1``, so the T response tokens are
predicted by columns ``[response_start - 1, response_start - 1 + T)``. We run the decoder body
(final norm included) and apply the output layer to those T columns only: the prompt part of a
long teacher context never becomes vocabulary-sized logits, and chunked objectives can use
``hidden_B_T_H`` with ``output_layer(model)`` directly: the one output layer (weight, bias,
soft-cap) that training, scoring, evaluation and analysis all project with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from selfdistill.objectives.chunked import project

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


class OutputLayer(NamedTuple):
    """A model's output projection: ``logits = softcap(hidden @ weight_V_H.T + bias_V)``.

    ``softcap``: the Gemma-style ``cap * tanh(logits / cap)`` when the config sets
    ``final_logit_softcapping``, else None. Unpacks as ``(weight, bias, softcap)``.
    """

    weight_V_H: torch.Tensor
    bias_V: torch.Tensor | None = None
    softcap: float | None = None

    def logits(self, hidden_N_H: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., V]`` of hidden states ``[..., H]``."""
        return project(hidden_N_H, self.weight_V_H, self.bias_V, self.softcap)

    def detached(self) -> "OutputLayer":
        """The same layer without autograd history (for no-grad teacher projections)."""
        bias = None if self.bias_V is None else self.bias_V.detach()
        return OutputLayer(self.weight_V_H.detach(), bias, self.softcap)


def output_layer(model: nn.Module) -> OutputLayer:
    """The output layer of a causal LM (lm_head, tied or not, through peft wrappers): its weight,
    its bias (None for most models) and the config's final-logit soft-cap.

    Raises NotImplementedError for architectures whose logits are scaled in a way this layer does
    not reproduce (``logit_scale``, ``logits_scaling``, ...): training on such a model would use
    distributions that are not the model's own.
    """
    config = getattr(model, "config", None)
    for field in _UNSUPPORTED_LOGIT_TRANSFORMS:
        if getattr(config, field, None) not in (None, 1, 1.0):
            raise NotImplementedError(
                f"{type(model).__name__} scales its logits ({field}={getattr(config, field)}); "
                "selfdistill's output layer does not reproduce that yet: add it to "
                "models/forward.py output_layer"
            )
    head = model.get_output_embeddings()
    return OutputLayer(head.weight, getattr(head, "bias", None),
                       getattr(config, "final_logit_softcapping", None) or None)


@dataclass(frozen=True)
class ForwardInputs:
    """The inputs of one scoring pass: B rows of L columns, left-padded so that every row's
    response starts at column ``response_start`` and fills the ``T`` columns after it (responses
    shorter than T are right-padded, masked out).

    Attributes:
        ids_B_L: token ids (prompt + response) [B, L].
        attention_mask_B_L: 1 for real tokens, 0 for padding [B, L].
        position_ids_B_L: positions counted from each row's first real token [B, L].
        response_start: column of the first response token (the same for every row).
        T: response columns.
    """

    ids_B_L: torch.Tensor
    attention_mask_B_L: torch.Tensor
    position_ids_B_L: torch.Tensor
    response_start: int
    T: int

    @classmethod
    def of(cls, batch) -> "ForwardInputs":
        """The inputs of a ``contexts.ScoringBatch`` (T = its response columns)."""
        return cls(batch.ids_B_L, batch.attention_mask_B_L, batch.position_ids_B_L, batch.response_start,
                   batch.response_ids_B_T.shape[1])

    def to(self, device) -> "ForwardInputs":
        return ForwardInputs(self.ids_B_L.to(device), self.attention_mask_B_L.to(device),
                             self.position_ids_B_L.to(device), self.response_start, self.T)

    @property
    def rows(self) -> int:
        return self.ids_B_L.shape[0]


def response_hidden(model: nn.Module, inputs: ForwardInputs) -> torch.Tensor:
    """Final-norm hidden states ``hidden_B_T_H`` at the columns that predict the T response tokens.

    Gradients flow when called outside ``torch.no_grad()``. Raises ValueError when the response
    tokens ``[response_start, response_start + T)`` do not fit in L.
    """
    start, T = inputs.response_start, inputs.T
    L = inputs.ids_B_L.shape[1]
    if start < 1 or T < 0 or start + T > L:
        raise ValueError(
            f"response_start={start}, T={T} do not fit a batch of length L={L}: "
            "need 1 <= response_start and response_start + T <= L"
        )
    ids_B_L, attention_mask_B_L, position_ids_B_L = pad_columns(
        model, inputs.ids_B_L, inputs.attention_mask_B_L, inputs.position_ids_B_L
    )
    with adapter_compute(model):
        out = decoder(model)(
            input_ids=ids_B_L,
            attention_mask=attention_mask_B_L,
            position_ids=position_ids_B_L,
            use_cache=False,
        )
    return out.last_hidden_state[:, start - 1 : start - 1 + T]


def logits_from_hidden(model: nn.Module, hidden_B_T_H: torch.Tensor) -> torch.Tensor:
    """``hidden @ W.T (+ b)``, then the config's final-logit soft-cap if it has one."""
    return output_layer(model).logits(hidden_B_T_H)


def response_logits(model: nn.Module, inputs: ForwardInputs) -> torch.Tensor:
    """Logits ``logits_B_T_V`` predicting the T response tokens (same as the model's own logits)."""
    return logits_from_hidden(model, response_hidden(model, inputs))


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
