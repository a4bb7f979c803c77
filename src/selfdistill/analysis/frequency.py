"""Per-word frequency shift between two corpora, markers vs the rest of the vocabulary
(arXiv 2603.24472 appendix B.4).

Words follow the ``word``-mode rule of ``selfdistill.analysis.markers`` and are counted by stem
("might've" -> "might"). With ``c_A(w)`` the count of word w in corpus A, ``N_A`` its total word
count, V the union vocabulary and alpha the add-alpha smoothing (default 0.5):

    f_A(w) = (c_A(w) + alpha) / (N_A + alpha * |V|)
    shift(w) = log2( f_B(w) / f_A(w) )

so shift > 0 means w takes a larger share of B's words than of A's (+1 = twice the share).
The summary compares the markers' mean shift to the other words' mean shift, both over words
seen at least ``min_count`` times in A and B together, and the markers' pooled share of all
words in A and in B.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from selfdistill.analysis.markers import MARKERS, word_stem, words


@dataclass(frozen=True)
class WordShift:
    word: str
    count_a: int
    count_b: int
    freq_a: float  # smoothed relative frequency in A
    freq_b: float
    log2_ratio: float
    is_marker: bool


def word_counts(texts: Iterable[str]) -> Counter:
    """Stem counts of all words in ``texts``."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(word_stem(w) for w in words(text))
    return counts


def frequency_shift(texts_a: Iterable[str], texts_b: Iterable[str], *, alpha: float = 0.5,
                    min_count: int = 3) -> tuple[list[WordShift], dict[str, float]]:
    """Shift of every word seen >= ``min_count`` times in A and B together (markers always kept).

    Returns (rows sorted by log2_ratio, descending; summary dict with ``words_a``, ``words_b``,
    ``vocab``, ``marker_share_a``, ``marker_share_b``, ``marker_mean_log2_ratio``,
    ``other_mean_log2_ratio``, ``marker_pooled_log2_ratio``).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (smoothing keeps unseen words finite), got {alpha}")
    count_a, count_b = word_counts(texts_a), word_counts(texts_b)
    n_a, n_b = sum(count_a.values()), sum(count_b.values())
    if n_a == 0 or n_b == 0:
        raise ValueError(f"frequency_shift needs words on both sides (A has {n_a}, B has {n_b})")
    vocab = set(count_a) | set(count_b) | set(MARKERS)
    denom_a, denom_b = n_a + alpha * len(vocab), n_b + alpha * len(vocab)
    rows = []
    for w in vocab:
        ca, cb = count_a.get(w, 0), count_b.get(w, 0)
        if ca + cb < min_count and w not in MARKERS:
            continue
        fa, fb = (ca + alpha) / denom_a, (cb + alpha) / denom_b
        rows.append(WordShift(w, ca, cb, fa, fb, math.log2(fb / fa), w in MARKERS))
    rows.sort(key=lambda r: (-r.log2_ratio, r.word))
    marker_rows = [r for r in rows if r.is_marker and r.count_a + r.count_b >= min_count]
    other_rows = [r for r in rows if not r.is_marker]
    marker_a = sum(count_a.get(m, 0) for m in MARKERS)
    marker_b = sum(count_b.get(m, 0) for m in MARKERS)
    summary = {
        "words_a": n_a,
        "words_b": n_b,
        "vocab": len(vocab),
        "marker_share_a": marker_a / n_a,
        "marker_share_b": marker_b / n_b,
        "marker_pooled_log2_ratio": math.log2(((marker_b + alpha) / n_b) / ((marker_a + alpha) / n_a)),
        "marker_mean_log2_ratio": _mean([r.log2_ratio for r in marker_rows]),
        "other_mean_log2_ratio": _mean([r.log2_ratio for r in other_rows]),
    }
    return rows, summary


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
