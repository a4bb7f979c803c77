"""The chunked loss path gives the direct path's value and gradients (float64, tiny shapes)."""

from __future__ import annotations

import pytest
import torch

from selfdistill.objectives import chunked_distill_loss, direct_distill_loss, make_target_fn

B, T, H, V = 2, 7, 5, 13


def setup(seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    student = rnd(B, T, H).requires_grad_(True)
    weight = rnd(V, H).requires_grad_(True)
    b = rnd(V).requires_grad_(True) if bias else None
    hidden = {role: rnd(B, T, H) for role in ("teacher", "refonly", "anchor", "live")}
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, 5:] = 0
    mask[1, 0] = 0
    return student, weight, b, hidden, mask


def run(path, student, weight, b, **kw):
    out = path(student, weight, bias_V=b, **kw)
    params = [x for x in (student, weight, b) if x is not None]
    grads = torch.autograd.grad(out.loss, params)
    return out, grads


CASES = [
    ("raw", {}, dict(beta=0.0, token_clip=0.05)),
    ("raw", {}, dict(beta=0.5, temperature=1.2)),
    ("purified", dict(beta=1.0, clip=2.0), dict(beta=0.5, token_clip=0.05)),
    ("purified", dict(beta=0.5, clip=10.0, temperature=1.2), dict(beta=0.0, temperature=1.2)),
    ("purified", {}, dict(beta=0.5, support="student_topk", topk=4)),
    ("trust_region", dict(r=0.3), dict(beta=0.5, support="teacher_topk", topk=3, tail=False)),
    ("purified", dict(anchor="student"), dict(beta=0.5)),
    # beta 0 / 1 on the full vocabulary take the closed-form gradient (kl_with_logit_grad)
    ("raw", {}, dict(beta=1.0, temperature=0.8, token_clip=0.05)),
    ("purified", {}, dict(beta=1.0)),
]


