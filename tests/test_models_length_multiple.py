"""Right-padding model passes to a length multiple (models.forward.set_length_multiple): the real
columns' hidden states and every gradient are unchanged (float64), the decoder really sees padded
lengths, shared-prefix passes pad only their final segments, and bad values are rejected."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_models_forward import left_padded

from selfdistill.models import (
    LoraSettings,
    apply_lora,
    load_model,
    prefix,
    response_hidden,
    set_length_multiple,
)
from selfdistill.models.forward import decoder, pad_columns
from selfdistill.train.checks import validate
from selfdistill.train.config import ConfigError, load_config


@pytest.fixture(scope="module")
def model64():
    model = load_model("tiny-random")[0].double().eval()
    return apply_lora(model, LoraSettings(r=4, alpha=8))


def seen_lengths(model):
    """Record the column count of every decoder call."""
    lengths: list[int] = []
    hook = decoder(model).register_forward_pre_hook(
        lambda _m, _a, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    return lengths, hook


def hidden_and_grads(model, args, multiple, probe):
    set_length_multiple(model, multiple)
    model.zero_grad()
    lengths, hook = seen_lengths(model)
    try:
        h = response_hidden(model, args)
    finally:
        hook.remove()
        set_length_multiple(model, 1)
    valid = args.attention_mask_B_L[:, args.response_start:].bool()
    (h[valid] * probe[: int(valid.sum())]).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return h.detach(), valid, grads, lengths


def lora_b_nonzero(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)


tokens = st.lists(st.integers(3, 500), min_size=1, max_size=9)


@settings(max_examples=12, deadline=None)
@given(prompts=st.lists(tokens, min_size=1, max_size=3), data=st.data(), multiple=st.integers(2, 24))
def test_padding_changes_no_output_and_no_gradient(model64, prompts, data, multiple):
    responses = [data.draw(tokens) for _ in prompts]
    args = left_padded(prompts, responses)
    torch.manual_seed(0)
    lora_b_nonzero(model64)
    probe = torch.randn(sum(map(len, responses)), model64.config.hidden_size, dtype=torch.float64)
    h1, valid, g1, n1 = hidden_and_grads(model64, args, 1, probe)
    hm, _, gm, nm = hidden_and_grads(model64, args, multiple, probe)
    L = args.ids_B_L.shape[1]
    assert n1 == [L] and nm == [L + (-L % multiple)] and nm[0] % multiple == 0
    assert hm.shape == h1.shape
    torch.testing.assert_close(hm[valid], h1[valid], rtol=1e-10, atol=1e-10)
    assert g1.keys() == gm.keys() and any("lora_A" in n for n in g1)
    for name in g1:
        torch.testing.assert_close(gm[name], g1[name], rtol=1e-9, atol=1e-10, msg=name)


def test_padding_on_the_left_would_be_caught(model64, monkeypatch):
    """The equality above can fail: the same columns added before the prompt shift every output."""
    args = left_padded([[5, 6, 7], [8, 9]], [[10, 11], [12]])
    probe = torch.randn(3, model64.config.hidden_size, dtype=torch.float64)
    h1, valid, _, _ = hidden_and_grads(model64, args, 1, probe)

    def on_the_left(model, ids, mask, pos):
        extra = 5
        B = ids.shape[0]
        return (torch.cat([ids[:, :1].expand(B, extra), ids], 1), torch.cat([mask.new_ones(B, extra), mask], 1),
                torch.cat([pos[:, :1].expand(B, extra), pos], 1))

    monkeypatch.setattr("selfdistill.models.forward.pad_columns", on_the_left)
    h2, _, _, _ = hidden_and_grads(model64, args, 1, probe)
    assert not torch.allclose(h2[valid], h1[valid], rtol=1e-6, atol=1e-6)


def test_shared_prefix_segments_are_bucketed_and_unchanged(model64):
    header = [1, 520, 9531, 198]
    questions = [[34, 27, 88, 99], [4093], [9690, 198, 2683]]
    responses = [[34, 47, 2], [19712, 8182, 2, 198, 11], [28]]
    args = [left_padded([header + q + tail for q in questions], responses) for tail in ([11], [12, 13])]
    ops = prefix.plan([prefix.prompts(a) for a in args])
    with torch.no_grad():
        expected = [response_hidden(model64, a) for a in args]
        set_length_multiple(model64, 16)
        lengths, hook = seen_lengths(model64)
        try:
            shared = prefix.run_plan(model64, ops, args)
        finally:
            hook.remove()
            set_length_multiple(model64, 1)
    finals = [n for n, op in zip(lengths, ops) if op.batch is not None]
    extends = [n for n, op in zip(lengths, ops) if op.batch is None]
    assert finals and all(n % 16 == 0 for n in finals)  # right-padded
    assert extends and all(n % 16 == 0 for n in extends)  # cached: masked columns on the left
    for a, h, e in zip(args, shared, expected):
        valid = a.attention_mask_B_L[:, a.response_start:].bool()
        torch.testing.assert_close(h[valid], e[valid], rtol=1e-10, atol=1e-10)


def test_setting_lives_on_the_body_shared_by_wrappers_and_copies():
    model, _ = load_model("tiny-random", length_multiple=8)
    wrapped = apply_lora(model, LoraSettings(r=2, alpha=4))
    frozen = copy.deepcopy(wrapped)
    ids = torch.ones(2, 13, dtype=torch.long)
    for m in (model, wrapped, frozen):
        out = pad_columns(m, ids, torch.ones_like(ids), torch.arange(13).expand(2, 13))
        assert [t.shape[1] for t in out] == [16, 16, 16]
        assert out[1].all() and (out[2][:, 13:] == 12).all() and (out[0][:, 13:] == 1).all()
    set_length_multiple(wrapped, 1)
    assert pad_columns(frozen, ids, ids, ids)[0].shape[1] == 16  # a copy keeps its own value
    assert pad_columns(model, ids, ids, ids)[0].shape[1] == 13


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_multiple_is_rejected(bad):
    with pytest.raises(ValueError, match="length_multiple"):
        set_length_multiple(load_model("tiny-random")[0], bad)


def test_config_rejects_multiple_below_one_and_defaults_to_32():
    assert load_config("smoke", []).model.length_multiple == 32
    with pytest.raises(ConfigError, match="model.length_multiple must be >= 1"):
        validate(load_config("smoke", ["model.length_multiple=0"]))
