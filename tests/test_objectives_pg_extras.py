"""DAPO / GRPO pieces beyond the clipped loss, each against a float64 brute force written with
Python floats: the tokens where the PPO clip binds (``clip_frac``), the k3 KL estimate to a
reference (value and gradient), DAPO's soft overlong punishment, SDPO's clipped importance
weight."""

from __future__ import annotations

import math

import pytest
import torch

from selfdistill import objectives as obj


def _binds_brute(lp_new, lp_old, adv, mask, eps_low, eps_high):
    out = []
    for b in range(len(lp_new)):
        row = []
        for t in range(len(lp_new[b])):
            rho = math.exp(lp_new[b][t] - lp_old[b][t])
            a = adv[b]
            unclipped, clipped = rho * a, min(max(rho, 1 - eps_low), 1 + eps_high) * a
            # the clip binds when the clipped surrogate is the (strictly) smaller one: -min() is
            # then the clipped term, whose gradient is 0
            row.append(bool(mask[b][t]) and clipped < unclipped - 1e-15)
        out.append(row)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_binds_where_the_clipped_term_is_the_minimum(seed):
    g = torch.Generator().manual_seed(seed)
    lp_old = -torch.rand(4, 9, generator=g, dtype=torch.float64) * 3
    lp_new = lp_old + torch.randn(4, 9, generator=g, dtype=torch.float64) * 0.4
    adv = torch.tensor([1.0, -1.0, 0.5, 0.0], dtype=torch.float64)
    mask = torch.rand(4, 9, generator=g) > 0.2
    got = obj.pg_clip_binds(lp_new, lp_old, adv, mask, eps_low=0.2, eps_high=0.28)
    want = _binds_brute(lp_new.tolist(), lp_old.tolist(), adv.tolist(), mask.tolist(), 0.2, 0.28)
    assert got.tolist() == want
    assert got.any()  # the draw moves some ratios past the clip: the test can fail
    # where it binds, the clipped loss has zero gradient (so "binds" means what clip_frac claims)
    new = lp_new.clone().requires_grad_(True)
    obj.clipped_pg_loss(new, lp_old, adv, mask, eps_low=0.2, eps_high=0.28).sum().backward()
    assert torch.all(new.grad[got] == 0)
    assert torch.all(new.grad[mask & ~got & (adv[:, None] != 0)] != 0)


def test_ratio_one_never_binds():
    lp = -torch.rand(3, 5, dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    assert not obj.pg_clip_binds(lp, lp.clone(), adv, torch.ones(3, 5, dtype=torch.bool)).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_k3_kl_value_and_gradient_equal_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(3, 7, generator=g, dtype=torch.float64) * 4
    ref = -torch.rand(3, 7, generator=g, dtype=torch.float64) * 4
    mask = torch.rand(3, 7, generator=g) > 0.3
    coef, n_global = 0.37, 25.0
    x = logp.clone().requires_grad_(True)
    loss = coef * obj.token_mean(obj.k3_kl(x, ref, mask), mask, num_tokens_global=n_global)
    loss.backward()
    want_loss, want_grad = 0.0, [[0.0] * 7 for _ in range(3)]
    for b in range(3):
        for t in range(7):
            if not mask[b, t]:
                continue
            d = float(ref[b, t]) - float(logp[b, t])
            want_loss += coef * (math.exp(d) - d - 1.0) / n_global
            want_grad[b][t] = coef * (1.0 - math.exp(d)) / n_global  # d/dlogp of exp(d) - d - 1
    assert float(loss.detach()) == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(x.grad, torch.tensor(want_grad, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    assert float(loss.detach()) > 0
    assert torch.autograd.gradcheck(lambda y: obj.k3_kl(y, ref, mask), (logp.clone().requires_grad_(True),))


def test_k3_kl_is_zero_with_zero_gradient_at_the_reference():
    logp = -torch.rand(2, 4, dtype=torch.float64)
    x = logp.clone().requires_grad_(True)
    kl = obj.k3_kl(x, logp)
    kl.sum().backward()
    assert torch.all(kl == 0) and torch.all(x.grad == 0)


@pytest.mark.parametrize("max_len,buffer,penalty", [(20, 5, 1.0), (16, 16 - 1, 0.5), (1024, 256, 2.0)])
def test_overlong_penalty_equals_the_dapo_formula(max_len, buffer, penalty):
    lengths = list(range(0, max_len + 1)) + [max_len + 3]
    got = obj.overlong_penalty(torch.tensor(lengths), max_len=max_len, buffer=buffer, penalty=penalty)
    assert got.dtype == torch.float64
    for L, value in zip(lengths, got.tolist()):
        expected_len = max_len - buffer  # DAPO: L_max - L_cache
        if L <= expected_len:
            want = 0.0
        elif L <= max_len:
            want = (expected_len - L) / buffer * penalty
        else:
            want = -penalty
        assert value == pytest.approx(want, abs=1e-15), L
    assert got[-2] == -penalty and got[0] == 0  # full punishment at max_new_tokens


def test_overlong_penalty_off_with_no_buffer():
    assert torch.all(obj.overlong_penalty(torch.tensor([0, 5, 99]), max_len=10, buffer=0) == 0)


def test_sdpo_importance_weight_is_detached_and_clipped():
    now = torch.tensor([[0.0, -1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[math.log(3.0), -1.0 - math.log(0.5), -2.0]], dtype=torch.float64)
    w = obj.sdpo_importance_ratio(now, old, clip=2.0)
    assert not w.requires_grad
    assert w.tolist()[0] == pytest.approx([1 / 3, 0.5, 1.0], rel=1e-12)
    w2 = obj.sdpo_importance_ratio(old + math.log(5.0), old, clip=2.0)  # every ratio 5
    assert torch.all(w2 == 2.0)