@pytest.mark.parametrize("target,target_kw,div_kw", CASES)
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_chunked_equals_direct(target, target_kw, div_kw, chunk_size):
    student, weight, b, hidden, mask = setup(bias=chunk_size == 3, seed=chunk_size)
    fn = make_target_fn(target, **target_kw)
    kw = dict(target_hidden=hidden, target_fn=fn, mask_B_T=mask, divergence_kwargs=div_kw)
    direct, g_direct = run(direct_distill_loss, student, weight, b, **kw)
    chunked, g_chunked = run(chunked_distill_loss, student, weight, b, chunk_size=chunk_size, **kw)
    torch.testing.assert_close(chunked.loss, direct.loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(chunked.per_position_B_T, direct.per_position_B_T, rtol=1e-12, atol=1e-14)
    for gc, gd in zip(g_chunked, g_direct):
        torch.testing.assert_close(gc, gd, rtol=1e-10, atol=1e-13)
    assert float(direct.loss.detach()) > 0 and all(float(g.abs().sum()) > 0 for g in g_direct)


@pytest.mark.parametrize("closed_form", [False, True])
def test_weights_topk_ids_softcap_and_global_count(closed_form):
    student, weight, b, hidden, mask = setup(seed=5, bias=closed_form)
    g = torch.Generator().manual_seed(9)
    weights = torch.rand(B, T, generator=g, dtype=torch.float64)
    topk_ids = torch.randint(0, V, (B, T, 4), generator=g)
    div_kw = dict(beta=0.0, token_clip=0.1, temperature=1.3) if closed_form else dict(beta=0.5, topk_ids=topk_ids)
    kw = dict(target_hidden=hidden, target_fn=make_target_fn("purified"), mask_B_T=mask,
              divergence_kwargs=div_kw, weights_B_T=weights, logit_softcap=3.0, num_tokens_global=40)
    direct, g_direct = run(direct_distill_loss, student, weight, b, **kw)
    chunked, g_chunked = run(chunked_distill_loss, student, weight, b, chunk_size=4, **kw)
    torch.testing.assert_close(chunked.loss, direct.loss)
    for gc, gd in zip(g_chunked, g_direct):
        torch.testing.assert_close(gc, gd)
    # the loss is sum(weights * div over valid tokens) / 40
    manual = (direct.per_position_B_T * weights * mask).sum() / 40
    torch.testing.assert_close(direct.loss, manual)


def test_frozen_weight_and_all_masked():
    student, weight, _, hidden, mask = setup(seed=6)
    weight = weight.detach()
    kw = dict(target_hidden=hidden, target_fn=make_target_fn("raw"), mask_B_T=mask)
    out = chunked_distill_loss(student, weight, chunk_size=2, **kw)
    out.loss.backward()
    assert student.grad is not None and bool((student.grad[0, 5:] == 0).all())
    empty = chunked_distill_loss(student, weight, **{**kw, "mask_B_T": torch.zeros(B, T)})
    assert float(empty.loss.detach()) == 0.0


def test_bad_inputs_raise():
    student, weight, _, hidden, mask = setup()
    fn = make_target_fn("purified")
    with pytest.raises(KeyError, match="refonly"):
        chunked_distill_loss(student, weight, target_hidden={"teacher": hidden["teacher"]}, target_fn=fn, mask_B_T=mask)
    with pytest.raises(ValueError, match="same response positions"):
        chunked_distill_loss(student, weight, target_hidden={**hidden, "anchor": hidden["anchor"][:, :3]},
                             target_fn=fn, mask_B_T=mask)
    with pytest.raises(ValueError, match="mask_B_T"):
        chunked_distill_loss(student, weight, target_hidden=hidden, target_fn=fn, mask_B_T=mask,
                             divergence_kwargs={"mask": mask})


@pytest.mark.parametrize("beta", [0.5, 0.0])
def test_bfloat16_hidden_states_close_to_float64(beta):
    student, weight, _, hidden, mask = setup(seed=7)
    kw = dict(target_hidden=hidden, target_fn=make_target_fn("purified"), mask_B_T=mask,
              divergence_kwargs=dict(beta=beta))
    _, (gh64, gw64) = run(direct_distill_loss, student, weight, None, **kw)
    s16 = student.detach().bfloat16().requires_grad_(True)
    w16 = weight.detach().bfloat16().requires_grad_(True)
    kw16 = {**kw, "target_hidden": {k: v.bfloat16() for k, v in hidden.items()}}
    out, (gh16, gw16) = run(chunked_distill_loss, s16, w16, None, chunk_size=2, **kw16)
    assert out.loss.dtype == torch.float32 and gh16.dtype == torch.bfloat16 and gw16.dtype == torch.bfloat16
    torch.testing.assert_close(gw16.double(), gw64, rtol=0.1, atol=0.02)
    torch.testing.assert_close(gh16.double(), gh64, rtol=0.1, atol=0.02)


def test_per_role_output_weights():
    """Full fine-tuning with a frozen teacher: each role projects with its own output layer."""
    student, weight, b, hidden, mask = setup(seed=8, bias=True)
    g = torch.Generator().manual_seed(10)
    tw = {"teacher": torch.randn(V, H, generator=g, dtype=torch.float64),
          "refonly": torch.randn(V, H, generator=g, dtype=torch.float64)}
    tb = {"teacher": torch.randn(V, generator=g, dtype=torch.float64)}
    kw = dict(target_hidden=hidden, target_fn=make_target_fn("purified"), mask_B_T=mask,
              divergence_kwargs=dict(beta=0.5), target_weights=tw, target_biases=tb)
    direct, g_direct = run(direct_distill_loss, student, weight, b, **kw)
    chunked, g_chunked = run(chunked_distill_loss, student, weight, b, chunk_size=3, **kw)
    torch.testing.assert_close(chunked.loss, direct.loss)
    for gc, gd in zip(g_chunked, g_direct):
        torch.testing.assert_close(gc, gd)
    shared, _ = run(direct_distill_loss, student, weight, b, **{**kw, "target_weights": None, "target_biases": None})
    assert not torch.allclose(shared.loss, direct.loss)
    # by hand: the teacher's logits use its own weight and bias
    t_logits = hidden["teacher"] @ tw["teacher"].T + tb["teacher"]
    r_logits = hidden["refonly"] @ tw["refonly"].T  # own weight, no bias given: no bias
    a_logits = hidden["anchor"] @ weight.detach().T + b.detach()
    from selfdistill.objectives import generalized_jsd, purified_target_logprobs, token_mean
    target = purified_target_logprobs(t_logits, r_logits, a_logits)
    div = generalized_jsd(student @ weight.T + b, target, beta=0.5, mask=mask)
    torch.testing.assert_close(direct.loss, token_mean(div, mask))
    with pytest.raises(ValueError, match="target_weights"):
        chunked_distill_loss(student, weight, **{**kw, "target_weights": {"teacher": tw["teacher"][:3]}})


@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_observe_sees_every_valid_position_once_with_the_direct_logits(chunk_size):
    """observe gets each chunk's projected logits (extra roles included) in mask order; the
    concatenation equals the direct path's logits at the valid positions."""
    student, weight, _, hidden, mask = setup(3)
    fn = make_target_fn("raw")  # reads only "teacher": refonly / anchor are observe-only roles
    seen = {"chunked": [], "direct": []}
    for name, path, extra in (("chunked", chunked_distill_loss, dict(chunk_size=chunk_size)),
                              ("direct", direct_distill_loss, {})):
        path(student, weight, target_hidden=hidden, target_fn=fn, mask_B_T=mask,
             observe=lambda lg, name=name: seen[name].append({k: v.clone() for k, v in lg.items()}), **extra)
    n_valid = int(mask.sum())
    assert len(seen["chunked"]) == -(-n_valid // chunk_size)
    assert len(seen["direct"]) == 1
    for role in ("teacher", "refonly", "anchor", "student"):
        got = torch.cat([c[role] for c in seen["chunked"]])
        want = seen["direct"][0][role]
        assert got.shape == (n_valid, V)
        torch.testing.assert_close(got, want)
        assert not got.requires_grad
    expected = hidden["teacher"][mask.bool()] @ weight.detach().T
    torch.testing.assert_close(seen["direct"][0]["teacher"], expected)
