"""The row type every layer passes around."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One training or evaluation problem.

    Attributes:
        id: unique within its dataset.
        problem: the question; the student sees only this.
        solution: reference solution (the privileged context), or None.
        answer: gold final answer used by rewards and evaluation, or None.
        origin: where the row came from, e.g. ``"data.jsonl line 12"``, for error messages.
        feedback: environment feedback on an earlier attempt (e.g. a failing test's output), or
            None; SDPO's reprompt shows it when no successful sibling exists.
    """

    id: str
    problem: str
    solution: str | None = None
    answer: str | None = None
    origin: str = ""
    feedback: str | None = None  # after origin: rows built positionally keep their meaning
