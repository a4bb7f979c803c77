"""One entry point for every source: ``load_examples(spec, ...) -> list[Example]``.

Spec forms (parameters after ``?`` as ``key=value&...``):
    path/to/train.jsonl            a local .jsonl / .json / .csv / .parquet file
    gsm8k-100, champ, rg:<task>    offline sets from installed packages (``rg:chain_sum?size=200&seed=1``)
    hf:NAME[:CONFIG]               a hub dataset or a local dataset folder via datasets.load_dataset;
                                   hub parameters: split, data_files, data_dir, revision
    NAME[:CONFIG]                  anything else that is not an existing path is a hub dataset
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from selfdistill.data.errors import DataError, RowError, format_errors
from selfdistill.data.files import SUFFIXES, read_file
from selfdistill.data.hub import load_hub
from selfdistill.data.offline import is_offline_name, load_offline
from selfdistill.data.rows import RawTable
from selfdistill.data.validate import MAX_FIELD_CHARS, check_rows
from selfdistill.paths import looks_like_path
from selfdistill.types import Example

log = logging.getLogger(__name__)
HUB_PARAMS = {"split", "data_files", "data_dir", "revision"}
OFFLINE_NAMES = ("gsm8k-100", "champ")  # rg:<task> starts with its prefix


@dataclass
class LoadResult:
    """What ``load_with_report`` found.

    Attributes:
        examples: the good rows.
        skipped: the errors of rows left out (only with ``on_bad_rows="skip"``).
        source: the path or dataset name.
        columns: every column of the source; mapping: field -> column used (None if absent).
        total_rows: rows read (good and bad), after ``limit``.
        warnings: columns that look like a field but are not read (e.g. an answer column named
            ``gold``), each with the mapping that would read it.
    """

    examples: list[Example]
    skipped: list[RowError] = field(default_factory=list)
    source: str = ""
    columns: list[str] = field(default_factory=list)
    mapping: dict[str, str | None] = field(default_factory=dict)
    total_rows: int = 0
    warnings: list[str] = field(default_factory=list)


def load_examples(spec: str | Path, *, split: str | None = None, columns: dict[str, str] | None = None,
                  limit: int | None = None, seed: int = 0, method: str | None = None,
                  on_bad_rows: str = "error", need_answer: bool | None = None,
                  max_chars: int = MAX_FIELD_CHARS, syntax: str = "any") -> list[Example]:
    """Load and validate examples from ``spec`` (see the module docstring for the forms).

    Args:
        split: hub split (default train, or the only split); local files and offline sets have one.
        columns: explicit field -> column mapping, e.g. ``{"problem": "q"}``.
        limit: keep the first ``limit`` rows (counted before validation).
        seed: generator seed of ``rg:`` sets (a ``seed=`` in the spec wins).
        method: opsd | purified-opsd | sdpo | grpo | srpo; decides which fields are required.
        on_bad_rows: "error" raises DataError listing the bad rows; "skip" leaves them out and
            logs a warning (whole-source problems such as a missing column always raise).
        need_answer: require answers regardless of the method (None: decided by the method).
        max_chars: longest allowed field, in characters.
        syntax: how error hints write a column mapping: "data" (``--columns``), "train"
            (``data.columns=``) or "any" (both forms).
    Raises:
        DataError: with every problem found, row-numbered.
    """
    result = load_with_report(spec, split=split, columns=columns, limit=limit, seed=seed, method=method,
                              on_bad_rows=on_bad_rows, need_answer=need_answer, max_chars=max_chars,
                              syntax=syntax)
    for warning in result.warnings:
        log.warning("%s: %s", result.source, warning)
    if result.skipped:
        log.warning("skipped %d bad rows of %s:\n%s", len({e.row for e in result.skipped}),
                    result.source, format_errors(result.skipped, limit=5))
    return result.examples


def load_with_report(spec: str | Path, *, split: str | None = None, columns: dict[str, str] | None = None,
                     limit: int | None = None, seed: int = 0, method: str | None = None,
                     on_bad_rows: str = "error", need_answer: bool | None = None,
                     max_chars: int = MAX_FIELD_CHARS, syntax: str = "any") -> LoadResult:
    """Like ``load_examples`` but also returns the skipped rows, the columns, the mapping and the
    warnings (not logged here: the caller shows them)."""
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', not {on_bad_rows!r}")
    table = read_source(spec, split=split, limit=limit, seed=seed)
    if limit is not None:
        _apply_limit(table, limit)
    fatal = [e for e in table.errors if e.row == 0]
    if fatal:
        raise DataError(fatal)
    checked = check_rows(table.rows, columns=table.columns, overrides=columns, method=method,
                         need_answer=need_answer, max_chars=max_chars, source=table.source,
                         label=table.label, unit=table.unit, id_prefix=table.id_prefix or table.label,
                         syntax=syntax)
    errors = sorted(table.errors + checked.errors, key=lambda e: e.row)
    if any(e.row == 0 for e in errors) or (errors and on_bad_rows == "error"):
        raise DataError(errors)
    if not checked.examples:
        raise DataError(errors or [RowError(0, "file", "no rows", table.source)])
    return LoadResult(examples=checked.examples, skipped=errors, source=table.source,
                      columns=checked.columns, mapping=checked.mapping,
                      total_rows=len(table.rows) + len({e.row for e in table.errors}),
                      warnings=checked.warnings)


def read_source(spec: str | Path, *, split: str | None = None, limit: int | None = None,
                seed: int = 0) -> RawTable:
    """The raw rows of ``spec``: parse errors are in ``table.errors``, not raised."""
    text = str(spec)
    name, _, query = text.partition("?")
    forced_hub = name.startswith("hf:")
    if not forced_hub and not is_offline_name(name):
        if (isinstance(spec, Path) or Path(text).exists() or Path(text).suffix.lower() in SUFFIXES
                or looks_like_path(name)):  # a missing local path is reported as missing, not as a hub miss
            return read_file(text)
    params = _parse_params(query)
    if is_offline_name(name):
        return load_offline(name, params, seed=seed)
    close = difflib.get_close_matches(name, OFFLINE_NAMES, n=1, cutoff=0.75)
    if not forced_hub and "/" not in name and close:  # a typo of an offline name, not a hub id
        raise DataError(f"no data set {name!r}: did you mean {close[0]}? (`selfdistill data list` lists the "
                        f"offline sets; write hf:{name} for a hub dataset of that name)", text)
    name = name.removeprefix("hf:")
    unknown = set(params) - HUB_PARAMS
    if unknown:
        raise DataError(f"unknown hub parameter(s) {', '.join(sorted(unknown))}; allowed: "
                        f"{', '.join(sorted(HUB_PARAMS))}", text)
    split = params.pop("split", split)
    return load_hub(name, split=split, limit=limit, **params)


def _apply_limit(table: RawTable, limit: int) -> None:
    """Keep the first ``limit`` records, good or unparseable, in source order."""
    numbers = sorted({r.number for r in table.rows} | {e.row for e in table.errors if e.row > 0})
    if len(numbers) > limit:
        last = numbers[limit - 1] if limit > 0 else 0
        table.rows = [r for r in table.rows if r.number <= last]
        table.errors = [e for e in table.errors if e.row <= last]


def _parse_params(query: str) -> dict[str, Any]:
    """``"size=200&seed=1&name=x"`` -> ``{"size": 200, "seed": 1, "name": "x"}``."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = {"true": True, "false": False}.get(value.lower(), value)
    return params
