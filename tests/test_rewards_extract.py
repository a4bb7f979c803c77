"""Boxed-answer extraction and the unbounded check (in-process, no workers)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfdistill.rewards import check_answer, extract_boxed_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("nested \\boxed{\\sqrt{\\frac{a}{b^{2}}}} end", "\\sqrt{\\frac{a}{b^{2}}}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("escaped \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("<think>maybe \\boxed{3}</think> so \\boxed{4}", "4"),
        ("<think>maybe \\boxed{3}</think> no box after", None),
        ("\\boxed 5", "5"),
        ("so \\boxed 42$.", "42"),
        ("\\fbox{7}", "7"),
        ("\\boxed { 8 }", "8"),
        ("unbalanced \\boxed{5", None),
        ("ok \\boxed{3} then broken \\boxed{5", "3"),
        ("broken inner \\boxed{1 \\boxed{2", None),
        ("last nested \\boxed{a \\boxed{b}}", "b"),
        ("empty \\boxed{} means nothing", None),
        ("answer \\boxed{6} echo \\boxed{}", "6"),
        ("\\boxedx{3}", None),
        ("no answer here", None),
        ("", None),
    ],
)
def test_extraction(text: str, expected: str | None) -> None:
    assert extract_boxed_answer(text) == expected


def test_extraction_is_fast_on_hostile_text() -> None:
    hostile = [
        "\\boxed{" * 200_000,
        "{" * 500_000 + "\\boxed{1}" + "}" * 500_000,
        "x" * 1_000_000 + "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    ]
    start = time.monotonic()
    results = [extract_boxed_answer(text) for text in hostile]
    assert time.monotonic() - start < 5.0
    assert results[0] is None and results[1] == "1"
    assert results[2] == "{" * 5000 + "1" + "}" * 5000


pieces = st.sampled_from(["\\boxed", "\\fbox", "{", "}", "\\", " ", "</think>", "<think>", "5", "$"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(pieces, st.text(max_size=5)), max_size=30).map("".join))
def test_extraction_never_raises(text: str) -> None:
    answer = extract_boxed_answer(text)
    assert answer is None or (isinstance(answer, str) and answer and answer in text)


@pytest.mark.parametrize(
    ("response", "gold", "correct"),
    [
        ("\\boxed{0.5}", "1/2", True),
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("\\boxed{1/2}", "\\frac{1}{2}", True),
        ("\\boxed{2.0}", "2", True),
        ("\\boxed{2}", "2.0", True),
        ("\\boxed{ 12 }", "12", True),
        ("\\boxed{x + 1}", "1 + x", True),
        ("\\boxed{3}", "\\boxed{3}", True),
        ("\\boxed{3}", "4", False),
        ("\\boxed{0.49}", "1/2", False),
        ("the answer is 5", "5", False),
        ("<think>\\boxed{5}</think> I give up", "5", False),
    ],
)
def test_check_answer_equivalences(response: str, gold: str, correct: bool) -> None:
    assert check_answer(response, gold) is correct
