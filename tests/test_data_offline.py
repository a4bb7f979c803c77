"""Offline sets from installed packages: gsm8k-100, champ, rg:<task>, and their cache."""

from __future__ import annotations

import json
import re

import pytest

from selfdistill.data import DataError, load_examples, load_with_report
from selfdistill.paths import cache_dir


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFDISTILL_CACHE", str(tmp_path / "cache"))


def _cached_files(prefix: str) -> list:
    return sorted((cache_dir() / "data").glob(f"{prefix}-*.jsonl"))


def test_gsm8k_100_has_100_worked_problems_with_numeric_answers():
    examples = load_examples("gsm8k-100", method="opsd", need_answer=True)
    assert len(examples) == 100 and len({e.id for e in examples}) == 100
    for example in examples:
        assert re.fullmatch(r"-?[0-9][0-9,]*(\.[0-9]+)?", example.answer), example
        assert "####" not in example.solution and example.problem
    first = examples[0]
    assert first.id == "gsm8k-test-473" and first.answer == "10"
    assert first.problem.startswith("Benny saw a 10-foot shark")
    assert first.solution.endswith("1 foot / 10 feet * 100% = 10%")
    # every worked solution computes its final answer somewhere in its text
    assert all(e.answer in e.solution for e in examples)
    assert len(_cached_files("gsm8k-100")) == 1


def test_champ_has_270_problems_with_solutions_and_answers():
    examples = load_examples("champ", method="opsd", need_answer=True)
    assert len(examples) == 270 and len({e.id for e in examples}) == 270
    first = examples[0]
    assert first.id == "P_Combinatorics_1" and first.answer == "239"
    assert first.solution.splitlines()[-1].endswith("70+99+70=239 such strings.")


def test_rg_gsm_symbolic_uses_answer_cot_and_is_seeded():
    a = load_examples("rg:gsm_symbolic?size=20&seed=3", method="opsd", need_answer=True)
    b = load_examples("rg:gsm_symbolic", seed=3, limit=20)
    assert a == b  # the spec parameter and the keyword give the same set
    assert len(a) == 20 and a[0].id == "gsm_symbolic-3-0" and a[0].origin == "rg:gsm_symbolic seed=3 item 0"
    import reasoning_gym

    raw = list(reasoning_gym.create_dataset("gsm_symbolic", size=20, seed=3))
    assert [e.problem for e in a] == [r["question"] for r in raw]
    assert [e.answer for e in a] == [str(r["answer"]) for r in raw]
    assert all(e.solution.strip() in r["metadata"]["answer_cot"] for e, r in zip(a, raw))
    assert all("####" not in e.solution for e in a)
    other_seed = load_examples("rg:gsm_symbolic?size=20&seed=4")
    assert [e.problem for e in other_seed] != [e.problem for e in a]


@pytest.mark.parametrize("task", ["basic_arithmetic", "chain_sum"])
def test_rg_arithmetic_reference_is_expression_and_value(task):
    examples = load_examples(f"rg:{task}?size=30&seed=1", method="opsd", need_answer=True)
    assert len(examples) == 30
    for example in examples:
        expression, value = example.solution.rsplit(" = ", 1)
        assert value == example.answer
        assert expression.replace(" ", "") in example.problem.replace(" ", "")
    if task == "chain_sum":  # integer +/- only: the synthesized reference is checkable arithmetic
        for example in examples:
            expression, value = example.solution.rsplit(" = ", 1)
            assert eval(expression, {"__builtins__": {}}) == int(value)  # noqa: S307 (digits and +/- only)


def test_rg_cache_is_written_once_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFDISTILL_CACHE", str(tmp_path))  # an empty cache: count only this test's files
    load_examples("rg:chain_sum?size=10&seed=2")
    [path] = _cached_files("rg-chain_sum")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 10 and set(rows[0]) == {"id", "problem", "solution", "answer", "origin"}
    # a second load must not generate again
    import reasoning_gym

    real_create = reasoning_gym.create_dataset
    monkeypatch.setattr(reasoning_gym, "create_dataset", lambda *a, **k: pytest.fail("regenerated"))
    again = load_examples("rg:chain_sum?size=10&seed=2")
    assert [e.problem for e in again] == [r["problem"] for r in rows]
    assert not list(path.parent.glob("*.tmp*"))  # the atomic write left no temporary file
    # different parameters -> a different cache file
    monkeypatch.setattr(reasoning_gym, "create_dataset", real_create)
    load_examples("rg:chain_sum?size=10&seed=5")
    assert len(_cached_files("rg-chain_sum")) == 2


def test_rg_task_without_reference_fails_opsd_with_one_clear_error():
    with pytest.raises(DataError) as caught:
        load_examples("rg:word_sorting?size=5&seed=1", method="opsd")
    [error] = caught.value.errors
    assert error.field == "solution" and "empty in every row" in error.message
    assert len(load_examples("rg:word_sorting?size=5&seed=1", method="grpo")) == 5


def test_rg_bad_task_and_bad_parameter():
    with pytest.raises(DataError, match="no reasoning-gym task 'nope'"):
        load_examples("rg:nope")
    with pytest.raises(DataError, match="rejected the parameters"):
        load_examples("rg:chain_sum?size=3&bogus=1")
    with pytest.raises(DataError, match="takes no parameters"):
        load_examples("champ?size=3")


def test_report_has_mapping_for_offline_sets():
    result = load_with_report("rg:chain_sum?size=4&seed=0")
    assert result.source == "rg:chain_sum?size=4&seed=0"
    assert result.mapping == {"problem": "problem", "solution": "solution", "answer": "answer", "id": "id",
                              "feedback": None}  # no feedback column in a reasoning-gym set
