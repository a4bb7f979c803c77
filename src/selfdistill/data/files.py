"""Local data files: .jsonl, .json, .csv, .parquet -> RawTable with 1-based row numbers.

Numbering: .jsonl and .csv count physical lines (blank lines are skipped but still counted,
so a number always matches what an editor shows); .json counts items of the top-level list;
.parquet counts rows. A UTF-8 byte-order mark at the very start of a file is accepted and
dropped (spreadsheet programs write one); one anywhere else is an error.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from selfdistill.data.rows import RawRow, RawTable, columns_of

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
BOM = b"\xef\xbb\xbf"
LATIN1_FIX = (
    "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`; "
    "bytes like this usually mean Latin-1 or Windows-1252)"
)


def read_file(path: str | Path) -> RawTable:
    """Read one local data file. Problems go into ``table.errors``; nothing is raised."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    table = RawTable(source=str(path), label=path.name, id_prefix=path.stem,
                     unit="row" if kind in ("json", "parquet") else "line")
    if not path.exists():
        table.error(0, "file", "no such file; check the path (or name an offline set: "
                    "`selfdistill data list`)")
    elif path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in SUFFIXES)[:5]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        table.error(0, "file", f"is a directory{hint}; pass one data file, or `hf:{path}` to load "
                    "the folder with datasets.load_dataset")
    elif kind is None:
        table.error(0, "file", f"unknown extension {path.suffix or '(none)'!r}; supported: "
                    f"{', '.join(SUFFIXES)} (rename the file if its content is one of these)")
    elif kind == "parquet":
        _read_parquet(path, table)
    else:
        try:
            data = path.read_bytes()
        except OSError as err:
            table.error(0, "file", f"cannot be read ({err.strerror or err}); check its permissions")
            return table
        if data.startswith(BOM):
            data = data[len(BOM):]
        if not data.strip():
            table.error(0, "file", "the file is empty; expected one row per line" if kind == "jsonl"
                        else "the file is empty")
        elif kind == "jsonl":
            _read_jsonl(data, table)
        else:
            text = _decode_whole(data, table)
            if text is not None:
                (_read_json if kind == "json" else _read_csv)(text, table)
    if table.rows and not table.columns:
        table.columns = columns_of(table.rows)
    if not table.rows and not table.errors:
        table.error(0, "file", "no rows found (only blank lines or a header)")
    return table


def _utf8_error(line: bytes, offset: int) -> str:
    """Message for an undecodable byte at ``offset`` (0-based) of ``line``."""
    bad = line[offset:offset + 1].hex().upper()
    return f"not valid UTF-8 (byte 0x{bad} at byte {offset + 1} of the line); {LATIN1_FIX}"


def _decode_whole(data: bytes, table: RawTable) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        table.error(line_no, "encoding", _utf8_error(data[line_start:], err.start - line_start))
        return None


def _json_message(err: json.JSONDecodeError, text: str, line: int) -> str:
    message = f"invalid JSON at line {line}, column {err.colno}: {err.msg.removesuffix(' starting at')}"
    if err.msg.startswith("Unterminated string") or err.pos >= len(text.rstrip()):
        message += " (the text ends early: was the file cut off?)"
    return message


def _read_jsonl(data: bytes, table: RawTable) -> None:
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue  # blank lines are skipped but keep their number
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            table.error(number, "encoding", _utf8_error(line, err.start))
            continue
        if text.startswith("\ufeff"):
            table.error(number, "encoding", "a byte-order mark (U+FEFF) starts this line, usually "
                        "left by concatenating files; delete it (e.g. `sed -i 's/^\\xEF\\xBB\\xBF//' FILE`)")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            table.error(number, "json", _json_message(err, text, number) + "; each line must hold one "
                        "complete JSON object")
            continue
        table.rows.append(RawRow(number, value))


def _read_json(text: str, table: RawTable) -> None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        table.error(err.lineno, "json", _json_message(err, text, err.lineno))
        return
    items = value
    if isinstance(value, dict):
        if "data" not in value:
            keys = ", ".join(list(map(str, value))[:8]) or "none"
            table.error(0, "json", f"the top level is an object (keys: {keys}); expected a list of "
                        "row objects or {\"data\": [...]} (for one object per line use .jsonl)")
            return
        items = value["data"]
    if not isinstance(items, list):
        where = "\"data\"" if isinstance(value, dict) else "the top level"
        table.error(0, "json", f"{where} is a JSON {type(items).__name__}, expected a list of row objects")
        return
    table.rows = [RawRow(i, item) for i, item in enumerate(items, start=1)]


def _read_csv(text: str, table: RawTable) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            number, start = start, reader.line_num + 1
            if not record or all(not cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                dupes = sorted({h for h in header if header.count(h) > 1})
                if dupes:
                    table.error(number, "columns", f"repeated header name(s) {', '.join(dupes)}; "
                                "give every column a distinct name")
                    return
                table.columns = header
                continue
            if len(record) != len(header):
                table.error(number, "row", f"has {len(record)} fields but the header has {len(header)} "
                            f"({', '.join(header)}); a value or a comma is missing or extra "
                            "(quote fields that contain commas)")
                continue
            table.rows.append(RawRow(number, dict(zip(header, record))))
    except csv.Error as err:
        table.error(reader.line_num, "row", f"unreadable CSV: {err}")


def _read_parquet(path: Path, table: RawTable) -> None:
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt or non-parquet file
        table.error(0, "file", f"could not read as parquet ({type(err).__name__}: {err})")
        return
    table.columns = list(arrow.column_names)
    table.rows = [RawRow(i, row) for i, row in enumerate(arrow.to_pylist(), start=1)]
