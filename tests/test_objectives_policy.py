"""Policy-gradient pieces, aggregation (split invariance) and the registry."""

from __future__ import annotations

import math

import pytest
import torch

from selfdistill.objectives import (
    DIVERGENCES,
    LOSSES,
    TARGETS,
    aggregate,
    antisd_advantage,
    clipped_pg_loss,
    generalized_jsd,
    group_advantages,
    make_target_fn,
    purified_target_logprobs,
    register_target,
    sdpo_importance_ratio,
    sequence_mean,
    srpo_loss,
    srpo_route,
    teacher_entropy_weights,
    token_mean,
)


def test_group_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    out = group_advantages(r)
    torch.testing.assert_close(out.advantages_G_N, r - r.mean(1, keepdim=True))
    assert out.zero_signal_fraction == pytest.approx(1 / 3)
    norm = group_advantages(r, normalize_std=True, eps=0.0)
    for g in (0, 2):
        rows = r[g].tolist()
        mu = sum(rows) / 4
        sd = math.sqrt(sum((x - mu) ** 2 for x in rows) / 3)
        torch.testing.assert_close(norm.advantages_G_N[g], torch.tensor([(x - mu) / sd for x in rows]))
    assert torch.isfinite(group_advantages(r, normalize_std=True).advantages_G_N).all()
    assert group_advantages(torch.ones(2, 1), normalize_std=True).advantages_G_N.abs().sum() == 0
    with pytest.raises(ValueError, match=r"\[G, N\]"):
        group_advantages(torch.ones(4))


