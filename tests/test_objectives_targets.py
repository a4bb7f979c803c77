"""Targets and diagnostics vs plain float64 brute force; properties of the purified target."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfdistill.objectives import (
    blank_decomposition,
    distribution_summary,
    pmi_diagnostics,
    purified_delta,
    purified_target_logprobs,
    raw_target_logprobs,
    top_share,
    trust_region_logits,
)

SETTINGS = settings(max_examples=40, deadline=None)


def _log_softmax(xs):
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def _cos(a, b):
    na, nb = _norm(a), _norm(b)
    return 0.0 if na == 0 or nb == 0 else sum(x * y for x, y in zip(a, b)) / (na * nb)


def logits(seed, n=3, shape=(2, 3, 8), scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(n)]


def brute_purified(t_logits, r_logits, a_logits, beta, clip, center, tau):
    lt, lr, la = (_log_softmax([x / tau for x in v]) for v in (t_logits, r_logits, a_logits))
    d = [x - y for x, y in zip(lt, lr)]
    if center:
        mu = sum(d) / len(d)
        d = [x - mu for x in d]
    d = [clip * math.tanh(x / clip) for x in d]
    return _log_softmax([a + x / beta for a, x in zip(la, d)])


@pytest.mark.parametrize("beta,clip,center,tau", [(1.0, 10.0, True, 1.0), (0.5, 2.0, True, 1.3),
                                                  (2.0, 0.5, False, 0.8)])
def test_purified_matches_brute_force(beta, clip, center, tau):
    t, r, a = logits(1)
    got = purified_target_logprobs(t, r, a, beta=beta, clip=clip, center=center, temperature=tau)
    for i in range(2):
        for j in range(3):
            want = brute_purified(t[i, j].tolist(), r[i, j].tolist(), a[i, j].tolist(), beta, clip, center, tau)
            torch.testing.assert_close(got[i, j], torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_targets_carry_no_gradient_and_keep_dtype():
    t, r, a = (x.requires_grad_(True) for x in logits(2))
    out = purified_target_logprobs(t, r, a)
    assert not out.requires_grad and out.dtype == torch.float64
    assert purified_target_logprobs(t.float(), r.bfloat16(), a.float()).dtype == torch.float32
    assert not raw_target_logprobs(t).requires_grad
    torch.testing.assert_close(raw_target_logprobs(t, temperature=2.0), (t.detach() / 2).log_softmax(-1))


def test_purified_shape_mismatch_raises():
    t, r, a = logits(3)
    with pytest.raises(ValueError, match="same response ids"):
        purified_target_logprobs(t, r[..., :-1], a)


@SETTINGS
@given(seed=st.integers(0, 10_000), beta=st.floats(0.2, 5.0), clip=st.floats(0.1, 20.0), center=st.booleans())
def test_purified_is_normalized_and_tanh_bounded(seed, beta, clip, center):
    t, r, a = logits(seed, scale=5.0)
    out = purified_target_logprobs(t, r, a, beta=beta, clip=clip, center=center)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 3, dtype=torch.float64))
    d = purified_delta(t.log_softmax(-1), r.log_softmax(-1), clip=clip, center=center)
    assert bool((d.abs() <= clip + 1e-12).all())


@SETTINGS
@given(seed=st.integers(0, 10_000), beta=st.floats(0.2, 5.0))
def test_purified_closed_form_when_clip_is_huge(seed, beta):
    t, r, a = logits(seed)
    lt, lr, la = t.log_softmax(-1), r.log_softmax(-1), a.log_softmax(-1)
    unnorm = la.exp() * torch.exp((lt - lr) / beta)
    want = unnorm / unnorm.sum(-1, keepdim=True)
    for center in (True, False):  # centring is a per-position constant: irrelevant without the clip
        got = purified_target_logprobs(t, r, a, beta=beta, clip=1e9, center=center).exp()
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)


def test_trust_region_is_lerp():
    ref, stu = logits(4, n=2)
    stu.requires_grad_(True)
    out = trust_region_logits(ref, stu, 0.25)
    assert not out.requires_grad
    torch.testing.assert_close(out, 0.75 * ref + 0.25 * stu.detach())
    torch.testing.assert_close(trust_region_logits(ref, stu, 0.0), ref)
    with pytest.raises(ValueError):
        trust_region_logits(ref, stu, 1.5)


# ----- diagnostics -----------------------------------------------------------------------------

def test_pmi_diagnostics_match_brute_force():
    t, r, s = logits(5)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    clip = 1.5
    out = pmi_diagnostics(t, r, s, mask, clip=clip)
    rows = [(i, j) for i in range(2) for j in range(3) if mask[i, j]]
    cos_tr, cos_ti, ratio, klr, bent, n_entries = [], [], [], [], 0, 0
    for i, j in rows:
        lt, lr, ls = (_log_softmax(x[i, j].tolist()) for x in (t, r, s))
        dt = [a - b for a, b in zip(lt, ls)]
        dr = [a - b for a, b in zip(lr, ls)]
        di = [a - b for a, b in zip(lt, lr)]
        cos_tr.append(_cos(dt, dr))
        cos_ti.append(_cos(dt, di))
        ratio.append(_norm(dr) / _norm(dt))
        kl_tr = sum(math.exp(a) * (a - b) for a, b in zip(lt, lr))
        kl_ts = sum(math.exp(a) * (a - b) for a, b in zip(lt, ls))
        klr.append(kl_tr / kl_ts)
        mu = sum(di) / len(di)
        for x in di:
            x -= mu
            bent += abs(clip * math.tanh(x / clip) - x) > 0.01 * abs(x)
            n_entries += 1
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert out["cos_total_ref"] == pytest.approx(mean(cos_tr), rel=1e-10)
    assert out["cos_total_it"] == pytest.approx(mean(cos_ti), rel=1e-10)
    assert out["norm_ratio_ref_total"] == pytest.approx(mean(ratio), rel=1e-10)
    assert out["kl_ratio_ref_mean"] == pytest.approx(mean(klr), rel=1e-10)
    assert out["kl_ratio_ref_median"] == pytest.approx(sorted(klr)[(len(klr) - 1) // 2], rel=1e-10)
    assert out["tanh_clip_fraction"] == pytest.approx(bent / n_entries)
    assert out["num_positions"] == 4 and out["kl_ratio_ref_per_position"].shape == (4,)
    torch.testing.assert_close(out["cos_total_ref_per_position"], torch.tensor(cos_tr, dtype=torch.float64))


def test_pmi_diagnostics_degenerate_is_zero_not_nan():
    t, _, _ = logits(6)
    out = pmi_diagnostics(t, t, t)
    scalars = {k: v for k, v in out.items() if not k.endswith("_per_position")}
    assert all(math.isfinite(v) for v in scalars.values())
    assert out["cos_total_ref"] == 0.0 and out["norm_ratio_ref_total"] == 0.0
    assert out["degenerate_fraction"] == 1.0 and out["tanh_clip_fraction"] == 0.0
    empty = pmi_diagnostics(t, t, t, torch.zeros(2, 3))
    assert empty["num_positions"] == 0.0 and empty["cos_total_it"] == 0.0


def test_pmi_when_teacher_equals_reference_prediction():
    """If the reference alone explains the teacher (R = T), Delta_ref = Delta_total: cos 1, ratio 1."""
    t, _, s = logits(7)
    out = pmi_diagnostics(t, t, s)
    assert out["cos_total_ref"] == pytest.approx(1.0) and out["norm_ratio_ref_total"] == pytest.approx(1.0)
    assert out["cos_total_it"] == 0.0 and out["kl_ratio_ref_mean"] == 0.0


def test_blank_decomposition_matches_brute_force():
    s, r, b = logits(8)
    mask = torch.tensor([[1, 0, 1], [1, 1, 1]])
    out = blank_decomposition(s, r, b, mask)
    c1, c2, n1, n2, n3 = [], [], [], [], []
    for i in range(2):
        for j in range(3):
            if not mask[i, j]:
                continue
            ls, lr, lb = (_log_softmax(x[i, j].tolist()) for x in (s, r, b))
            dref = [x - y for x, y in zip(lr, ls)]
            shift = [x - y for x, y in zip(lb, ls)]
            rb = [x - y for x, y in zip(lr, lb)]
            c1.append(_cos(shift, dref)), c2.append(_cos(rb, dref))
            n1.append(_norm(dref)), n2.append(_norm(shift)), n3.append(_norm(rb))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    for key, ref in (("cos_blank_shift_ref", c1), ("cos_ref_over_blank_ref", c2), ("norm_ref", n1),
                     ("norm_blank_shift", n2), ("norm_ref_over_blank", n3)):
        assert out[key] == pytest.approx(mean(ref), rel=1e-10), key
    same = blank_decomposition(s, s, s)
    assert same["cos_blank_shift_ref"] == 0.0 and same["norm_ref"] == 0.0


def test_distribution_summary_and_top_share():
    x = torch.arange(1, 11, dtype=torch.float64) / 4  # 0.25 .. 2.5
    out = distribution_summary(x)
    assert out["mean"] == pytest.approx(float(x.mean()))
    assert out["median"] == float(x.median())  # lower median
    assert out["q10"] == 0.25 and out["q25"] == 0.75 and out["q75"] == 2.0 and out["q90"] == 2.25
    assert out["frac_above_1"] == pytest.approx(0.6)
    w = torch.zeros(10, dtype=torch.float64)
    w[-1] = 1.0
    weighted = distribution_summary(x, w)
    assert weighted["median"] == 2.5 and weighted["mean"] == 2.5 and weighted["frac_above_1"] == 1.0
    assert top_share(x, 0.1) == pytest.approx(2.5 / float(x.sum()))
    assert top_share(x, 0.25) == pytest.approx((2.5 + 2.25 + 2.0) / float(x.sum()))  # ceil(2.5) = 3
    assert top_share(torch.zeros(4)) == 0.0
    with pytest.raises(ValueError, match="at least one position"):
        distribution_summary(torch.zeros(0))
    with pytest.raises(ValueError, match="non-negative"):
        top_share(torch.tensor([-1.0, 2.0]))


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 50))
def test_distribution_summary_quantiles_are_ordered(seed, n):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    out = distribution_summary(x)
    assert out["q10"] <= out["q25"] <= out["median"] <= out["q75"] <= out["q90"]
    assert float(x.min()) <= out["mean"] <= float(x.max())
