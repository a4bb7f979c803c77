"""Row-numbered data errors: what is wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass

# How many errors a DataError message lists before it only counts the rest.
MAX_LISTED = 20


@dataclass(frozen=True)
class RowError:
    """One problem found in a data source.

    Attributes:
        row: 1-based line number (.jsonl, .csv, a parse error in .json) or row number (.json
            list items, .parquet, hub splits, generated sets); 0 when the problem concerns the
            whole source (empty file, missing column, ...).
        field: the canonical field concerned ("problem", "solution", "answer", "id"), or
            "row" / "file" / "columns" / "encoding" / "json" for structural problems.
        message: what is wrong and how to fix it.
        source: the file path or dataset name, for printing.
    """

    row: int
    field: str
    message: str
    source: str = ""

    def format(self) -> str:
        """``SOURCE:ROW: field: message`` (``SOURCE: field: message`` for whole-source errors)."""
        where = self.source or "<data>"
        if self.row > 0:
            where = f"{where}:{self.row}"
        return f"{where}: {self.field}: {self.message}"


class DataError(ValueError):
    """Bad data. ``errors`` holds every problem found; the message lists the first 20."""

    def __init__(self, errors: list[RowError] | RowError | str, source: str = "") -> None:
        if isinstance(errors, str):
            errors = [RowError(0, "source", errors, source)]
        elif isinstance(errors, RowError):
            errors = [errors]
        self.errors: list[RowError] = list(errors)
        super().__init__(format_errors(self.errors))


def format_errors(errors: list[RowError], limit: int = MAX_LISTED) -> str:
    """A readable multi-line summary: a count line, then up to ``limit`` errors, then the rest."""
    if not errors:
        return "no errors"
    if len(errors) == 1:
        return errors[0].format()
    sources = {e.source for e in errors}
    where = f" in {sources.pop()}" if len(sources) == 1 and "" not in sources else ""
    bad_rows = len({e.row for e in errors if e.row > 0})
    head = f"{len(errors)} data errors{where}"
    if bad_rows:
        head += f" ({bad_rows} bad rows)"
    lines = [head + ":"] + ["  " + e.format() for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more (run `selfdistill data check` to see all)")
    return "\n".join(lines)
