"""Epistemic marker counting in both modes on tricky text."""

from __future__ import annotations

import pytest

from selfdistill.analysis import MARKERS, count_epistemic_markers, per_1k, rates_per_1k, sum_counts


def test_keys_and_total():
    counts = count_epistemic_markers("")
    assert list(counts) == [*MARKERS, "total"]
    assert counts["total"] == 0


@pytest.mark.parametrize("text,marker,word,paper", [
    ("Wait... WAIT, wait!", "wait", 3, 3),
    ("awaits the result", "wait", 0, 1),
    ("Hmm, hmmm. HMM", "hmm", 2, 3),
    ("hmmmmmm hmmhmm", "hmm", 0, 3),  # non-overlapping substrings, as str.count
    ("Factually correct; actually wrong", "actually", 1, 2),
    ("checking, double-check, check's, Check.", "check", 3, 4),
    ("I might've erred; mighty might", "might", 2, 3),
    ("it seems so; it seemsly", "seems", 1, 2),
    ("(maybe) Maybe-not maybes", "maybe", 2, 3),
    ("Alternatively: perhaps; likely unlikely", "likely", 1, 2),
    ("l'actually", "actually", 0, 1),  # stem before the apostrophe is "l"
])
def test_modes_on_tricky_text(text, marker, word, paper):
    assert count_epistemic_markers(text, "word")[marker] == word
    assert count_epistemic_markers(text, "paper")[marker] == paper


def test_curly_apostrophe_and_total():
    text = "Wait \u2014 perhaps it might\u2019ve been 3. Hmm. Let me check: alternatively, 4 seems likely."
    counts = count_epistemic_markers(text, "word")
    assert counts["might"] == 1
    assert counts["total"] == 8
    assert count_epistemic_markers(text, "paper")["total"] == 8


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        count_epistemic_markers("x", "fuzzy")


def test_rates_and_sums():
    assert per_1k(3, 1500) == pytest.approx(2.0)
    assert per_1k(3, 0) == 0.0
    total = sum_counts([count_epistemic_markers("wait hmm"), count_epistemic_markers("wait")])
    assert total["wait"] == 2 and total["total"] == 3
    assert rates_per_1k(total, 500)["total"] == pytest.approx(6.0)
