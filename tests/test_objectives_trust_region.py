"""The registry's SDPO trust-region target (issue 19 item 6): it mixes the reference teacher and
the CURRENT student, both on the teacher context ("teacher", "live"), never the question-only
student pass. float64 brute force per vocabulary entry, gradients, r = 0 and r = 1 ends."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfdistill.objectives import chunked_distill_loss, generalized_jsd, make_target_fn

SETTINGS = settings(max_examples=30, deadline=None)


def brute_target(ref: list[float], live: list[float], r: float, tau: float) -> list[float]:
    """log softmax((ref + r (live - ref)) / tau) of one position, with Python floats."""
    z = [(a + r * (b - a)) / tau for a, b in zip(ref, live)]
    m = max(z)
    lse = m + math.log(sum(math.exp(x - m) for x in z))
    return [x - lse for x in z]


def logits(seed: int, shape=(2, 3, 11)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]


@SETTINGS
@given(seed=st.integers(0, 10_000), r=st.floats(0.0, 1.0), tau=st.floats(0.5, 2.0))
def test_matches_brute_force(seed, r, tau):
    ref, live, student = logits(seed)
    got = make_target_fn("trust_region", r=r, temperature=tau)({"teacher": ref, "live": live, "student": student})
    for idx in [(0, 0), (1, 2)]:
        want = brute_target(ref[idx].tolist(), live[idx].tolist(), r, tau)
        torch.testing.assert_close(got[idx], torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_ends_and_independence_from_the_question_only_pass():
    ref, live, student = logits(1)
    fn0 = make_target_fn("trust_region", r=0.0)
    fn1 = make_target_fn("trust_region", r=1.0)
    # r = 0 is the reference teacher, whatever the live and student passes
    torch.testing.assert_close(fn0({"teacher": ref, "live": live, "student": student}), ref.log_softmax(-1))
    # r = 1 is the current policy ON THE TEACHER CONTEXT: the loss against the question-only
    # student is not 0 (the old target lerped toward "student" and gave exactly 0 here)
    target = fn1({"teacher": ref, "live": live, "student": student})
    torch.testing.assert_close(target, live.log_softmax(-1))
    loss = generalized_jsd(student, target, beta=0.5)
    assert float(loss.min()) > 1e-3
    # the question-only pass never enters the target
    other = fn1({"teacher": ref, "live": live, "student": student + 5 * torch.randn_like(student)})
    assert torch.equal(other, target)


def test_missing_live_is_a_clear_error():
    ref, _, student = logits(2)
    with pytest.raises(KeyError, match="live.*TEACHER context"):
        make_target_fn("trust_region", r=0.5)({"teacher": ref, "student": student})


def test_gradient_reaches_only_the_student_and_matches_autograd_of_brute_force():
    ref, live, student = logits(3, shape=(1, 2, 6))
    s = student.clone().requires_grad_(True)
    target = make_target_fn("trust_region", r=0.4, temperature=1.3)({"teacher": ref, "live": live, "student": s})
    assert not target.requires_grad
    loss = generalized_jsd(s, target, beta=0.5, temperature=1.3).sum()
    (grad,) = torch.autograd.grad(loss, s)
    # brute force: JSD_0.5 written with the brute-force target, differentiated by autograd
    s2 = student.clone().requires_grad_(True)
    t = torch.tensor([[brute_target(ref[0, i].tolist(), live[0, i].tolist(), 0.4, 1.3) for i in range(2)]],
                     dtype=torch.float64)
    ps, pt = (s2 / 1.3).softmax(-1), t.exp()
    m = 0.5 * ps + 0.5 * pt
    want = (0.5 * pt * (pt / m).log() + 0.5 * ps * (ps / m).log()).sum()
    (want_grad,) = torch.autograd.grad(want, s2)
    torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: generalized_jsd(x, target, beta=0.5, temperature=1.3), (s.detach().requires_grad_(True),))


def test_chunked_path_requires_the_live_hidden_states():
    g = torch.Generator().manual_seed(4)
    h = lambda: torch.randn(1, 3, 4, generator=g, dtype=torch.float64)  # noqa: E731
    w = torch.randn(9, 4, generator=g, dtype=torch.float64)
    fn = make_target_fn("trust_region", r=0.5)
    with pytest.raises(KeyError, match="live"):
        chunked_distill_loss(h(), w, target_hidden={"teacher": h()}, target_fn=fn, mask_B_T=torch.ones(1, 3))
    out = chunked_distill_loss(h(), w, target_hidden={"teacher": h(), "live": h()}, target_fn=fn,
                               mask_B_T=torch.ones(1, 3), divergence_kwargs=dict(beta=1.0))
    assert float(out.loss) > 0
