"""Small I/O helpers shared by the analyses: JSONL reading, markdown + CSV tables."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (blank lines skipped). Errors name the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with the given column order."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict], columns: Sequence[str], stem: str | Path,
                title: str | None = None) -> tuple[Path, Path]:
    """Write ``stem.md`` (markdown, optional ``# title``) and ``stem.csv``; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    header = f"# {title}\n\n" if title else ""
    md_path.write_text(header + markdown_table(rows, columns), encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return md_path, csv_path
