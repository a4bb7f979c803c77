"""Validation with named rows: every bad row is reported with its number, field and a fix.

What each method needs (``requirements``): opsd and purified-opsd put the reference solution in
the teacher's context, so every row needs a solution; sdpo, grpo and srpo reward sampled
answers, so every row needs an answer. ``need_answer`` overrides the answer rule (evaluation
sets need answers whatever the method).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfdistill.data.columns import (FIELDS, infer_mapping, map_hint, missing_column_message, split_gsm8k,
                                     to_text, unread_column_warnings)
from selfdistill.data.errors import RowError
from selfdistill.data.rows import RawRow, columns_of
from selfdistill.methods import METHODS as _METHODS
from selfdistill.types import Example

METHODS = tuple(_METHODS)
MAX_FIELD_CHARS = 1_000_000


def requirements(method: str | None, need_answer: bool | None = None) -> dict[str, str]:
    """Fields every row must have -> why, for ``method`` (None: only the problem)."""
    if method is not None and method not in _METHODS:  # the table itself: a record added is known
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(_METHODS)}")
    needs = {"problem": "every row needs a question"}
    record = _METHODS.get(method) if method is not None else None
    if record is not None and record.needs_solution:
        needs["solution"] = f"method {method} puts the reference solution in the teacher's context"
    rewarded = record is not None and record.needs_answer
    if need_answer is None:
        need_answer = rewarded
    if need_answer:
        needs["answer"] = (f"method {method} rewards sampled answers against the gold answer"
                           if rewarded else "the gold answer is needed (need_answer)")
    return needs


@dataclass
class Checked:
    """Result of checking rows: the good ones as Examples, every error, the mapping used, and
    warnings (columns that look like a field but are not read)."""

    examples: list[Example] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    mapping: dict[str, str | None] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_rows(rows: Sequence[RawRow], *, columns: list[str] | None = None,
               overrides: dict[str, str] | None = None, method: str | None = None,
               need_answer: bool | None = None, max_chars: int = MAX_FIELD_CHARS,
               source: str = "", label: str = "row", unit: str = "row",
               id_prefix: str | None = None, syntax: str = "any") -> Checked:
    """Map and validate raw rows. Whole-source problems have row 0.

    Rows without an id get ``f"{id_prefix}-{number}"``; rows without an origin get
    ``f"{label} {unit} {number}"`` (e.g. "train.jsonl line 12"). ``syntax`` (a
    ``columns.MAP_SYNTAX`` key: data, train, any) is how hints tell to map a column.
    """
    needs = requirements(method, need_answer)
    columns = list(columns) if columns is not None else columns_of(list(rows))
    mapping, problems = infer_mapping(columns, overrides)
    out = Checked(mapping=mapping, columns=columns)
    out.errors += [RowError(0, "columns", p, source) for p in problems]
    if not rows:
        return out  # nothing parsed: the reader's errors say why
    for name, why in needs.items():
        column = mapping[name]
        if column is None and not (name == "solution" and _gsm8k_steps_possible(mapping, rows)):
            out.errors.append(RowError(0, name, missing_column_message(name, columns, why, syntax), source))
        elif column is not None and rows and not any(_filled(r, column) for r in rows):
            out.errors.append(RowError(0, name, f"{_cell(name, column)} is empty in every row; {why}: "
                                       f"fill it in, or map another column with {map_hint(name, syntax)}",
                                       source))
    derived = ("solution",) if _gsm8k_steps_possible(mapping, rows) else ()
    out.warnings = unread_column_warnings(columns, mapping, syntax, derived=derived)
    if any(e.row == 0 for e in out.errors):
        return out  # a missing column would otherwise repeat the same error on every row
    first_row_of_id: dict[str, int] = {}
    for raw in rows:
        values, row_errors = _row_values(raw, mapping, needs, max_chars)
        if values is not None:
            row_id = values["id"] or f"{id_prefix if id_prefix is not None else label}-{raw.number}"
            if row_id in first_row_of_id:
                row_errors.append(("id", f"duplicate id {row_id!r}: also at {unit} "
                                   f"{first_row_of_id[row_id]}; ids must be unique (fix it, or drop the "
                                   "id column to number rows automatically)"))
            else:
                first_row_of_id[row_id] = raw.number
        out.errors += [RowError(raw.number, f, m, source) for f, m in row_errors]
        if values is not None and not row_errors:
            out.examples.append(Example(
                id=row_id, problem=values["problem"] or "", solution=values["solution"],
                answer=values["answer"], feedback=values["feedback"],
                origin=raw.origin or f"{label} {unit} {raw.number}"))
    return out


def validate_rows(rows: Sequence[RawRow | Mapping[str, Any]], *, method: str | None = None,
                  need_answer: bool | None = None, columns: dict[str, str] | None = None,
                  max_chars: int = MAX_FIELD_CHARS, source: str = "") -> list[RowError]:
    """Every problem in ``rows`` (RawRows, or plain mappings numbered 1, 2, ...), row-numbered."""
    raws = [r if isinstance(r, RawRow) else RawRow(i, r) for i, r in enumerate(rows, start=1)]
    return check_rows(raws, overrides=columns, method=method, need_answer=need_answer,
                      max_chars=max_chars, source=source).errors


def _filled(raw: RawRow, column: str) -> bool:
    value = raw.value.get(column) if isinstance(raw.value, dict) else None
    return value is not None and not (isinstance(value, str) and not value.strip())


def _gsm8k_steps_possible(mapping: dict[str, str | None], rows: Sequence[RawRow]) -> bool:
    """True when a missing solution column may be filled from GSM8K-style answers."""
    column = mapping["answer"]
    return column is not None and any(
        isinstance(r.value, dict) and isinstance(r.value.get(column), str) and "####" in r.value[column]
        for r in rows)


def _row_values(raw: RawRow, mapping: dict[str, str | None], needs: dict[str, str],
                max_chars: int) -> tuple[dict[str, str | None] | None, list[tuple[str, str]]]:
    """One raw row -> (field -> text, or None when the row is not an object; [(field, message)])."""
    if not isinstance(raw.value, dict):
        kind = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean",
                type(None): "null"}.get(type(raw.value), type(raw.value).__name__)
        return None, [("row", f"is {kind}, not an object; each row must be a JSON object like "
                              "{\"problem\": ..., \"solution\": ..., \"answer\": ...}")]
    errors: list[tuple[str, str]] = []
    values: dict[str, str | None] = {}
    for name in FIELDS:
        column = mapping[name]
        text, problem = to_text(raw.value.get(column), name) if column is not None else (None, None)
        if problem is not None:
            errors.append((name, f"{_cell(name, column)} {problem}"))
        elif text is not None and len(text) > max_chars:
            errors.append((name, f"{_cell(name, column)} is {len(text):,} characters, over the limit of "
                                 f"{max_chars:,} (usually a whole document pasted into one cell); "
                                 "shorten it or raise the limit with --max-chars"))
            text = None
        values[name] = text
    values["answer"], values["solution"] = split_gsm8k(values["answer"], values["solution"])
    failed = {f for f, _ in errors}
    for name, why in needs.items():
        if values[name] is None and name not in failed:
            errors.append((name, f"{_cell(name, mapping[name])} {_absence(raw.value, name, mapping)}; {why}: "
                                 "fill it in or drop the row"))
    return values, errors


def _absence(value: dict, name: str, mapping: dict[str, str | None]) -> str:
    """Why a required field has no value on this row."""
    column = mapping[name]
    if column is not None:
        return "is empty" if column in value else "is missing"
    raw_answer = value.get(mapping["answer"] or "")  # only a GSM8K-style answer could supply it
    if isinstance(raw_answer, str) and "####" in raw_answer:
        return "is missing (no solution column, and this row's answer has no steps before '####')"
    return "is missing (no solution column, and this row's answer is not GSM8K-style 'steps #### final')"


def _cell(field_name: str, column: str | None) -> str:
    """How to name a cell in messages: ``problem`` or ``problem (column "question")``."""
    if column is None or column == field_name:
        return field_name
    return f"{field_name} (column {column!r})"
