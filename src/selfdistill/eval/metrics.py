"""Evaluation metrics (docs/methods.md section 9): avg@k, unbiased pass@k, maj@k, truncation,
lengths, thinking lengths, and per-benchmark summaries over sample records.

A sample record is a dict with at least ``benchmark``, ``problem_id``, ``sample_index``,
``pred`` (extracted answer or None), ``correct`` (bool), ``num_tokens``, ``thinking_tokens``,
``truncated``, ``markers_word`` / ``markers_paper`` (dicts with "total"); this is the row format
of ``samples.jsonl`` written by the eval runner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) for n samples of which c are correct.

    Computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the large
    binomials (Chen et al., 2021). Requires 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got n={n}, k={k}: sample at least k per problem")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_k(correct_per_problem: Sequence[Sequence[bool]]) -> float:
    """Mean over problems of the fraction of that problem's samples that are correct."""
    if not correct_per_problem:
        raise ValueError("avg_at_k needs at least one problem")
    fractions = []
    for i, row in enumerate(correct_per_problem):
        if not row:
            raise ValueError(f"avg_at_k: problem {i} has no samples")
        fractions.append(sum(bool(x) for x in row) / len(row))
    return sum(fractions) / len(fractions)


def normalize_answer(answer: str | None) -> str | None:
    """Voting key of an extracted answer: whitespace removed; None/empty stays None."""
    if answer is None:
        return None
    key = "".join(answer.split())
    return key or None


def majority_vote(preds: Sequence[str | None]) -> int | None:
    """Index of the sample whose answer wins the vote, or None when no sample has an answer.

    Answers are compared after ``normalize_answer`` (so "1/2" and "0.5" are different votes).
    Samples without an answer do not vote. Ties go to the answer that occurs first.
    """
    votes: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, pred in enumerate(preds):
        key = normalize_answer(pred)
        if key is None:
            continue
        votes[key] = votes.get(key, 0) + 1
        first.setdefault(key, i)
    if not votes:
        return None
    best = max(votes, key=lambda key: (votes[key], -first[key]))
    return first[best]


def maj_at_k(preds_per_problem: Sequence[Sequence[str | None]],
             correct_per_problem: Sequence[Sequence[bool]], k: int) -> float:
    """Fraction of problems whose majority answer over the first k samples is correct.

    The winning answer's correctness is that of its first sample (all samples with the same
    normalized answer share it). A problem where no sample has an answer counts as wrong.
    """
    if len(preds_per_problem) != len(correct_per_problem) or not preds_per_problem:
        raise ValueError("maj_at_k needs one non-empty preds and correct list per problem")
    hits = 0
    for i, (preds, correct) in enumerate(zip(preds_per_problem, correct_per_problem)):
        if len(preds) < k or len(correct) < k:
            raise ValueError(f"maj_at_k: problem {i} has {len(preds)} samples, fewer than k={k}")
        winner = majority_vote(preds[:k])
        hits += int(winner is not None and bool(correct[winner]))
    return hits / len(preds_per_problem)


def thinking_text(response: str) -> str:
    """The text inside the response's thinking block, or "" when there is none.

    ``<think>...</think>`` gives the inside; a ``</think>`` without an opening tag (chat
    templates that put ``<think>`` in the prompt) gives everything before it; an unclosed
    ``<think>`` (truncated) gives everything after it.
    """
    open_at = response.find(THINK_OPEN)
    close_at = response.find(THINK_CLOSE)
    if open_at >= 0 and (close_at < 0 or close_at > open_at):
        start = open_at + len(THINK_OPEN)
        return response[start:] if close_at < 0 else response[start:close_at]
    if close_at >= 0:
        return response[:close_at]
    return ""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize_samples(records: Sequence[dict], pass_ks: Sequence[int]) -> dict[str, dict]:
    """Per-benchmark summary of sample records (see the module docstring for the fields).

    Returns ``{benchmark: {num_problems, samples_per_problem, avg@k, pass@<k>..., maj@k,
    truncation_rate, no_answer_rate (share of samples with no extracted answer), mean_tokens,
    mean_thinking_tokens, markers_word_per_1k,
    markers_paper_per_1k, markers_word_per_response, markers_paper_per_response}}``.
    Every problem of a benchmark must have the same number of samples n; pass@k values with
    k > n are skipped.
    """
    by_bench: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        by_bench[rec["benchmark"]][str(rec["problem_id"])].append(rec)
    out: dict[str, dict] = {}
    for bench, problems in by_bench.items():
        rows = [sorted(recs, key=lambda r: r["sample_index"]) for recs in problems.values()]
        sizes = {len(r) for r in rows}
        if len(sizes) != 1:
            raise ValueError(f"benchmark {bench!r}: problems have different sample counts {sorted(sizes)}")
        n = sizes.pop()
        correct = [[bool(r["correct"]) for r in row] for row in rows]
        preds = [[r.get("pred") for r in row] for row in rows]
        flat = [r for row in rows for r in row]
        tokens = sum(int(r["num_tokens"]) for r in flat)
        summary: dict[str, float | int] = {
            "num_problems": len(rows),
            "samples_per_problem": n,
            f"avg@{n}": avg_at_k(correct),
        }
        for k in pass_ks:
            if k <= n:
                summary[f"pass@{k}"] = _mean([pass_at_k(n, sum(c), k) for c in correct])
        summary[f"maj@{n}"] = maj_at_k(preds, correct, n)
        summary["truncation_rate"] = _mean([float(bool(r["truncated"])) for r in flat])
        summary["no_answer_rate"] = _mean([float(r.get("pred") is None) for r in flat])
        summary["mean_tokens"] = tokens / len(flat)
        summary["mean_thinking_tokens"] = _mean([float(r.get("thinking_tokens", 0)) for r in flat])
        for mode in ("word", "paper"):
            total = sum(int(r[f"markers_{mode}"]["total"]) for r in flat)
            summary[f"markers_{mode}_per_response"] = total / len(flat)
            summary[f"markers_{mode}_per_1k"] = 1000.0 * total / tokens if tokens else 0.0
        out[bench] = summary
    return out


__all__ = [
    "avg_at_k",
    "maj_at_k",
    "majority_vote",
    "normalize_answer",
    "pass_at_k",
    "summarize_samples",
    "thinking_text",
]
