"""Rewards: boxed-answer extraction and math-verify with a hard time bound."""

from selfdistill.rewards.check import check_answer
from selfdistill.rewards.extract import ANSWER_FORMATS, extract_answer, extract_boxed_answer
from selfdistill.rewards.pool import RewardScorer, Verdict, verify

__all__ = ["ANSWER_FORMATS", "extract_answer", "RewardScorer", "Verdict", "check_answer", "extract_boxed_answer", "verify"]
