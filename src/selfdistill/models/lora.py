"""LoRA through peft, and an exact "merged for generation" context.

Without LoRA the trainer does a full fine-tune of the loaded model; nothing here is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters.

    Attributes:
        r: adapter rank.
        alpha: scaling numerator; the update is ``(alpha / r) * B @ A``.
        dropout: dropout on the adapter input (0.0 keeps training deterministic).
        target_modules: names of the linear layers that get an adapter.
    """

    r: int = 64
    alpha: int = 128
    dropout: float = 0.0
    target_modules: tuple[str, ...] = field(default=DEFAULT_TARGETS)


def apply_lora(model: nn.Module, settings: LoraSettings = LoraSettings()) -> nn.Module:
    """Wrap ``model`` in a peft ``PeftModel`` with one adapter; only adapter weights are trainable.

    The adapter starts as the identity (B = 0), so the wrapped model's outputs equal the base's.
    ``model.disable_adapter()`` (a context manager) gives the base model back for teacher passes.
    """
    from peft import LoraConfig, get_peft_model

    missing = [
        name
        for name in settings.target_modules
        if not any(module_name.endswith(name) for module_name, _ in model.named_modules())
    ]
    if missing:
        raise ValueError(
            f"LoraSettings.target_modules {missing} match no layer of {type(model).__name__}; "
            "set target_modules to names of its linear layers (e.g. q_proj, v_proj)"
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    if getattr(model, "is_activation_checkpointing", False):
        model.enable_input_require_grads()  # frozen embeddings + checkpointing need this
    return get_peft_model(model, config)


def is_lora(model: nn.Module) -> bool:
    """True for a peft-wrapped model (has ``disable_adapter``)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def trainable_parameter_count(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextmanager
def merged_adapter(model: nn.Module) -> Iterator[nn.Module]:
    """Fold the LoRA update into the base weights for fast generation; restore them exactly after.

    peft's own ``merge_adapter``/``unmerge_adapter`` adds then subtracts ``B @ A``: in bf16 that
    round trip does not give the base weights back, and the error would accumulate in the frozen
    base (the fixed teacher) over many steps. Here the touched base weights are copied first and
    copied back on exit (bit-exact), and the adapter branch is disabled while merged. Use only
    under ``torch.no_grad()`` (generation). A plain model, or one inside ``disable_adapter()``,
    passes through unchanged.
    """
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)] if is_lora(model) else []
    if not layers or any(layer.disable_adapters for layer in layers):
        yield model  # no adapter, or the caller disabled it on purpose: nothing to merge
        return

    backups: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad(), model.disable_adapter():
        try:
            for module in layers:
                weight = module.get_base_layer().weight
                backups.append((weight, weight.detach().clone()))
                for name in module.active_adapters:
                    if name in module.lora_A:
                        weight += module.get_delta_weight(name).to(weight.dtype)
            yield model
        finally:
            for weight, saved in backups:
                weight.copy_(saved)
