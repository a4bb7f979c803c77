"""load_model: aliases, caching, local folders, offline errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from selfdistill.models import ModelLoadError, load_model, tiny_random_path
from selfdistill.models.aliases import MARKER


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


def test_tiny_random_alias(tiny):
    model, tokenizer = tiny
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 4)
    assert config.vocab_size == len(tokenizer) == 49152
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert 3_000_000 < sum(p.numel() for p in model.parameters()) < 4_000_000
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token == "<|im_end|>"
    assert model.training and model.dtype == torch.float32
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_tiny_random_is_cached_and_seeded(tiny):
    model, _ = tiny
    folder = tiny_random_path()
    assert (folder / MARKER).exists() and list(folder.glob("*.safetensors"))
    assert not list(folder.parent.glob("tiny-random.tmp*"))  # no leftovers of the atomic write
    again, _ = load_model(str(folder))  # the cached folder is a plain local checkpoint
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert torch.equal(a, b), name


def test_dtype_and_checkpointing_options():
    model, _ = load_model("tiny-random", dtype="bfloat16", gradient_checkpointing=True)
    assert model.dtype == torch.bfloat16
    from selfdistill.models.loading import checkpointing_on

    assert checkpointing_on(model)
    with pytest.raises(ValueError, match="dtype"):
        load_model("tiny-random", dtype="fp8")


def test_bad_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="could not load the checkpoint"):
        load_model(str(tmp_path))


def test_offline_hub_id_is_a_clear_error():
    code = (
        "from selfdistill.models import load_model, ModelLoadError\n"
        "try:\n    load_model('no-such-org/no-such-model-xyz')\n"
        "except ModelLoadError as e:\n    print('CLEAR:', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CLEAR: could not fetch the model 'no-such-org/no-such-model-xyz'" in out.stdout
    assert "local" in out.stdout and "tiny-random" in out.stdout and "smollm2-135m" in out.stdout
    assert "Traceback" not in out.stdout


@pytest.mark.slow
def test_smollm2_alias_is_a_real_chat_model():
    """Converted once from the GGUF (~15-30 s), then cached; greedy answers a trivial question."""
    from selfdistill.rollout import HFGenerate, SamplingParams

    model, tokenizer = load_model("smollm2-135m")
    assert model.config.num_hidden_layers == 30 and len(tokenizer) == 49152
    assert getattr(model.config, "quantization_config", None) is None
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )["input_ids"]
    [sample] = HFGenerate(model, tokenizer).generate(
        [prompt], SamplingParams(do_sample=False, max_new_tokens=12)
    )
    assert "Paris" in sample.text, sample.text


def test_alias_cache_builds_once_and_rebuilds_stale_versions(tmp_path, monkeypatch):
    from selfdistill.models import aliases

    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "weights.txt").write_text(str(len(builds)))

    monkeypatch.setenv("SELFDISTILL_CACHE", str(tmp_path))
    monkeypatch.setitem(aliases.ALIASES, "fake", (1, build))
    first = aliases.alias_path("fake")
    assert aliases.alias_path("fake") == first and len(builds) == 1  # cached
    assert builds[0] != first  # built under a temporary name, then renamed
    assert (first / "weights.txt").read_text() == "1" and not list(tmp_path.glob("models/*.tmp*"))
    monkeypatch.setitem(aliases.ALIASES, "fake", (2, build))  # the recipe changed
    assert (aliases.alias_path("fake") / "weights.txt").read_text() == "2"
    with pytest.raises(KeyError, match="tiny-random"):
        aliases.alias_path("no-such-alias")
