"""Teacher handles: fixed, live, EMA (exact update), trust-region (lerp), checkpoints, eval."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from selfdistill.models import ForwardInputs, LoraSettings, apply_lora, load_model, make_teacher, response_logits

IDS = torch.tensor([[2, 2, 1, 520, 9531, 34, 47, 198], [1, 4093, 198, 34, 27, 19712, 8182, 2]])
MASK = (torch.arange(8) >= torch.tensor([[2], [0]])).long()
POS = (MASK.cumsum(-1) - 1).clamp(min=0)
START, T = 5, 3
BATCH = ForwardInputs(IDS, MASK, POS, START, T)


@functools.cache
def _tiny_base():
    return load_model("tiny-random")[0]


def tiny_model():
    """A fresh copy of tiny-random (loaded once: copying is much cheaper than loading)."""
    return copy.deepcopy(_tiny_base())


def lora_model(dropout: float = 0.0):
    return apply_lora(tiny_model(), LoraSettings(r=4, alpha=8, dropout=dropout))


def fake_step(model, seed: int) -> None:
    """Stand-in for an optimizer step: move every trainable parameter."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)


def student_logits(model):
    with torch.no_grad():
        return response_logits(model.eval(), BATCH)


@pytest.mark.parametrize("use_lora", [True, False])
def test_fixed_teacher_keeps_initial_outputs(use_lora):
    model = lora_model() if use_lora else tiny_model()
    teacher = make_teacher(model, "fixed")
    initial = teacher.logits(BATCH)
    torch.testing.assert_close(initial, student_logits(model))
    fake_step(model, seed=1)
    assert not torch.allclose(student_logits(model), initial, atol=1e-2)
    torch.testing.assert_close(teacher.logits(BATCH), initial, rtol=0, atol=0)
    hidden = teacher.hidden(BATCH)
    torch.testing.assert_close(hidden @ teacher.output_layer().weight_V_H.T, initial, rtol=1e-5, atol=1e-5)
    # the frozen copy (full fine-tune) survives a checkpoint round trip
    resumed = make_teacher(model, "fixed")
    resumed.load_state_dict(teacher.state_dict())
    torch.testing.assert_close(resumed.logits(BATCH), initial, rtol=0, atol=0)


def test_live_teacher_follows_the_student_without_grad():
    model = lora_model()
    teacher = make_teacher(model, "live")
    fake_step(model, seed=2)
    live = teacher.logits(BATCH)
    assert not live.requires_grad
    torch.testing.assert_close(live, student_logits(model))


def test_teacher_passes_run_in_eval_mode_and_restore_train_mode():
    model = lora_model(dropout=0.5)
    fake_step(model, seed=3)  # B != 0 so adapter dropout would change the outputs
    model.train()
    teacher = make_teacher(model, "live")
    first, second = teacher.logits(BATCH), teacher.logits(BATCH)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad():
        noisy = response_logits(model, BATCH)  # train mode: dropout active
    assert not torch.allclose(noisy, first, atol=1e-3)


@pytest.mark.parametrize("use_lora", [True, False])
def test_ema_update_is_exact(use_lora):
    model = lora_model() if use_lora else tiny_model()
    rate = 0.25
    teacher = make_teacher(model, "ema", rate=rate)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(teacher.ema) == set(trainable)
    expected = {n: p.detach().double().clone() for n, p in trainable.items()}
    for step in range(3):
        fake_step(model, seed=10 + step)
        teacher.after_step(model)
        for name, p in trainable.items():  # float64 reference of ema <- (1-rate) ema + rate student
            expected[name] = (1 - rate) * expected[name] + rate * p.detach().double()
            ema = teacher.ema[name].double()
            torch.testing.assert_close(ema, expected[name], rtol=0, atol=1e-6)
    # the teacher pass uses the EMA weights: compare with a model holding them explicitly
    student_before = {n: p.detach().clone() for n, p in trainable.items()}
    ema_logits = teacher.logits(BATCH)
    for name, p in trainable.items():
        assert torch.equal(p, student_before[name]), "the swap was not undone"
    with torch.no_grad():
        for name, p in trainable.items():
            p.copy_(expected[name].float())
    torch.testing.assert_close(ema_logits, student_logits(model), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        teacher.hidden(BATCH) @ teacher.output_layer().weight_V_H.T, ema_logits, rtol=1e-5, atol=1e-5
    )


def test_ema_moves_toward_the_student_and_checkpoints():
    model = lora_model()
    teacher = make_teacher(model, "ema", rate=0.5)
    fake_step(model, seed=4)
    target = student_logits(model)
    gaps = []
    for _ in range(4):
        teacher.after_step(model)
        gaps.append((teacher.logits(BATCH) - target).abs().max().item())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < gaps[0] / 2
    state = teacher.state_dict()
    other = make_teacher(model, "ema", rate=0.5)
    other.load_state_dict(state)
    torch.testing.assert_close(other.logits(BATCH), teacher.logits(BATCH), rtol=0, atol=0)
    with pytest.raises(ValueError, match="mode"):
        make_teacher(model, "live").load_state_dict(state)
    with pytest.raises(ValueError, match="rate"):
        make_teacher(model, "ema")


def test_trust_region_is_a_lerp_of_fixed_and_student():
    model = lora_model()
    r = 0.3
    teacher = make_teacher(model, "trust_region", r=r)
    ref = make_teacher(model, "fixed").logits(BATCH).double()
    fake_step(model, seed=5)
    student = student_logits(model).requires_grad_()
    mixed = teacher.logits(BATCH, student_logits_B_T_V=student)
    assert not mixed.requires_grad
    torch.testing.assert_close(
        mixed.double(), ref + r * (student.detach().double() - ref), rtol=0, atol=1e-5
    )
    with pytest.raises(ValueError, match="student_logits_B_T_V"):
        teacher.logits(BATCH)
    with pytest.raises(ValueError, match="teacher mode"):
        make_teacher(model, "frozen")
