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
        mixed_precision: when the base weights are bf16/fp16, run the adapter's matmuls in that
            dtype under autocast (``adapter_compute``); the adapter weights, their gradients and
            the optimizer state stay float32 (peft's default). False computes them in float32,
            casting every adapter input up (about 1.3x slower per step on a CPU).
    """

    r: int = 64
    alpha: int = 128
    dropout: float = 0.0
    target_modules: tuple[str, ...] = field(default=DEFAULT_TARGETS)
    mixed_precision: bool = True


# attribute of a PeftModel: the dtype its adapter matmuls run in under ``adapter_compute``
_AUTOCAST_ATTR = "selfdistill_adapter_autocast"


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
    from selfdistill.models.loading import checkpointing_on

    if checkpointing_on(model):
        model.enable_input_require_grads()  # frozen embeddings + checkpointing need this
    base_dtype = next(model.parameters()).dtype
    peft_model = get_peft_model(model, config)
    adapter_dtype = next(p.dtype for p in peft_model.parameters() if p.requires_grad)
    if settings.mixed_precision and base_dtype in (torch.bfloat16, torch.float16) and adapter_dtype != base_dtype:
        setattr(peft_model, _AUTOCAST_ATTR, base_dtype)
    return peft_model


@contextmanager
def adapter_compute(model: nn.Module) -> Iterator[None]:
    """Adapter matmuls of a mixed-precision LoRA model (``LoraSettings.mixed_precision``) run in
    the base dtype inside this block: torch autocast to that dtype, with peft's cast of every
    adapter input to float32 switched off. Gradients still reach the float32 adapter weights
    (autocast casts them per op). A no-op for any other model, and while the adapter is
    disabled (teacher passes of the base must not change)."""
    dtype = getattr(model, _AUTOCAST_ATTR, None)
    if dtype is None or not _adapter_enabled(model):
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    device = next(model.parameters()).device.type
    with torch.autocast(device_type=device, dtype=dtype), disable_input_dtype_casting(model):
        yield


@contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """``model.disable_adapter()`` without its fixed cost: the base model inside the block.

    peft's context manager computes the model's adapter status (``get_model_status`` walks every
    module once per adapter layer and formats module reprs) and toggles ``requires_grad`` on
    every adapter weight, on entry and exit: 29 ms per use on SmolLM2-135M against 3 ms here,
    about what a no-grad pass of a short prompt costs (``benchmarks/components.py``). Here each
    adapter layer's own disable flag is set and then restored to its previous value
    (``requires_grad`` untouched, so use it for no-grad passes). Models whose adapters are not flag-switched layers (prompt
    learning, adaption prompt) go through peft's own context manager.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not is_lora(model):
        raise ValueError(f"adapter_disabled needs a peft model, got {type(model).__name__}")
    config = model.peft_config[model.active_adapter]
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if config.is_prompt_learning or config.is_adaption_prompt or not all(
        isinstance(getattr(m, "_disable_adapters", None), bool) for m in layers
    ):
        with model.disable_adapter():
            yield model
        return
    saved = [m._disable_adapters for m in layers]
    was_disabled = getattr(model, "_adapters_disabled", False)
    try:
        for m in layers:
            m._disable_adapters = True
        model._adapters_disabled = True
        yield model
    finally:
        for m, value in zip(layers, saved):
            m._disable_adapters = value
        model._adapters_disabled = was_disabled


def _adapter_enabled(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    layer = next((m for m in model.modules() if isinstance(m, BaseTunerLayer)), None)
    return layer is not None and not layer.disable_adapters


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
    round trip does not always give the base weights back (rounding ties, and sums that cross a
    power of two), and the error would accumulate in the frozen base (the fixed teacher) over many
    steps. Here each layer's round trip is checked while merging: ``W + D - D`` is compared with
    ``W`` (``D`` the update in the weight's dtype) and only the entries that would not come back
    are saved (their indices and original values), so the restore (subtract ``D``, recomputed
    bit-identically, then put the saved entries back) is bit-exact without keeping a copy of the
    weights (0.5% of the entries for a SmolLM2 adapter with B ~ 1e-3; a layer where the list would
    be larger than the weight keeps a dense copy instead). The adapter branch is disabled while
    merged. Use only under ``torch.no_grad()`` (generation). A plain model, or one inside
    ``disable_adapter()``, passes through unchanged.
    """
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)] if is_lora(model) else []
    if not layers or any(layer.disable_adapters for layer in layers):
        yield model  # no adapter, or the caller disabled it on purpose: nothing to merge
        return

    # layer, flat indices (None: dense copy), original values
    fixes: list[tuple[nn.Module, torch.Tensor | None, torch.Tensor]] = []
    with torch.no_grad(), adapter_disabled(model):
        try:
            for module in layers:
                weight = module.get_base_layer().weight
                delta = _delta(module, weight.dtype)
                if delta is None:
                    continue
                merged = weight + delta
                lost = ((merged - delta) != weight).view(-1).nonzero().squeeze(1)
                if lost.numel() * (8 + weight.element_size()) < weight.numel() * weight.element_size():
                    fixes.append((module, lost, weight.view(-1)[lost].clone()))
                else:  # most entries would not come back: a dense copy is smaller than the list
                    fixes.append((module, None, weight.detach().clone()))
                weight.copy_(merged)
                del merged, delta
            yield model
        finally:
            for module, lost, values in fixes:
                weight = module.get_base_layer().weight
                if lost is None:
                    weight.copy_(values)
                else:
                    weight.sub_(_delta(module, weight.dtype))
                    weight.view(-1)[lost] = values


def _delta(module: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
    """Sum of the active adapters' ``scale * B @ A`` of one layer, in the weight's dtype
    (deterministic: the same call gives the same bits while the adapter is unchanged)."""
    deltas = [module.get_delta_weight(name) for name in module.active_adapters if name in module.lora_A]
    if not deltas:
        return None
    return torch.stack(deltas).sum(0).to(dtype) if len(deltas) > 1 else deltas[0].to(dtype)
