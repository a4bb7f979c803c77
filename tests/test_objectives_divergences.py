"""Divergences vs a plain float64 brute force (loops over the vocabulary), gradients, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfdistill.objectives import (
    forward_kl,
    generalized_jsd,
    restrict_support,
    reverse_kl,
    sdpo_alpha_to_beta,
)
from selfdistill.objectives.divergences import divergence_terms

SETTINGS = settings(max_examples=40, deadline=None)


# ----- brute force -----------------------------------------------------------------------------

def _log_softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


def _plogr(p: float, q: float) -> float:
    return 0.0 if p == 0.0 else p * math.log(p / q)


def brute_divergence(s_logits, t_logprobs, *, beta, tau=1.0, clip=None, support="full", k=3, tail=True):
    """One position: lists of length V -> float."""
    ps = [math.exp(x) for x in _log_softmax([x / tau for x in s_logits])]
    pt = [math.exp(x) for x in t_logprobs]
    if support != "full":
        side = pt if support == "teacher_topk" else ps
        ids = sorted(range(len(side)), key=lambda v: -side[v])[:k]
        ps_k, pt_k = [ps[i] for i in ids], [pt[i] for i in ids]
        if tail:
            ps, pt = ps_k + [1.0 - sum(ps_k)], pt_k + [1.0 - sum(pt_k)]
        else:
            ps, pt = [p / sum(ps_k) for p in ps_k], [p / sum(pt_k) for p in pt_k]
    total = 0.0
    for a, b in zip(pt, ps):
        if beta == 0.0:
            term = _plogr(a, b)
        elif beta == 1.0:
            term = _plogr(b, a)
        else:
            m = beta * a + (1 - beta) * b
            term = beta * _plogr(a, m) + (1 - beta) * _plogr(b, m)
        total += term if clip is None else min(term, clip)
    return total


def brute_batch(s, t, **kw):
    out = torch.empty(s.shape[:-1], dtype=torch.float64)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in s.shape[:-1]]).reshape(-1, s.dim() - 1):
        i = tuple(idx.tolist())
        out[i] = brute_divergence(s[i].tolist(), t[i].tolist(), **kw)
    return out


def make(seed: int, shape=(2, 3, 9), scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    t = (scale * torch.randn(shape, generator=g, dtype=torch.float64)).log_softmax(-1).to(dtype)
    return s, t


# ----- against brute force ---------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("support,tail", [("full", True), ("teacher_topk", True), ("student_topk", True),
                                          ("teacher_topk", False), ("student_topk", False)])
def test_matches_brute_force(beta, support, tail):
    s, t = make(int(beta * 10) + len(support))
    got = generalized_jsd(s, t, beta=beta, support=support, topk=3, tail=tail, temperature=1.3)
    want = brute_batch(s, t, beta=beta, tau=1.3, support=support, k=3, tail=tail)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_token_clip_matches_brute_force_and_bounds_terms(beta):
    s, t = make(7)
    clip = 0.05
    got = generalized_jsd(s, t, beta=beta, token_clip=clip)
    torch.testing.assert_close(got, brute_batch(s, t, beta=beta, clip=clip), rtol=1e-10, atol=1e-12)
    assert bool((got <= clip * s.shape[-1] + 1e-12).all())
    unclipped = generalized_jsd(s, t, beta=beta)
    assert bool((got <= unclipped + 1e-12).all())


def test_explicit_topk_ids_equal_student_topk():
    s, t = make(3)
    ids = s.topk(4, dim=-1).indices
    torch.testing.assert_close(generalized_jsd(s, t, topk_ids=ids),
                               generalized_jsd(s, t, support="student_topk", topk=4))


def test_mask_zeroes_positions_and_kl_wrappers():
    s, t = make(4)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    got = generalized_jsd(s, t, beta=0.5, mask=mask)
    assert bool((got[mask == 0] == 0).all())
    torch.testing.assert_close(forward_kl(s, t), brute_batch(s, t, beta=0.0))
    torch.testing.assert_close(reverse_kl(s, t), brute_batch(s, t, beta=1.0))


def test_masked_garbage_does_not_leak_nan():
    s, t = make(5)
    s = s.clone()
    s[0, 0] = float("nan")
    mask = torch.ones(2, 3)
    mask[0, 0] = 0
    assert torch.isfinite(generalized_jsd(s, t, mask=mask)).all()


def test_dtypes():
    s, t = make(6)
    assert generalized_jsd(s, t).dtype == torch.float64
    assert generalized_jsd(s.float(), t.float()).dtype == torch.float32
    bf = generalized_jsd(s.bfloat16(), t.float())
    assert bf.dtype == torch.float32
    torch.testing.assert_close(bf.double(), generalized_jsd(s.bfloat16().double(), t), rtol=1e-4, atol=1e-5)


def test_minus_inf_target_entries_are_finite():
    s, t = make(8, shape=(1, 2, 5))
    t_logits = torch.tensor([[0.0, 1.0, -math.inf, 2.0, -math.inf]] * 2, dtype=torch.float64)[None]
    t = t_logits.log_softmax(-1)
    s = s.clone().requires_grad_(True)
    for beta in (0.0, 0.5):  # (reverse KL to a target with zeros is infinite)
        d = generalized_jsd(s, t, beta=beta)
        want = brute_batch(s.detach(), torch.where(t > -math.inf, t, torch.full_like(t, -1e300)), beta=beta)
        torch.testing.assert_close(d.detach(), want)
        d.sum().backward()
        assert torch.isfinite(s.grad).all()
        s.grad = None


def test_bad_inputs_raise_clearly():
    s, t = make(9)
    with pytest.raises(ValueError, match="same shape"):
        generalized_jsd(s, t[..., :-1])
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, t, beta=1.5)
    with pytest.raises(ValueError, match="support"):
        generalized_jsd(s, t, support="middle")
    with pytest.raises(ValueError, match="mask"):
        generalized_jsd(s, t, mask=torch.ones(3))


def test_sdpo_alpha_convention_is_the_same_mixture():
    """SDPO code: m = (1-a) P_s + a P_t, loss = lerp(KL(P_s||m), KL(P_t||m), a)."""
    s, t = make(10)
    a = 0.3
    ls = s.log_softmax(-1)
    log_m = torch.logsumexp(torch.stack([ls + math.log(1 - a), t + math.log(a)]), dim=0)
    kl_t = (t.exp() * (t - log_m)).sum(-1)
    kl_s = (ls.exp() * (ls - log_m)).sum(-1)
    sdpo = torch.lerp(kl_s, kl_t, a)
    torch.testing.assert_close(generalized_jsd(s, t, beta=sdpo_alpha_to_beta(a)), sdpo)


# ----- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(beta=0.0), dict(beta=0.3), dict(beta=0.5), dict(beta=1.0), dict(beta=0.5, temperature=0.7),
    dict(beta=0.5, token_clip=0.05), dict(beta=0.0, token_clip=0.05),
    dict(beta=0.5, support="teacher_topk", topk=3), dict(beta=0.5, support="student_topk", topk=3),
    dict(beta=0.0, support="student_topk", topk=3, tail=False),
])
def test_gradcheck_student_side(kw):
    s, t = make(11, shape=(2, 2, 6))
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: generalized_jsd(x, t, **kw), (s,), eps=1e-6, atol=1e-7)


def test_no_gradient_into_target():
    s, t = make(12)
    t = t.clone().requires_grad_(True)
    out = generalized_jsd(s.requires_grad_(True), t)
    out.sum().backward()
    assert t.grad is None and s.grad is not None


# ----- properties ------------------------------------------------------------------------------

supports = st.sampled_from([("full", True), ("teacher_topk", True), ("student_topk", True),
                            ("teacher_topk", False), ("student_topk", False)])


@SETTINGS
@given(seed=st.integers(0, 10_000), beta=st.floats(0.0, 1.0), sup=supports, scale=st.floats(0.1, 8.0))
def test_non_negative(seed, beta, sup, scale):
    s, t = make(seed, scale=scale)
    d = generalized_jsd(s, t, beta=beta, support=sup[0], tail=sup[1], topk=4)
    assert bool((d >= -1e-12).all())


@SETTINGS
@given(seed=st.integers(0, 10_000), beta=st.floats(0.0, 1.0), sup=supports)
def test_identical_inputs_give_zero(seed, beta, sup):
    s, _ = make(seed)
    d = generalized_jsd(s, s.log_softmax(-1), beta=beta, support=sup[0], tail=sup[1], topk=4)
    torch.testing.assert_close(d, torch.zeros_like(d), atol=1e-12, rtol=0)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_beta_limits(seed):
    s, t = make(seed)
    fwd, rev = brute_batch(s, t, beta=0.0), brute_batch(s, t, beta=1.0)
    torch.testing.assert_close(generalized_jsd(s, t, beta=0.0), fwd, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(generalized_jsd(s, t, beta=1.0), rev, rtol=1e-12, atol=1e-12)
    b = 1e-8  # the gap is O(b * E_t[P_t / P_s]), so a tiny b and a loose rtol
    torch.testing.assert_close(generalized_jsd(s, t, beta=b) / b, fwd, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(generalized_jsd(s, t, beta=1 - b) / b, rev, rtol=1e-3, atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(1, 9), side=st.sampled_from(["teacher_topk", "student_topk"]),
       tail=st.booleans(), scale=st.floats(0.1, 30.0))
def test_restricted_support_stays_normalized(seed, k, side, tail, scale):
    s, t = make(seed, scale=scale)
    s_sup, t_sup = restrict_support(s.log_softmax(-1), t, support=side, topk=k, tail=tail)
    assert s_sup.shape[-1] == k + int(tail)
    for x in (s_sup, t_sup):
        torch.testing.assert_close(x.exp().sum(-1), torch.ones(x.shape[:-1], dtype=x.dtype), atol=1e-9, rtol=0)


@SETTINGS
@given(seed=st.integers(0, 10_000), beta=st.floats(0.0, 1.0), clip=st.floats(1e-3, 1.0))
def test_each_clipped_term_is_bounded(seed, beta, clip):
    s, t = make(seed, scale=4.0)
    terms = divergence_terms(s.log_softmax(-1), t, beta).clamp(max=clip)
    assert bool((terms <= clip).all())
    torch.testing.assert_close(generalized_jsd(s, t, beta=beta, token_clip=clip), terms.sum(-1))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.sampled_from([0.0, 1.0]), tau=st.floats(0.5, 2.0),
       clip=st.one_of(st.none(), st.floats(0.001, 0.5)), zeros=st.integers(0, 3))
def test_closed_form_kl_gradient_equals_autograd_float64(seed, beta, tau, clip, zeros):
    """kl_with_logit_grad: value and d/d logits equal generalized_jsd + autograd (float64), with
    zero-probability target entries and clamped terms; the caller's logits are not modified."""
    from selfdistill.objectives.divergences import kl_with_logit_grad

    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(4, 11, generator=g, dtype=torch.float64) * 2).requires_grad_()
    t = torch.randn(4, 11, generator=g, dtype=torch.float64) * 2
    if beta == 0.0 and zeros:
        t[:, :zeros] = -math.inf  # P_t = 0 there (forward KL is finite)
    t = t.log_softmax(-1)
    want = generalized_jsd(z, t, beta=beta, temperature=tau, token_clip=clip)
    (want_grad,) = torch.autograd.grad(want.sum(), z)
    before = z.detach().clone()
    div, grad = kl_with_logit_grad(z.detach(), t, beta=beta, temperature=tau, token_clip=clip)
    assert torch.equal(z.detach(), before)
    torch.testing.assert_close(div, want.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, want_grad, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="beta 0"):
        kl_with_logit_grad(z.detach(), t, beta=0.5)
