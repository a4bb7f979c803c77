"""Rewards: boxed-answer extraction and math-verify with a hard time bound."""

from selfdistill.rewards.check import check_answer
from selfdistill.rewards.extract import extract_boxed_answer
from selfdistill.rewards.pool import RewardScorer, Verdict, verify

__all__ = ["RewardScorer", "Verdict", "check_answer", "extract_boxed_answer", "verify"]
