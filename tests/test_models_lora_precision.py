"""Mixed-precision LoRA (``LoraSettings.mixed_precision``): on a bf16 model the adapter matmuls
run in bf16 under autocast while the adapter weights and their gradients stay float32; outputs and
gradients stay close to the float32-adapter computation; the disabled adapter (teacher passes of
the base) is bit-for-bit unchanged; float32 models are untouched."""

from __future__ import annotations

import copy

import pytest
import torch

from selfdistill.models import LoraSettings, apply_lora, load_model, response_hidden
from selfdistill.models.lora import _AUTOCAST_ATTR, adapter_compute

from test_models_forward import PROMPTS, RESPONSES, left_padded


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny-random")[0]


def lora_model(tiny, dtype, **kw):
    lora = apply_lora(copy.deepcopy(tiny).to(dtype), LoraSettings(r=4, alpha=8, **kw))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter (B starts at zero)
    return lora


def hidden_and_grads(lora, mixed: bool):
    """Response hidden states and the adapter gradients of a fixed random linear functional of
    them (not a norm: the final RMSNorm makes a norm's gradient pure rounding noise), with the
    mixed-precision mode on or off (same weights)."""
    saved = getattr(lora, _AUTOCAST_ATTR)
    if not mixed:
        delattr(lora, _AUTOCAST_ATTR)
    try:
        lora.zero_grad(set_to_none=True)
        h = response_hidden(lora, left_padded(PROMPTS, RESPONSES))
        direction = torch.randn(h.shape, generator=torch.Generator().manual_seed(7))
        (h.float() * direction).sum().backward()
        grads = {n: p.grad.clone() for n, p in lora.named_parameters() if p.requires_grad}
        return h.detach().float(), grads
    finally:
        setattr(lora, _AUTOCAST_ATTR, saved)


def test_mixed_precision_adapter_runs_bf16_keeps_float32_weights_and_grads(tiny):
    lora = lora_model(tiny, torch.bfloat16)
    assert getattr(lora, _AUTOCAST_ATTR) == torch.bfloat16
    seen = []
    hook = next(m for n, m in lora.named_modules() if n.endswith("q_proj.lora_A.default")).register_forward_hook(
        lambda mod, inp, out: seen.append((inp[0].dtype, out.dtype)))
    h_mixed, g_mixed = hidden_and_grads(lora, mixed=True)
    h_full, g_full = hidden_and_grads(lora, mixed=False)
    hook.remove()
    assert seen[0] == (torch.bfloat16, torch.bfloat16)  # mixed: bf16 in, bf16 out
    assert seen[-1] == (torch.float32, torch.float32)  # float32 adapter: the input is cast up
    assert all(p.dtype == torch.float32 for p in lora.parameters() if p.requires_grad)
    assert all(g.dtype == torch.float32 for g in g_mixed.values())
    with torch.no_grad(), lora.disable_adapter():
        base = response_hidden(lora, left_padded(PROMPTS, RESPONSES)).float()
    # the difference is bf16 rounding: far smaller than what the adapter contributes
    assert (h_mixed - h_full).abs().mean() < 0.05 * (h_full - base).abs().mean()
    flat = lambda g: torch.cat([v.flatten() for v in g.values()])  # noqa: E731
    cos = torch.nn.functional.cosine_similarity(flat(g_mixed), flat(g_full), dim=0)
    assert cos > 0.99, cos
    assert not torch.equal(flat(g_mixed), flat(g_full))  # the two modes really differ


def test_disabled_adapter_is_bit_identical_and_other_models_are_untouched(tiny):
    lora = lora_model(tiny, torch.bfloat16)
    batch = left_padded(PROMPTS, RESPONSES)
    with torch.no_grad(), lora.disable_adapter():
        with adapter_compute(lora):
            assert not torch.is_autocast_enabled("cpu")  # no autocast around base passes
        through = response_hidden(lora, batch)
        saved = getattr(lora, _AUTOCAST_ATTR)
        delattr(lora, _AUTOCAST_ATTR)
        plain = response_hidden(lora, batch)
        setattr(lora, _AUTOCAST_ATTR, saved)
    assert torch.equal(through, plain)
    assert not hasattr(lora_model(tiny, torch.float32), _AUTOCAST_ATTR)  # nothing to gain in float32
    assert not hasattr(lora_model(tiny, torch.bfloat16, mixed_precision=False), _AUTOCAST_ATTR)
    with adapter_compute(tiny):  # a model without LoRA: a no-op
        assert not torch.is_autocast_enabled("cpu")
