"""Shared-prefix no-grad passes (models/prefix.py) equal one response_hidden per context (float64),
build the trie Purified OPSD's contexts call for, and are used by the training step."""

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
    make_teacher,
    response_hidden,
    set_length_multiple,
)
from selfdistill.models import prefix

HEADER = [1, 520, 9531, 198]
QUESTIONS = [[34, 27, 88, 99], [4093], [9690, 198, 2683, 359, 253]]
REFERENCES = [[700, 701, 702], [703, 704], [705]]
RESPONSES = [[34, 47, 2], [19712, 8182, 2, 198, 11], [28]]


@pytest.fixture(scope="module")
def model64():
    return load_model("tiny-random")[0].double().eval()


def purified_contexts():
    """Privileged (q + r), reference-only (r) and base (q) prompts with a common chat header."""
    priv = [HEADER + q + [11] + r + [12] for q, r in zip(QUESTIONS, REFERENCES)]
    ref = [HEADER + r + [12] for r in REFERENCES]
    base = [HEADER + q + [13] for q in QUESTIONS]
    return [left_padded(p, RESPONSES) for p in (priv, ref, base)]


def assert_same_as_separate(model, args, shared, tol=1e-10):
    with torch.no_grad():
        for a, h in zip(args, shared):
            valid = a.attention_mask_B_L[:, a.response_start:].bool()
            expected = response_hidden(model, a)
            assert h.shape == expected.shape
            torch.testing.assert_close(h[valid], expected[valid], rtol=tol, atol=tol)


def test_purified_contexts_share_header_and_question(model64):
    args = purified_contexts()
    ops = prefix.plan([prefix.prompts(a) for a in args])
    extends = [op for op in ops if op.batch is None]
    assert [op.tokens for op in extends] == [[HEADER] * 3, QUESTIONS]  # header, then the question
    finals = {op.batch: op for op in ops if op.batch is not None}
    assert finals[1].parent == extends[0].node  # reference-only sits on the header
    assert finals[0].parent == finals[2].parent == extends[1].node  # privileged and base on the question
    assert prefix.plan_cost(ops, 5) < sum(a.ids_B_L.numel() for a in args)
    with torch.no_grad():
        shared = prefix.run_plan(model64, ops, args)
    assert_same_as_separate(model64, args, shared)


def test_wrong_positions_would_be_caught(model64, monkeypatch):
    """The comparison above can fail: positions shifted by one in the shared segments differ."""
    args = purified_contexts()
    segment = prefix._segment
    monkeypatch.setattr(prefix, "_segment", lambda *a: tuple(x + (i == 2) for i, x in enumerate(segment(*a))))
    with torch.no_grad():
        shared = prefix.shared_prefix_hidden(model64, args)
    with pytest.raises(AssertionError):
        assert_same_as_separate(model64, args, shared)


def test_a_prompt_inside_another_keeps_a_token_for_its_own_pass(model64):
    """When one prompt is a prefix of another, its last token still runs in its own pass (that
    column predicts the first response token)."""
    short = [HEADER + q for q in QUESTIONS]
    long = [HEADER + q + [11, 12] for q in QUESTIONS]
    args = [left_padded(p, RESPONSES) for p in (short, long)]
    ops = prefix.plan([prefix.prompts(a) for a in args])
    assert all(len(t) >= 1 for op in ops if op.batch is not None for t in op.tokens)
    with torch.no_grad():
        assert_same_as_separate(model64, args, prefix.shared_prefix_hidden(model64, args))


token = st.integers(3, 500)


@settings(max_examples=15, deadline=None)
@given(
    trunk=st.lists(st.lists(token, max_size=5), min_size=2, max_size=2),
    tails=st.lists(st.lists(st.lists(token, min_size=1, max_size=4), min_size=2, max_size=2), min_size=1, max_size=3),
    responses=st.lists(st.lists(token, min_size=1, max_size=3), min_size=2, max_size=2),
    multiple=st.sampled_from([1, 3, 8]),
)
def test_any_set_of_contexts_matches_separate_passes(model64, trunk, tails, responses, multiple):
    """Random contexts with random shared parts (some identical, some unrelated), segments
    bucketed to random length multiples; compared with unpadded separate passes."""
    contexts = [[trunk[i] + tail[i] for i in range(2)] for tail in tails]
    contexts.append([[7] + r for r in responses])  # one context shares nothing
    args = [left_padded(c, responses) for c in contexts]
    with torch.no_grad():
        set_length_multiple(model64, multiple)
        try:
            shared = prefix.shared_prefix_hidden(model64, args)
        finally:
            set_length_multiple(model64, 1)
        assert_same_as_separate(model64, args, shared)


def test_fixed_lora_teacher_shares_prefixes_with_the_adapter_off():
    model = apply_lora(load_model("tiny-random")[0], LoraSettings(r=4, alpha=8)).double()
    with torch.no_grad():  # a non-zero adapter, so "adapter off" is visible
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    teacher = make_teacher(model, "fixed")
    args = purified_contexts()
    assert teacher.shares_prefixes()
    shared = teacher.hidden_shared(prefix.plan([prefix.prompts(a) for a in args]), args)
    for a, h in zip(args, shared):
        valid = a.attention_mask_B_L[:, a.response_start:].bool()
        torch.testing.assert_close(h[valid], teacher.hidden(a)[valid], rtol=1e-10, atol=1e-10)
        with torch.no_grad():
            live = response_hidden(model, a)
        assert not torch.allclose(h[valid], live[valid], atol=1e-3)


def test_sliding_window_models_do_not_share(model64):
    sliding = copy.deepcopy(model64)
    sliding.config.layer_types = ["sliding_attention"] * sliding.config.num_hidden_layers
    assert prefix.shareable(model64) and not prefix.shareable(sliding)
