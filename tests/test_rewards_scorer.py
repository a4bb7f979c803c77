"""RewardScorer: worker processes, the hard time bound, restarts, threads."""

from __future__ import annotations

import threading
import time

import pytest

from selfdistill.rewards import RewardScorer, verify

TIMEOUT_S = 1.0
SLACK_S = 1.5
TOWER = "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}"  # sympy tries to evaluate it: never finishes
HOSTILE = [
    TOWER,
    "\\boxed{2^2^2^2^2^2^2}",
    "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "\\boxed{" + "(" * 2000 + "1" + ")" * 2000 + "}",
    "y" * 1_000_000 + "\\boxed{" + "1" * 1_000_000 + "}",
]


@pytest.fixture(scope="module")
def scorer():
    with RewardScorer(timeout_s=TIMEOUT_S, workers=2) as scorer:
        yield scorer


def test_scores_in_order(scorer: RewardScorer) -> None:
    texts = ["\\boxed{0.5}", "\\boxed{7}", "no box", "\\boxed{\\frac{4}{2}}"]
    golds = ["1/2", "8", "1", "2"]
    assert scorer.score(texts, golds) == [1.0, 0.0, 0.0, 1.0]


def test_hostile_inputs_return_within_the_bound(scorer: RewardScorer) -> None:
    for text in HOSTILE:
        start = time.monotonic()
        verdict = scorer.check(text, "1")
        elapsed = time.monotonic() - start
        # the clock of an item starts once its worker is up (a replaced worker starts first)
        assert verdict.seconds < TIMEOUT_S + 0.5, (text[:30], verdict)
        assert elapsed < TIMEOUT_S + SLACK_S + 10.0, (text[:30], elapsed)
        assert verdict.correct is False
    assert scorer.check(TOWER, "1").status == "timeout"
    # the killed worker was replaced: ordinary items still work
    assert scorer.score(["\\boxed{3}", "\\boxed{4}"], ["3", "3"]) == [1.0, 0.0]


def test_hostile_batch_in_parallel(scorer: RewardScorer) -> None:
    start = time.monotonic()
    verdicts = scorer.score_detailed([TOWER, "\\boxed{5}", TOWER, "\\boxed{6}"], ["1", "5", "1", "6"])
    assert [v.status for v in verdicts] == ["timeout", "ok", "timeout", "ok"]
    assert [v.reward for v in verdicts] == [0.0, 1.0, 0.0, 1.0]
    assert time.monotonic() - start < 2 * TIMEOUT_S + 2 * SLACK_S + 10.0


def test_verify_from_a_non_main_thread() -> None:
    results: dict[str, object] = {}

    def work() -> None:
        start = time.monotonic()
        results["hostile"] = verify(TOWER, "1", timeout_s=TIMEOUT_S)
        results["hostile_seconds"] = time.monotonic() - start
        results["plain"] = verify("\\boxed{\\frac{1}{2}}", "0.5", timeout_s=TIMEOUT_S)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert results["hostile"] is False and results["plain"] is True
    assert results["hostile_seconds"] < TIMEOUT_S + SLACK_S + 10.0


def test_bad_inputs(scorer: RewardScorer) -> None:
    with pytest.raises(ValueError, match="2 texts but 1 gold"):
        scorer.score(["a", "b"], ["1"])
    with pytest.raises(ValueError, match="item 1.*not a string"):
        scorer.score(["a", "b"], ["1", None])
    with pytest.raises(ValueError, match="timeout_s > 0"):
        RewardScorer(timeout_s=0)


def test_close_stops_workers() -> None:
    scorer = RewardScorer(timeout_s=TIMEOUT_S)
    processes = [worker.process for worker in scorer._all]
    with scorer:
        assert scorer.score(["\\boxed{1}"], ["1"]) == [1.0]
    for process in processes:
        process.join(timeout=5)
        assert not process.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["\\boxed{1}"], ["1"])


def test_memory_cap_stops_a_runaway_before_the_clock() -> None:
    """Without a cap the tower runs until killed; with a 64 MB cap sympy hits MemoryError
    (math-verify turns it into a wrong answer) well before the 15 s bound."""
    with RewardScorer(timeout_s=15.0, memory_limit_mb=64) as scorer:
        verdict = scorer.check(TOWER, "1")
        assert verdict.correct is False and verdict.status != "timeout", verdict
        assert scorer.score(["\\boxed{2}"], ["2"]) == [1.0]
