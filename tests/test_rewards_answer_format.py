import pytest
from hypothesis import given, strategies as st

from selfdistill.rewards import RewardScorer, extract_answer
from selfdistill.rewards.check import check_answer


@pytest.mark.parametrize(
    "text,fmt,expected",
    [
        ("so the answer is 42.", "boxed", None),
        ("so the answer is 42.", "boxed_or_last_number", "42"),
        ("3 + 4 = 7, then \\boxed{8}", "boxed_or_last_number", "8"),
        ("total 1,234 apples", "boxed_or_last_number", "1234"),
        ("<think>maybe 5</think> it is -6", "boxed_or_last_number", "-6"),
        ("<think>maybe 5</think> no number", "boxed_or_last_number", None),
        ("half is 1/2", "boxed_or_last_number", "1/2"),
        ("pi is 3.14", "boxed_or_last_number", "3.14"),
    ],
)
def test_extract_answer_formats(text, fmt, expected):
    assert extract_answer(text, fmt) == expected


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="boxed_or_last_number"):
        extract_answer("1", "last")


def test_check_answer_fallback_only_when_asked():
    assert not check_answer("The final answer is 6.", "6")
    assert check_answer("The final answer is 6.", "6", "boxed_or_last_number")
    assert not check_answer("The final answer is 7.", "6", "boxed_or_last_number")


def test_scorer_passes_format_to_workers():
    with RewardScorer(timeout_s=5, answer_format="boxed_or_last_number") as scorer:
        assert scorer.score(["it is 12", "it is 13", "\\boxed{12}"], ["12", "12", "12"]) == [1.0, 0.0, 1.0]
    with RewardScorer(timeout_s=5) as scorer:
        assert scorer.score(["it is 12"], ["12"]) == [0.0]


@given(st.text(max_size=300))
def test_extract_answer_never_raises(text):
    out = extract_answer(text, "boxed_or_last_number")
    assert out is None or isinstance(out, str)
