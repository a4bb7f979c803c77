"""Forward helpers and LoRA: response logits equal the model's own logits at those columns."""

from __future__ import annotations

import dataclasses

import copy

import pytest
import torch

from selfdistill.models import (
    LoraSettings,
    apply_lora,
    load_model,
    merged_adapter,
    ForwardInputs,
    output_layer,
    response_hidden,
    response_logits,
    trainable_parameter_count,
)

PROMPTS = [[1, 520, 9531, 198, 34, 27], [1, 4093], [1, 9690, 198, 2683, 359, 253, 5356, 5646]]
RESPONSES = [[34, 47, 2], [19712, 8182, 2, 198, 11], [28]]


def left_padded(prompts, responses, pad=2):
    """A renderer-style batch: prompts left-padded to one start column, responses right-padded."""
    P, T = max(map(len, prompts)), max(map(len, responses))
    ids = torch.full((len(prompts), P + T), pad)
    mask = torch.zeros_like(ids)
    for row, (p, r) in enumerate(zip(prompts, responses)):
        ids[row, P - len(p) : P + len(r)] = torch.tensor(p + r)
        mask[row, P - len(p) : P + len(r)] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ForwardInputs(ids, mask, position_ids, P, T)


def assert_matches_own_logits(model, rtol=1e-4, atol=1e-4):
    inputs = left_padded(PROMPTS, RESPONSES)
    ids, mask, pos, start, T = (inputs.ids_B_L, inputs.attention_mask_B_L, inputs.position_ids_B_L,
                               inputs.response_start, inputs.T)
    model.eval()
    with torch.no_grad():
        logits_B_T_V = response_logits(model, inputs)
        for row, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
            alone = model(input_ids=torch.tensor([p + r])).logits[0]
            expected = alone[len(p) - 1 : len(p) - 1 + len(r)]
            torch.testing.assert_close(logits_B_T_V[row, : len(r)], expected, rtol=rtol, atol=atol)
            # the comparison can fail: the neighbouring columns do not match
            assert not torch.allclose(alone[len(p) : len(p) + len(r)], expected, atol=1e-2)
    assert logits_B_T_V.shape == (3, T, model.config.vocab_size)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny-random")


def test_response_logits_equal_own_logits_left_padded(tiny):
    assert_matches_own_logits(tiny[0])


def test_response_hidden_shape_and_gradient(tiny):
    model, _ = tiny
    inputs = left_padded(PROMPTS, RESPONSES)
    ids, mask, pos, start, T = (inputs.ids_B_L, inputs.attention_mask_B_L, inputs.position_ids_B_L,
                               inputs.response_start, inputs.T)
    hidden_B_T_H = response_hidden(model, inputs)
    assert hidden_B_T_H.shape == (3, T, 64)
    hidden_B_T_H.sum().backward()
    assert output_layer(model).weight_V_H.grad is not None
    model.zero_grad()
    with pytest.raises(ValueError, match="response_start"):
        response_hidden(model, dataclasses.replace(inputs, T=T + 1))


def test_untied_head_with_bias_and_softcap():
    """An untied lm_head with a bias, and Gemma-2's final-logit soft-cap, are honoured."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, tie_word_embeddings=False, initializer_range=0.3)
    )
    llama.lm_head.bias = torch.nn.Parameter(torch.randn(49152))
    assert output_layer(llama).weight_V_H is llama.lm_head.weight
    assert_matches_own_logits(llama)
    gemma = Gemma2ForCausalLM(
        Gemma2Config(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                     final_logit_softcapping=2.0, initializer_range=0.3)
    )
    assert_matches_own_logits(gemma)


def test_lora_trainable_count_and_disabled_adapter_equals_base(tiny):
    model = copy.deepcopy(tiny[0])
    inputs = left_padded(PROMPTS, RESPONSES)
    ids, mask, pos, start, T = (inputs.ids_B_L, inputs.attention_mask_B_L, inputs.position_ids_B_L,
                               inputs.response_start, inputs.T)
    with torch.no_grad():
        base_B_T_V = response_logits(model.eval(), inputs)
    expected = sum(  # brute force: r * (in + out) for every targeted Linear
        8 * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if name.rsplit(".", 1)[-1] in LoraSettings().target_modules
    )
    lora = apply_lora(model, LoraSettings(r=8, alpha=16))
    assert trainable_parameter_count(lora) == expected == 2 * 8 * 1024
    assert all("lora_" in n for n, p in lora.named_parameters() if p.requires_grad)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter (B starts at zero)
        adapted_B_T_V = response_logits(lora, inputs)
        with lora.disable_adapter():
            disabled_B_T_V = response_logits(lora, inputs)
    assert not torch.allclose(adapted_B_T_V, base_B_T_V, atol=1e-2)
    torch.testing.assert_close(disabled_B_T_V, base_B_T_V)
    assert_matches_own_logits(lora)  # the helpers work through the peft wrappers
    with pytest.raises(ValueError, match="match no layer"):
        apply_lora(copy.deepcopy(tiny[0]), LoraSettings(target_modules=("qkv",)))


@pytest.mark.parametrize("dtype,b_scale", [("float32", 0.5), ("bfloat16", 0.5), ("bfloat16", 1e-3)])
def test_merged_adapter_equals_unmerged_and_restores_base_exactly(tiny, dtype, b_scale):
    """Large updates (B ~ 0.5) make most entries miss the round trip (dense copies); a
    trained-size update (B ~ 1e-3) only a few (the saved-entry list)."""
    model = copy.deepcopy(tiny[0]).to(getattr(torch, dtype))
    lora = apply_lora(model, LoraSettings(r=4, alpha=8)).eval()
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, b_scale)
    before = {n: p.clone() for n, p in lora.named_parameters()}
    inputs = left_padded(PROMPTS, RESPONSES)
    ids, mask, pos, start, T = (inputs.ids_B_L, inputs.attention_mask_B_L, inputs.position_ids_B_L,
                               inputs.response_start, inputs.T)
    with torch.no_grad():
        unmerged = response_logits(lora, inputs).float()
        with merged_adapter(lora):
            merged = response_logits(lora, inputs).float()
            changed = [n for n, p in lora.named_parameters() if not torch.equal(p, before[n])]
            assert changed and all("base_layer" in n for n in changed)
    if dtype == "float32":
        torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-4)
    elif b_scale > 0.1:  # bf16 rounds W + BA once: close on average, far closer than the base is
        with torch.no_grad(), lora.disable_adapter():
            base = response_logits(lora, inputs).float()
        error = (merged - unmerged).abs().mean()
        assert error < 0.1 * (base - unmerged).abs().mean() and error < 0.01 * unmerged.abs().max()
    for name, p in lora.named_parameters():
        assert torch.equal(p, before[name]), name  # bit-exact restore, even in bf16
