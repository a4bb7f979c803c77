"""The user-turn texts of every role, as plain strings (no chat template here).

These are the only prompt strings in the project. The renderer (``render.py``) wraps them in the
tokenizer's chat template; nothing else concatenates prompt text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

FINAL_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

REFERENCE_INTRO = "Here is a reference solution to this problem:"
REFERENCE_BEGIN = "=== Reference Solution Begin ==="
REFERENCE_END = "=== Reference Solution End ==="

# Every text here is free of the epistemic markers the analyses count (analysis.markers.MARKERS,
# in both the whole-word and the substring "paper" mode: "wait", "maybe", "check", "seems", ...),
# so a teacher is never told to use a word whose rate is then read as a result of training.
# tests/test_contexts_markers.py renders every role and scans it with the analysis counter itself.
# The one exception is a legacy text kept for comparison, listed in LEGACY_TRANSITIONS.
TRANSITIONS: dict[str, str] = {
    # OPSD paper v1 (arXiv 2601.18734, Figure 2): understand the reference, then solve your own way.
    "mild": (
        "After understanding the reference solution, please try to solve this problem using your "
        "own approach below."
    ),
    # The current OPSD code's stricter instruction, in our own words. Kept from the official
    # wording: understand each step of the reference; do not copy or paraphrase it; derive the
    # same final answer independently; explore, backtrack or reconsider. Not in it: any counted
    # marker (our earlier phrasing added "check each step"; see "hardened-v0").
    "hardened": (
        "After reading the reference solution above, make sure you truly understand the reasoning "
        "behind each step, but do not copy or paraphrase it. Now derive the same final answer "
        "with your own independent reasoning: explore the approaches you find promising, and "
        "backtrack or reconsider whenever an approach does not work."
    ),
    # Our earlier phrasing of the current OPSD wording, kept verbatim so a study can compare
    # it with "hardened". It contains the counted marker "check" (the teacher is told to check
    # each step): never the default.
    "hardened-v0": (
        "After reading the reference solution above, make sure you truly understand the reasoning "
        "behind each step, but do not copy or paraphrase it. Now solve the problem with your own "
        "independent reasoning: explore the approaches you find promising, check each step, and "
        "backtrack when something does not work."
    ),
}
# transitions that contain counted markers on purpose (old-vs-new comparisons only)
LEGACY_TRANSITIONS: tuple[str, ...] = ("hardened-v0",)

SDPO_REPROMPT = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question.\n"
SDPO_SOLUTION = "\nCorrect solution:\n\n{solution}\n"
SDPO_FEEDBACK = "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback}\n"

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def student_text(problem: str) -> str:
    """The student's (and the base model's) user turn: the question only."""
    return f"Problem: {problem}\n\n{FINAL_INSTRUCTION}"


def _reference_block(solution: str, transition: str) -> str:
    return (
        f"{REFERENCE_INTRO}\n{REFERENCE_BEGIN}\n{solution}\n{REFERENCE_END}\n\n"
        f"{TRANSITIONS[transition]}\n{FINAL_INSTRUCTION}"
    )


def teacher_text(problem: str, solution: str, transition: str = "hardened") -> str:
    """The OPSD privileged user turn: problem, fenced reference, transition, final instruction."""
    return f"Problem: {problem}\n\n{_reference_block(solution, transition)}"


def refonly_text(solution: str, transition: str = "hardened") -> str:
    """The teacher turn with the problem removed (Purified OPSD's reference-only teacher)."""
    return _reference_block(solution, transition)


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` blocks (and an unopened prefix ending in ``</think>``)."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:  # thinking opened by the template, closed in the response
        text = text.rsplit("</think>", 1)[1]
    return text.strip()


def reprompt_text(problem: str, sibling: str | None, feedback: str | None) -> str | None:
    """SDPO's teacher turn, or None when there is neither a sibling solution nor feedback.

    Feedback is included only when there is no successful sibling (SDPO's rule).
    """
    if sibling is not None:
        solution_part, feedback_part = SDPO_SOLUTION.format(solution=sibling), ""
    elif feedback is not None:
        solution_part, feedback_part = "", SDPO_FEEDBACK.format(feedback=feedback)
    else:
        return None
    return SDPO_REPROMPT.format(
        prompt=student_text(problem), solution=solution_part, feedback=feedback_part
    )


def choose_siblings(
    texts: Sequence[str],
    rewards: Sequence[float],
    group_ids: Sequence[object],
    *,
    success_threshold: float = 1.0,
) -> list[str | None]:
    """For each sample, the first successful rollout of the SAME group that is not itself.

    Args:
        texts: decoded responses, one per sample.
        rewards: their rewards; a sample is successful when ``reward >= success_threshold``.
        group_ids: the prompt group of each sample (samples of one prompt share an id).
    Returns:
        one entry per sample: the sibling's text, or None when no other sample succeeded.
        ``<think>`` stripping is the renderer's job (``ContextConfig.strip_think``).
    """
    if not (len(texts) == len(rewards) == len(group_ids)):
        raise ValueError(
            f"choose_siblings: texts ({len(texts)}), rewards ({len(rewards)}) and group_ids "
            f"({len(group_ids)}) must have the same length"
        )
    successes: dict[object, list[int]] = {}
    for i, (reward, group) in enumerate(zip(rewards, group_ids)):
        if reward >= success_threshold:
            successes.setdefault(group, []).append(i)
    chosen: list[str | None] = []
    for i, group in enumerate(group_ids):
        j = next((k for k in successes.get(group, []) if k != i), None)
        chosen.append(None if j is None else texts[j])
    return chosen
