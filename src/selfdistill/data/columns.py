"""Column mapping: which source column feeds each Example field, and how a cell becomes text.

Aliases are tried in order; an explicit mapping (``columns={"problem": "q"}`` or
``--columns problem=q``) wins. TRL-style rows (``prompt`` as a string or a list of chat
messages, ``privileged_context``) are recognised. GSM8K's ``answer`` ("steps #### 42") is
split: the text after ``####`` is the answer, and the text before it becomes the solution
when the source has no solution column.
"""

from __future__ import annotations

import math
import re
from typing import Any

FIELDS = ("problem", "solution", "answer", "id")
ALIASES: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "question", "prompt"),
    "solution": ("solution", "reference_solution", "reference", "answer_cot", "privileged_context"),
    "answer": ("answer", "final_answer", "ground_truth", "expected_answer"),
    "id": ("id", "idx", "uid", "unique_id", "problem_id"),
}
GSM8K_MARK = re.compile(r"^(?P<steps>.*?)\s*####\s*(?P<answer>[^\n]*?)\s*$", re.DOTALL)


def parse_columns_flag(text: str) -> dict[str, str]:
    """``"problem=q,answer=a"`` -> ``{"problem": "q", "answer": "a"}`` (ValueError if malformed)."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ValueError(f"bad column mapping {part!r}: write FIELD=COLUMN, e.g. problem=question")
        mapping[field.strip()] = column.strip()
    return mapping


def infer_mapping(columns: list[str],
                  overrides: dict[str, str] | None = None) -> tuple[dict[str, str | None], list[str]]:
    """Pick the source column of each field.

    Returns (mapping field -> column or None, problems with ``overrides`` as messages).
    """
    overrides = dict(overrides or {})
    problems = []
    for field, column in list(overrides.items()):
        if field not in FIELDS:
            problems.append(f"unknown field {field!r} in the column mapping; fields are {', '.join(FIELDS)}")
            del overrides[field]
        elif column not in columns:
            problems.append(f"the mapping {field}={column} names no column of this source; columns "
                            f"found: {', '.join(columns) or 'none'}")
            del overrides[field]
    used = set(overrides.values())
    mapping: dict[str, str | None] = {}
    for field in FIELDS:
        if field in overrides:
            mapping[field] = overrides[field]
            continue
        found = next((c for c in ALIASES[field] if c in columns and c not in used), None)
        mapping[field] = found
        if found is not None:
            used.add(found)
    return mapping, problems


def missing_column_message(field: str, columns: list[str], why: str) -> str:
    """Message for a field whose column is absent: the columns found and the flag to map one."""
    return (f"no {field} column ({why}); columns found: {', '.join(columns) or 'none'}; map one with "
            f"--columns {field}=NAME (or columns={{'{field}': NAME}}); names recognised: "
            f"{', '.join(ALIASES[field])}")


def to_text(value: Any, field: str) -> tuple[str | None, str | None]:
    """A cell as text: (text or None when absent/empty, error message or None).

    Numbers are accepted for ``answer`` and ``id`` (42 -> "42", 2.0 -> "2"); NaN, booleans,
    objects and (except chat prompts, see ``prompt_text``) lists are errors.
    """
    if value is None:
        return None, None
    if isinstance(value, str):
        text = value.strip()
        return (text or None), None
    if isinstance(value, bool):
        return None, f"is a boolean ({str(value).lower()}); expected text"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else "infinite"
            return None, (f"is {shown} (a missing value written as a number); write the {field} "
                          "as text, or drop the row")
        if field not in ("answer", "id"):
            return None, f"is a number ({value}); expected text"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value), None
    if isinstance(value, list) and field == "problem":
        return prompt_text(value)
    kind = {list: "a list", dict: "an object"}.get(type(value), f"a {type(value).__name__}")
    return None, f"is {kind}; expected text"


def prompt_text(messages: list) -> tuple[str | None, str | None]:
    """The user content of a TRL conversational prompt (the last user message)."""
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        return None, ("is a list but not a list of chat messages ({\"role\": ..., \"content\": ...}); "
                      "expected text")
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        roles = ", ".join(str(m["role"]) for m in messages) or "none"
        return None, (f"is a chat message list with no user message (roles: {roles}); add the question "
                      "as a user message")
    content = users[-1].get("content")
    if isinstance(content, list):  # multimodal-style parts: keep the text parts
        content = "".join(part.get("text", "") for part in content
                          if isinstance(part, dict) and part.get("type") == "text")
    if not isinstance(content, str):
        return None, "the user message has no text content"
    return (content.strip() or None), None


def split_gsm8k(answer: str | None, solution: str | None) -> tuple[str | None, str | None]:
    """GSM8K "steps #### 42": returns (answer, solution) with the steps moved to the solution
    when there was none. Values without ``####`` are returned unchanged."""
    if answer is None or "####" not in answer:
        return answer, solution
    match = GSM8K_MARK.match(answer)
    if match is None or not match["answer"]:
        return answer, solution
    return match["answer"], solution if solution is not None else (match["steps"].strip() or None)
