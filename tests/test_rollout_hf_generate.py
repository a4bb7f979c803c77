"""HFGenerate: shapes, seeding, truncation, stop tokens, left-padding equivalence, LoRA merge."""

from __future__ import annotations

import copy

import pytest
import torch

from selfdistill.models import LoraSettings, apply_lora, load_model
from selfdistill.rollout import HFGenerate, SamplingParams

GREEDY = SamplingParams(do_sample=False, max_new_tokens=10)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tok = tiny
    texts = ["Hello there", "What is 2+2? Think step by step, then answer.", "x"]
    return [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True)[
        "input_ids"] for t in texts]


def test_shapes_groups_and_truncation(tiny, prompts):
    model, tok = tiny
    samples = HFGenerate(model, tok).generate(
        prompts, SamplingParams(max_new_tokens=6, seed=0, n=2), batch_size=4
    )
    assert [s.prompt_index for s in samples] == [0, 0, 1, 1, 2, 2]
    for s in samples:
        assert s.num_tokens == len(s.response_ids) == 6  # the random model never says eos here
        assert s.truncated and tok.eos_token_id not in s.response_ids
        assert s.text == tok.decode(s.response_ids, skip_special_tokens=True)


def test_seed_makes_sampling_reproducible_and_leaves_global_rng(tiny, prompts):
    model, tok = tiny
    backend = HFGenerate(model, tok)
    params = SamplingParams(max_new_tokens=8, seed=123, temperature=1.2, top_p=0.9, top_k=50)
    torch.manual_seed(0)
    first = backend.generate(prompts, params)
    after_first = torch.rand(1)
    torch.manual_seed(0)
    second = backend.generate(prompts, params)
    assert torch.equal(torch.rand(1), after_first)  # the caller's RNG stream is untouched
    assert [s.response_ids for s in first] == [s.response_ids for s in second]
    other = backend.generate(prompts, SamplingParams(max_new_tokens=8, seed=124))
    assert [s.response_ids for s in other] != [s.response_ids for s in first]


def test_batch_equals_each_prompt_alone(tiny, prompts):
    model, tok = tiny
    backend = HFGenerate(model, tok)
    batched = [s.response_ids for s in backend.generate(prompts, GREEDY)]
    alone = [backend.generate([p], GREEDY)[0].response_ids for p in prompts]
    assert batched == alone
    assert len({tuple(r) for r in batched}) == 3  # the prompts really lead to different outputs


class ForceTokenAt:
    """lm_head hook: from decoding step ``step[row]`` on, row ``row`` must emit ``token``."""

    def __init__(self, token: int, step_by_row: dict[int, int]):
        self.token, self.step_by_row, self.calls = token, step_by_row, 0

    def __call__(self, module, inputs, logits):
        for row, step in self.step_by_row.items():
            if self.calls >= step:
                logits[row, -1, self.token] = 1e4
        self.calls += 1
        return logits


def test_eos_stops_and_padding_is_removed(tiny, prompts):
    model, tok = tiny
    eos = tok.eos_token_id
    handle = model.get_output_embeddings().register_forward_hook(ForceTokenAt(eos, {0: 1, 1: 3}))
    try:
        samples = HFGenerate(model, tok).generate(prompts[:3], GREEDY)
    finally:
        handle.remove()
    first, second, third = samples
    assert len(first.response_ids) == 2 and first.response_ids[-1] == eos and not first.truncated
    assert len(second.response_ids) == 4 and second.response_ids[-1] == eos
    assert eos not in second.response_ids[:-1] and not second.truncated
    assert third.truncated and third.num_tokens == GREEDY.max_new_tokens
    assert eos not in third.response_ids
    assert "<|im_end|>" not in first.text and first.text == tok.decode(first.response_ids[:-1])


def test_extra_stop_ids(tiny, prompts):
    model, tok = tiny
    backend = HFGenerate(model, tok)
    full = backend.generate([prompts[1]], GREEDY)[0].response_ids
    stop = full[3]
    cut = backend.generate([prompts[1]], SamplingParams(do_sample=False, max_new_tokens=10,
                                                        stop_token_ids=(stop,)))[0]
    assert cut.response_ids == full[: full.index(stop) + 1] and not cut.truncated


