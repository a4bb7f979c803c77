"""The unbounded check (runs inside a worker process): exact match first, then math-verify."""

from __future__ import annotations

import logging

from selfdistill.rewards.extract import extract_answer, extract_boxed_answer


def _normalize(answer: str) -> str:
    return "".join(answer.split()).strip("$")


def gold_answer(gold: str) -> str:
    """The gold answer itself: its boxed content when it is written as ``\\boxed{...}``."""
    boxed = extract_boxed_answer(gold) if "\\boxed" in gold or "\\fbox" in gold else None
    return boxed if boxed is not None else gold.strip()


def check_answer(response_text: str, gold: str, answer_format: str = "boxed") -> bool:
    """True when the final answer of ``response_text`` equals ``gold``.

    The answer is the last boxed one (``answer_format="boxed"``) or, with
    ``"boxed_or_last_number"``, the last number when nothing is boxed (see ``extract_answer``).

    String equality (ignoring whitespace and ``$``) first, then math-verify's symbolic
    comparison with its signal-based timeouts switched off: call this only where the caller
    bounds the time itself (``RewardScorer`` runs it in a killable process).
    """
    answer = extract_answer(response_text, answer_format)
    if answer is None:
        return False
    gold = gold_answer(gold)
    if _normalize(answer) == _normalize(gold):
        return True
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
    answer_parsed = parse("\\boxed{" + answer + "}", parsing_timeout=None)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))