def test_clipped_pg_loss_brute_force_and_gradient():
    torch.manual_seed(0)
    new = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    old = new.detach() + 0.4 * torch.randn(3, 4, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    got = clipped_pg_loss(new, old, adv, mask)
    for b in range(3):
        for t in range(4):
            rho = math.exp(new[b, t].item() - old[b, t].item())
            a = adv[b].item()
            want = -min(rho * a, min(max(rho, 0.8), 1.28) * a) if mask[b, t] else 0.0
            assert got[b, t].item() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert torch.autograd.gradcheck(lambda x: clipped_pg_loss(x, old, adv, mask), (new,))
    torch.testing.assert_close(clipped_pg_loss(new, old, adv[:, None].expand(3, 4), mask), got)


def test_srpo_route_and_loss():
    correct = torch.tensor([1, 0, 0, 1])
    sib = torch.tensor([1, 1, 0, 0])
    z = srpo_route(correct, sib)
    assert z.tolist() == [False, True, False, False]
    pg, dist, w = torch.full((4, 2), 1.0), torch.full((4, 2), 5.0), torch.full((4, 2), 0.5)
    out = srpo_loss(pg, dist, z, w)
    assert out[:, 0].tolist() == [1.0, 2.5, 1.0, 1.0]


def test_teacher_entropy_weights():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    w = teacher_entropy_weights(logits, beta_h=2.0)
    torch.testing.assert_close(w, torch.tensor([[math.exp(-2 * math.log(4)), 1.0]], dtype=torch.float64))
    minus_inf = torch.tensor([[0.0, -math.inf]])
    assert teacher_entropy_weights(minus_inf).item() == pytest.approx(1.0)


def test_antisd_advantage_and_importance_ratio():
    adv = torch.tensor([1.0, -1.0])
    u = torch.tensor([[0.0, 2.0], [-3.0, 1.0]], requires_grad=True)
    out = antisd_advantage(adv, u, lam=0.5)
    phi = lambda x: 0.5 * (math.log1p(math.exp(x)) - math.log(2))  # noqa: E731
    want = [[1.0 - 0.5 * phi(0.0), 1.0 - 0.5 * phi(2.0)], [-1.0 - 0.5 * phi(-3.0), -1.0 - 0.5 * phi(1.0)]]
    torch.testing.assert_close(out, torch.tensor(want))
    assert not out.requires_grad
    new = torch.tensor([[0.0, 1.0, -50.0]], requires_grad=True)
    ratio = sdpo_importance_ratio(new, torch.zeros(1, 3))
    torch.testing.assert_close(ratio, torch.tensor([[1.0, 2.0, math.exp(-20.0)]]))
    assert not ratio.requires_grad


# ----- aggregation -----------------------------------------------------------------------------

def _values(param, x_B_T):
    return (x_B_T * param).sin() ** 2  # any differentiable per-token values


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_token_mean_is_split_invariant(splits):
    torch.manual_seed(1)
    x = torch.randn(4, 6, dtype=torch.float64)
    mask = (torch.rand(4, 6) > 0.3).long()
    mask[2] = 0  # a sequence with no valid token
    param = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    full = token_mean(_values(param, x), mask)
    (g_full,) = torch.autograd.grad(full, param)
    n = int(mask.sum())
    parts = [token_mean(_values(param, xb), mb, num_tokens_global=n)
             for xb, mb in zip(x.chunk(splits), mask.chunk(splits))]
    total = sum(parts)
    (g_split,) = torch.autograd.grad(total, param)
    torch.testing.assert_close(total, full, rtol=1e-14, atol=0)
    torch.testing.assert_close(g_split, g_full, rtol=1e-14, atol=0)
    manual = sum(_values(param, x)[b, t].item() for b in range(4) for t in range(6) if mask[b, t]) / n
    assert full.item() == pytest.approx(manual, rel=1e-14)


def test_sequence_mean_and_dispatch():
    v = torch.tensor([[1.0, 3.0, 100.0], [4.0, 0.0, 0.0], [7.0, 7.0, 7.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert sequence_mean(v, m).item() == pytest.approx((2.0 + 4.0 + 0.0) / 3)
    assert aggregate(v, m, mode="sequence", num_global=6).item() == pytest.approx(1.0)
    assert aggregate(v, m).item() == pytest.approx(8.0 / 3)
    assert token_mean(v, torch.zeros_like(m)).item() == 0.0
    with pytest.raises(KeyError, match="token"):
        aggregate(v, m, mode="median")


# ----- registry --------------------------------------------------------------------------------

def test_registry_names_and_errors():
    assert DIVERGENCES.names() == ["forward_kl", "jsd", "reverse_kl"]
    assert TARGETS.names() == ["purified", "raw", "trust_region"]
    assert LOSSES.names() == ["distill", "grpo", "srpo"]
    assert DIVERGENCES["jsd"] is generalized_jsd
    with pytest.raises(KeyError, match="valid names: forward_kl, jsd, reverse_kl"):
        DIVERGENCES["kl"]
    with pytest.raises(ValueError, match="already registered"):
        register_target("raw")(lambda logits: logits)


def test_registry_targets_match_functions():
    torch.manual_seed(2)
    t, r, a, s = (torch.randn(2, 3, 7, dtype=torch.float64) for _ in range(4))
    fn = make_target_fn("purified", beta=0.5, clip=3.0)
    assert fn.roles == ("teacher", "refonly", "anchor")
    torch.testing.assert_close(fn({"teacher": t, "refonly": r, "anchor": a}),
                               purified_target_logprobs(t, r, a, beta=0.5, clip=3.0))
    torch.testing.assert_close(make_target_fn("raw")({"teacher": t}), t.log_softmax(-1))
    tr = make_target_fn("trust_region", r=0.5)
    assert tr.roles == ("teacher", "live")
    torch.testing.assert_close(tr({"teacher": t, "live": s, "student": a}), ((t + s) / 2).log_softmax(-1))


def test_purified_student_anchor():
    torch.manual_seed(3)
    t, r, s = (torch.randn(2, 3, 7, dtype=torch.float64) for _ in range(3))
    fn = make_target_fn("purified", anchor="student", clip=5.0)
    assert fn.roles == ("teacher", "refonly", "student")
    torch.testing.assert_close(fn({"teacher": t, "refonly": r, "student": s}),
                               purified_target_logprobs(t, r, s, clip=5.0))
    with pytest.raises(ValueError, match="anchor"):
        make_target_fn("purified", anchor="ema")({"teacher": t, "refonly": r, "student": s})
