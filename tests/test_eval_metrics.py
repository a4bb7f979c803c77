"""avg@k, unbiased pass@k (against math.comb), maj@k, thinking text, per-benchmark summaries."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfdistill.eval.metrics import (
    avg_at_k,
    maj_at_k,
    majority_vote,
    pass_at_k,
    summarize_samples,
    thinking_text,
)


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (4, 1, 2), (10, 3, 5), (16, 0, 8),
                                   (16, 15, 1), (100, 7, 50), (200, 1, 199)])
def test_pass_at_k_matches_closed_form(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), abs=1e-12)


def test_pass_at_k_large_n_stays_finite():
    # C(2000, 1000) overflows a float; the product form does not need it
    value = pass_at_k(2000, 3, 1000)
    assert value == pytest.approx(1 - math.comb(1997, 1000) / math.comb(2000, 1000), abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_bad_input(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


@st.composite
def nck(draw):
    n = draw(st.integers(1, 60))
    c = draw(st.integers(0, n))
    k = draw(st.integers(1, n))
    return n, c, k


@settings(max_examples=300, deadline=None)
@given(nck())
def test_pass_at_k_properties(args):
    n, c, k = args
    p = pass_at_k(n, c, k)
    assert 0.0 <= p <= 1.0
    assert p == pytest.approx(closed_form(n, c, k), abs=1e-9)
    if k < n:
        assert pass_at_k(n, c, k + 1) >= p - 1e-12  # monotone in k
    if c < n:
        assert pass_at_k(n, c + 1, k) >= p - 1e-12  # monotone in c
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)
    assert pass_at_k(n, 0, k) == 0.0


def test_avg_at_k():
    assert avg_at_k([[True, False], [True, True], [False, False]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="problem 1"):
        avg_at_k([[True], []])


def test_majority_vote_and_ties():
    assert majority_vote(["3", "4", "4", None]) == 1
    assert majority_vote(["5", "7", "7", "5"]) == 0  # tie: the first occurring answer wins
    assert majority_vote(["7", "5", "5", "7"]) == 0
    assert majority_vote([None, " ", None]) is None
    assert majority_vote([None, "1 / 2", "1/2", "3"]) == 1  # whitespace-insensitive key


def test_maj_at_k():
    preds = [["4", "5", "5"], ["1", "2", "1"], [None, None, None]]
    correct = [[True, False, False], [True, False, True], [False, False, False]]
    # problem 0: majority "5" is wrong; problem 1: "1" correct; problem 2: no answer
    assert maj_at_k(preds, correct, 3) == pytest.approx(1 / 3)
    # k=1 is the first sample's correctness
    assert maj_at_k(preds, correct, 1) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="fewer than k"):
        maj_at_k(preds, correct, 4)


def test_thinking_text():
    assert thinking_text("<think>abc</think> answer") == "abc"
    assert thinking_text("abc</think> answer") == "abc"
    assert thinking_text("<think>unfinished") == "unfinished"
    assert thinking_text("no thinking here") == ""


def _rec(bench, pid, i, correct, pred, tokens=10, truncated=False, words=1, paper=2):
    return {"benchmark": bench, "problem_id": pid, "sample_index": i, "correct": correct,
            "pred": pred, "num_tokens": tokens, "thinking_tokens": tokens // 2,
            "truncated": truncated, "markers_word": {"total": words},
            "markers_paper": {"total": paper}}


def test_summarize_samples():
    recs = [_rec("a", "p1", 0, True, "1"), _rec("a", "p1", 1, False, "2", truncated=True),
            _rec("a", "p2", 1, False, "9"), _rec("a", "p2", 0, False, "8", tokens=30),
            _rec("b", "q", 0, True, "x", words=0, paper=0)]
    out = summarize_samples(recs, pass_ks=[1, 2, 4])
    a = out["a"]
    assert a["num_problems"] == 2 and a["samples_per_problem"] == 2
    assert a["avg@2"] == pytest.approx(0.25)
    assert a["pass@1"] == pytest.approx(0.25)
    assert a["pass@2"] == pytest.approx(0.5)
    assert "pass@4" not in a  # k > n is skipped
    assert a["maj@2"] == pytest.approx(0.5)  # p1 tie -> first answer "1" (correct)
    assert a["truncation_rate"] == pytest.approx(0.25)
    assert a["mean_tokens"] == pytest.approx(15.0)
    assert a["markers_word_per_1k"] == pytest.approx(1000 * 4 / 60)
    assert a["markers_paper_per_response"] == pytest.approx(2.0)
    assert out["b"]["avg@1"] == 1.0


def test_summarize_rejects_ragged_samples():
    with pytest.raises(ValueError, match="different sample counts"):
        summarize_samples([_rec("a", "p1", 0, True, "1"), _rec("a", "p1", 1, True, "1"),
                           _rec("a", "p2", 0, True, "1")], pass_ks=[1])
