"""TopKSampler: the same distribution as HF's temperature -> top-k -> top-p warpers, drawn on k
candidates; checked against a float64 brute force, against HF's own warpers, and empirically."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from selfdistill.rollout.sampler import TopKSampler, candidate_probs


def brute_force(scores_V: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """float64 probabilities over the whole vocabulary, one token at a time."""
    s = scores_V.double() / temperature
    order = sorted(range(len(s)), key=lambda i: -float(s[i]))
    kept = order[: top_k] if top_k else order
    z = torch.stack([s[i] for i in kept]).softmax(0)
    probs = torch.zeros(len(s), dtype=torch.float64)
    above = 0.0
    for rank, i in enumerate(kept):
        if rank == 0 or above < top_p:
            probs[i] = z[rank]
        above += float(z[rank])
    return probs / probs.sum()


def scattered(scores_B_V, temperature, top_k, top_p):
    probs_B_K, ids_B_K = candidate_probs(scores_B_V, temperature, top_k, top_p)
    return torch.zeros(scores_B_V.shape, dtype=torch.float64).scatter_(-1, ids_B_K, probs_B_K.double())


def near_top_p_boundary(scores_V, temperature, top_k, top_p) -> bool:
    """True when a candidate's mass above sits within float32 rounding of top_p (ties too)."""
    s = (scores_V.double() / temperature).sort(descending=True).values
    s = s[:top_k] if top_k else s
    z = s.softmax(0)
    above = z.cumsum(0) - z
    return bool(((above - top_p).abs() < 1e-5).any()) or len(set(s.tolist())) < len(s)


params = st.tuples(st.floats(0.3, 2.0), st.integers(0, 12), st.floats(0.05, 1.0))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), p=params, V=st.integers(2, 40))
def test_candidate_probs_equal_float64_brute_force(seed, p, V):
    temperature, top_k, top_p = p
    scores = torch.randn(3, V, generator=torch.Generator().manual_seed(seed)) * 3
    for row in range(3):
        assume(not near_top_p_boundary(scores[row], temperature, top_k, top_p))
    got = scattered(scores, temperature, top_k, top_p)
    for row in range(3):
        want = brute_force(scores[row], temperature, top_k, top_p)
        assert torch.allclose(got[row], want, atol=1e-6), (got[row], want)
    assert torch.allclose(got.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), p=params)
def test_candidate_probs_equal_hf_warpers(seed, p):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    temperature, top_k, top_p = p
    scores = torch.randn(2, 50, generator=torch.Generator().manual_seed(seed)) * 3
    for row in range(2):
        assume(not near_top_p_boundary(scores[row], temperature, top_k, top_p))
    chain = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        chain.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p))
    hf = chain(torch.zeros(2, 1, dtype=torch.long), scores.clone()).softmax(-1).double()
    assert torch.allclose(scattered(scores, temperature, top_k, top_p), hf, atol=1e-6)


def test_draws_follow_the_distribution_and_scores_pick_the_draw():
    scores = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0, 0.5, 1.2]])
    sampler = TopKSampler(temperature=1.3, top_k=5, top_p=0.9)
    want = scattered(scores, 1.3, 5, 0.9)[0]
    torch.manual_seed(0)
    n = 20_000
    counts = torch.zeros(8, dtype=torch.float64)
    for _ in range(n // 500):
        out = sampler(None, scores.expand(500, 8))
        assert torch.isfinite(out).sum(-1).eq(1).all()  # exactly one finite score per row
        counts += torch.bincount(out.argmax(-1), minlength=8).double()
    freq = counts / n
    assert (freq[want == 0] == 0).all()  # tokens outside top-k / top-p are never drawn
    assert (freq - want).abs().max() < 0.012  # ~4 standard errors at n = 20k


def test_bad_temperature_is_a_clear_error():
    with pytest.raises(ValueError, match="temperature"):
        TopKSampler(temperature=0.0, top_k=5, top_p=1.0)
