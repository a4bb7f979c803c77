"""Data: sources (local files, offline packages, the hub), column mapping and validation.

    load_examples(spec, *, split, columns, limit, seed, method, on_bad_rows, need_answer)
        -> list[Example]            (load_with_report also returns skipped rows and the mapping)
    validate_rows(rows, *, method, need_answer) -> list[RowError]
    DataError(errors)               raised on bad data; ``.errors`` holds every RowError
"""

from selfdistill.data.errors import DataError, RowError, format_errors
from selfdistill.data.load import LoadResult, load_examples, load_with_report, read_source
from selfdistill.data.validate import METHODS, requirements, validate_rows

__all__ = [
    "DataError", "RowError", "format_errors", "LoadResult", "load_examples", "load_with_report",
    "read_source", "METHODS", "requirements", "validate_rows",
]
