"""Epistemic markers (docs/methods.md section 8; arXiv 2603.24472, Kim et al.).

Ten markers: wait, hmm, perhaps, maybe, actually, alternatively, seems, might, likely, check.
``E(y)`` is their total count in a response. Two counting modes:

``paper``
    Case-insensitive substring count of each marker in the lowercased text, as the authors'
    script does (``text.lower().count(marker)``): "checking" and "double-check" count as check,
    "Hmmm" counts as hmm (non-overlapping: "hmmmmm" is 1, "hmmhmm" is 2), "awaits" counts as wait, and
    "factually" counts as actually.

``word``
    Whole words only, case-insensitive. A word is a maximal run of letters, where an
    apostrophe between letters stays inside the word ("might've", "check's"). Everything
    else separates words: spaces, punctuation, digits, hyphens. So "Wait...", "wait," and
    "(maybe)" count; "double-check" counts as check (the hyphen splits it); "checking",
    "hmmm", "awaits" and "factually" do not count. A contraction or possessive counts as its
    stem when the stem is a marker: "might've" counts as might, "check's" as check.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

MARKERS: tuple[str, ...] = (
    "wait",
    "hmm",
    "perhaps",
    "maybe",
    "actually",
    "alternatively",
    "seems",
    "might",
    "likely",
    "check",
)
MODES = ("word", "paper")

# letters, with apostrophes (straight or curly) allowed between letters
WORD_RE = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """Lowercased words of ``text`` under the ``word``-mode rule (see the module docstring)."""
    return [m.group(0).lower().replace("\u2019", "'") for m in WORD_RE.finditer(text)]


def word_stem(word: str) -> str:
    """The part of a lowercased word before its first apostrophe ("might've" -> "might")."""
    return word.split("'", 1)[0]


def count_epistemic_markers(text: str, mode: str = "word") -> dict[str, int]:
    """Count each marker in ``text``.

    Returns a dict with one key per marker (in ``MARKERS`` order) plus ``"total"``.
    Raises ValueError for an unknown mode.
    """
    if mode == "paper":
        lower = text.lower()
        counts = {m: lower.count(m) for m in MARKERS}
    elif mode == "word":
        stems = Counter(word_stem(w) for w in words(text))
        counts = {m: stems.get(m, 0) for m in MARKERS}
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    counts["total"] = sum(counts[m] for m in MARKERS)
    return counts


def sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Key-wise sum of marker count dicts (keys of ``MARKERS`` plus "total")."""
    total = {m: 0 for m in (*MARKERS, "total")}
    for c in counts:
        for key in total:
            total[key] += int(c.get(key, 0))
    return total


def per_1k(count: float, num_tokens: int) -> float:
    """``count`` per 1000 tokens; 0.0 when ``num_tokens`` is 0."""
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    return 1000.0 * count / num_tokens if num_tokens else 0.0


def rates_per_1k(counts: dict[str, int], num_tokens: int) -> dict[str, float]:
    """Every entry of a marker count dict as a rate per 1000 tokens."""
    return {key: per_1k(value, num_tokens) for key, value in counts.items()}
