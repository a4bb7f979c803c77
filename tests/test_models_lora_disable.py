"""models.lora.adapter_disabled: the same base model as peft's disable_adapter() (bit-identical),
every layer's previous state and requires_grad restored, also after an error."""

from __future__ import annotations

import pytest
import torch
from test_models_forward import left_padded

from selfdistill.models import LoraSettings, apply_lora, load_model, response_hidden
from selfdistill.models.lora import adapter_disabled

PROMPTS = [[5, 6, 7, 8], [9, 10]]
RESPONSES = [[11, 12, 13], [14]]


@pytest.fixture()
def lora():
    torch.manual_seed(0)
    model = apply_lora(load_model("tiny-random")[0], LoraSettings(r=4, alpha=8)).eval()
    with torch.no_grad():  # a non-zero adapter, so "disabled" is visible
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def layers(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def hidden(model):
    with torch.no_grad():
        return response_hidden(model, left_padded(PROMPTS, RESPONSES))


def test_same_base_outputs_as_peft_and_state_restored(lora):
    on = hidden(lora)
    grads = {n: p.requires_grad for n, p in lora.named_parameters()}
    with lora.disable_adapter():
        peft_off = hidden(lora)
    with adapter_disabled(lora) as module:
        assert module is lora and all(m.disable_adapters for m in layers(lora))
        ours_off = hidden(lora)
    assert torch.equal(ours_off, peft_off)
    assert not torch.allclose(ours_off, on, atol=1e-3)
    assert torch.equal(hidden(lora), on)  # enabled again
    assert {n: p.requires_grad for n, p in lora.named_parameters()} == grads
    assert not any(m.disable_adapters for m in layers(lora)) and not lora._adapters_disabled


def test_previous_per_layer_state_and_errors(lora):
    first = layers(lora)[0]
    first.enable_adapters(False)  # an irregular state set by the caller survives the block
    before = [m.disable_adapters for m in layers(lora)]
    with pytest.raises(RuntimeError, match="inside"):
        with adapter_disabled(lora):
            raise RuntimeError("inside")
    assert [m.disable_adapters for m in layers(lora)] == before
    with adapter_disabled(lora), adapter_disabled(lora):  # nested
        assert all(m.disable_adapters for m in layers(lora))
    assert [m.disable_adapters for m in layers(lora)] == before


def test_plain_model_is_refused():
    with pytest.raises(ValueError, match="peft model"):
        with adapter_disabled(load_model("tiny-random")[0]):
            pass
