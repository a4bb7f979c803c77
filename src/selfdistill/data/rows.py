"""Raw rows as read from a source, before column mapping and validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfdistill.data.errors import RowError


@dataclass(frozen=True)
class RawRow:
    """One record of a source.

    Attributes:
        number: 1-based line number (.jsonl, .csv) or row number (everything else).
        value: the parsed record, normally a dict of column -> value.
        origin: where the row came from for messages; built from the source when empty.
    """

    number: int
    value: Any
    origin: str = ""


@dataclass
class RawTable:
    """Everything a reader found in one source.

    Attributes:
        source: the path or dataset name, used as the prefix of error messages.
        label: a short name used in default ids and origins (a file name, a dataset name).
        unit: "line" or "row": what ``RawRow.number`` counts.
        rows: the records that parsed.
        errors: records that did not parse (row-numbered) and whole-source problems (row 0).
        columns: every column name seen, in first-seen order.
        id_prefix: default ids are ``f"{id_prefix}-{number}"`` (the label when empty).
    """

    source: str
    label: str
    unit: str
    rows: list[RawRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    id_prefix: str = ""

    def error(self, row: int, field_name: str, message: str) -> None:
        """Record a problem at ``row`` (0 for the whole source)."""
        self.errors.append(RowError(row, field_name, message, self.source))


def columns_of(rows: list[RawRow]) -> list[str]:
    """Every key of the dict rows, in first-seen order."""
    seen: dict[str, None] = {}
    for raw in rows:
        if isinstance(raw.value, dict):
            for key in raw.value:
                seen.setdefault(str(key), None)
    return list(seen)
