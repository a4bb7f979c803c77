"""Column mapping: which source column feeds each Example field, and how a cell becomes text.

Aliases are tried in order; an explicit mapping (``columns={"problem": "q"}``,
``--columns problem=q`` in ``selfdistill data``, ``data.columns=problem=q`` in ``selfdistill
train``) wins. TRL-style rows are recognised: ``prompt`` as a string or a list of chat messages
(the last user message is the problem), ``completion`` or ``privileged_context`` as the
reference, a chat-list reference giving its assistant content. GSM8K's ``answer`` ("steps ####
42") is split: the text after ``####`` is the answer, and the text before it becomes the
solution when the source has no solution column.
"""

from __future__ import annotations

import math
import re
from typing import Any

FIELDS = ("problem", "solution", "answer", "id", "feedback")
ALIASES: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "question", "prompt"),
    "solution": ("solution", "reference_solution", "reference", "answer_cot", "privileged_context",
                 "completion"),
    "answer": ("answer", "final_answer", "ground_truth", "expected_answer"),
    "id": ("id", "idx", "uid", "unique_id", "problem_id"),
    # environment feedback on an earlier attempt (SDPO's rich feedback: a failing test, a judge's
    # note); SDPO's reprompt shows it when no successful sibling exists
    "feedback": ("feedback", "env_feedback", "environment_feedback"),
}
GSM8K_MARK = re.compile(r"^(?P<steps>.*?)\s*####\s*(?P<answer>[^\n]*?)\s*$", re.DOTALL)
# words in a column name that suggest a field the aliases did not pick up (``gold``, ``label``)
# (a missing solution is already an error for the methods that need one; answers are optional
# in training, so an unread answer column would otherwise go unnoticed: accuracy stays empty)
LOOKS_LIKE: dict[str, tuple[str, ...]] = {
    "answer": ("answer", "gold", "label", "target", "truth", "result", "final"),
}
# How each command maps a column, for the hints of error messages: ``{field}`` is filled in.
#   data:   selfdistill data check/show --columns
#   train:  selfdistill train key=value overrides (or the YAML data section)
#   any:    the Python API and callers that accept both (the default)
MAP_SYNTAX: dict[str, str] = {
    "data": "--columns {field}=NAME",
    "train": "data.columns={field}=NAME (in a YAML recipe: data: {{columns: {{{field}: NAME}}}})",
    "any": "--columns {field}=NAME (or columns={{'{field}': NAME}})",
}


def map_hint(field: str, syntax: str = "any", column: str = "NAME") -> str:
    """How to map ``column`` to ``field`` in the command given by ``syntax`` (a MAP_SYNTAX key)."""
    return MAP_SYNTAX[syntax].format(field=field).replace("NAME", column)


def parse_columns(value: str | dict | None) -> dict[str, str]:
    """A mapping given as ``"problem=q,answer=a"`` or as a dict -> ``{field: column}``.

    Raises:
        ValueError: a malformed entry, an unknown field or a non-text column name.
    """
    if value is None or value == "":
        return {}
    mapping = parse_columns_flag(value) if isinstance(value, str) else value
    if not isinstance(mapping, dict):
        raise ValueError(f"a column mapping is FIELD=COLUMN pairs or a mapping, got {value!r}")
    for field, column in mapping.items():
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r} in the column mapping; fields are {', '.join(FIELDS)}")
        if not isinstance(column, str) or not column.strip():
            raise ValueError(f"the column of {field} must be a column name, got {column!r}")
    return {str(f): c.strip() for f, c in mapping.items()}


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


def missing_column_message(field: str, columns: list[str], why: str, syntax: str = "any") -> str:
    """Message for a field whose column is absent: the columns found and how to map one."""
    return (f"no {field} column ({why}); columns found: {', '.join(columns) or 'none'}; map one with "
            f"{map_hint(field, syntax)}; names recognised: {', '.join(ALIASES[field])}")


def unread_column_warnings(columns: list[str], mapping: dict[str, str | None],
                           syntax: str = "any", *, derived: tuple[str, ...] = ()) -> list[str]:
    """Warnings for columns that look like a field of LOOKS_LIKE while that field reads nothing.

    ``derived``: fields filled another way (a solution taken from GSM8K-style answers).
    """
    used = {c for c in mapping.values() if c is not None}
    warnings = []
    for field, words in LOOKS_LIKE.items():
        if mapping.get(field) is not None or field in derived:
            continue
        for column in columns:
            if column not in used and any(w in column.lower() for w in words):
                warnings.append(
                    f"column {column!r} looks like the {field} but is not read (names recognised for "
                    f"{field}: {', '.join(ALIASES[field])}), so every row's {field} is empty; if it holds the "
                    f"{field}, map it with {map_hint(field, syntax, column)}")
    return warnings


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
    if isinstance(value, list) and field == "solution":
        return completion_text(value)
    kind = {list: "a list", dict: "an object"}.get(type(value), f"a {type(value).__name__}")
    return None, f"is {kind}; expected text"


def prompt_text(messages: list) -> tuple[str | None, str | None]:
    """The user content of a TRL conversational prompt (the last user message)."""
    users, error = _messages_of(messages, "user", "add the question as a user message")
    if error is not None:
        return None, error
    content = _content_text(users[-1])
    if content is None:
        return None, "the user message has no text content"
    return (content.strip() or None), None


def completion_text(messages: list) -> tuple[str | None, str | None]:
    """The reference of a TRL conversational completion: its assistant messages' text, joined."""
    replies, error = _messages_of(messages, "assistant", "put the reference in an assistant message")
    if error is not None:
        return None, error
    texts = [_content_text(m) for m in replies]
    if any(t is None for t in texts):
        return None, "an assistant message has no text content"
    return ("\n".join(t.strip() for t in texts if t.strip()) or None), None


def _messages_of(messages: list, role: str, fix: str) -> tuple[list[dict], str | None]:
    """The messages of ``role`` in a chat list, or an error when it is not one or has none."""
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        return [], ("is a list but not a list of chat messages ({\"role\": ..., \"content\": ...}); "
                    "expected text")
    found = [m for m in messages if m["role"] == role]
    if not found:
        roles = ", ".join(str(m["role"]) for m in messages) or "none"
        return [], f"is a chat message list with no {role} message (roles: {roles}); {fix}"
    return found, None


def _content_text(message: dict) -> str | None:
    """A message's text: a string content, or the text parts of a multimodal-style list."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content
                          if isinstance(part, dict) and part.get("type") == "text")
    return content if isinstance(content, str) else None


def split_gsm8k(answer: str | None, solution: str | None) -> tuple[str | None, str | None]:
    """GSM8K "steps #### 42": returns (answer, solution) with the steps moved to the solution
    when there was none. Values without ``####`` are returned unchanged."""
    if answer is None or "####" not in answer:
        return answer, solution
    match = GSM8K_MARK.match(answer)
    if match is None or not match["answer"]:
        return answer, solution
    return match["answer"], solution if solution is not None else (match["steps"].strip() or None)