def test_train_mode_restored_and_no_grad(tiny, prompts):
    model, tok = tiny
    model.train()
    samples = HFGenerate(model, tok).generate(prompts[:1], SamplingParams(max_new_tokens=3, seed=0))
    assert model.training and samples[0].num_tokens == 3
    assert all(p.grad is None for p in model.parameters())


def test_lora_merged_generation_matches_unmerged(tiny, prompts):
    model, tok = tiny
    lora = apply_lora(copy.deepcopy(model), LoraSettings(r=4, alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    before = {n: p.clone() for n, p in lora.named_parameters()}
    merged = HFGenerate(lora, tok, merge_lora=True).generate(prompts, GREEDY)
    unmerged = HFGenerate(lora, tok, merge_lora=False).generate(prompts, GREEDY)
    with lora.disable_adapter():  # merge_lora must not bring the adapter back
        base = HFGenerate(lora, tok, merge_lora=True).generate(prompts, GREEDY)
    plain = HFGenerate(model, tok).generate(prompts, GREEDY)  # the untouched base model
    assert [s.response_ids for s in merged] == [s.response_ids for s in unmerged]
    assert [s.response_ids for s in base] == [s.response_ids for s in plain]
    assert [s.response_ids for s in base] != [s.response_ids for s in merged]
    assert all(torch.equal(p, before[n]) for n, p in lora.named_parameters())


def test_bad_inputs_are_clear_errors(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match=r"prompt_ids\[1\] is empty"):
        HFGenerate(model, tok).generate([[1, 2], []], GREEDY)
    with pytest.raises(ValueError, match="do_sample=False"):
        SamplingParams(temperature=0.0)
    with pytest.raises(ValueError, match="sampler='vllm'"):
        HFGenerate(model, tok, sampler="vllm")


@pytest.mark.parametrize("sampler", ["topk", "hf"])
def test_top_k_1_sampling_is_greedy_with_either_sampler(tiny, prompts, sampler):
    model, tok = tiny
    backend = HFGenerate(model, tok, sampler=sampler)
    greedy = [s.response_ids for s in backend.generate(prompts, GREEDY)]
    one = SamplingParams(max_new_tokens=10, top_k=1, temperature=1.7, seed=3)
    assert [s.response_ids for s in backend.generate(prompts, one)] == greedy


def test_topk_sampler_draws_only_top_k_tokens(tiny, prompts):
    """Every drawn token is among the k most likely at its step (checked by re-scoring the
    sampled sequence with the model), and the draws are not all the argmax."""
    model, tok = tiny
    samples = HFGenerate(model, tok).generate(prompts, SamplingParams(max_new_tokens=12, top_k=3,
                                                                      temperature=2.0, seed=5))
    not_argmax = 0
    for s, p in zip(samples, prompts):
        ids = torch.tensor([p + s.response_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(p) - 1 : -1]
        top3 = logits.topk(3, dim=-1).indices
        chosen = torch.tensor(s.response_ids)
        assert (top3 == chosen[:, None]).any(-1).all()
        not_argmax += int((top3[:, 0] != chosen).sum())
    assert not_argmax > 0


def test_output_layer_sees_a_contiguous_input_while_generating(tiny, prompts):
    """HF's prefill projects a strided ``hidden[:, -1:, :]``; with a frozen head (LoRA) torch then
    copies the weight expanded to [B, H, V] (453 MB for SmolLM2 x 8 rows). HFGenerate hands the
    head a contiguous input; the hook is gone afterwards."""
    model, tok = tiny
    lora = apply_lora(copy.deepcopy(model), LoraSettings(r=4, alpha=8))
    head = lora.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    try:
        HFGenerate(lora, tok).generate(prompts, SamplingParams(max_new_tokens=3, seed=0))
        assert seen and all(seen)
        seen.clear()
        with torch.no_grad():  # the same strided view outside generate is not made contiguous
            hidden = lora.get_decoder()(input_ids=torch.tensor([prompts[1]] * 2)).last_hidden_state
            head(hidden[:, -1:, :])
        assert seen == [False]
    finally:
        handle.remove()
