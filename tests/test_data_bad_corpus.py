"""The bad-data corpus: every broken file gives a clear, row-numbered error and a non-zero exit.

Each case names the file under tests/fixtures/data/bad/, the method to check it for, the row
(1-based line/row number; 0 for a whole-file problem) and field that must be named, and a
phrase the message must contain (the fix or the diagnosis).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfdistill.cli import main
from selfdistill.data import DataError, load_examples

BAD = Path(__file__).parent / "fixtures" / "data" / "bad"

# file, method, row, field, phrase in the message
CASES = [
    ("truncated_line.jsonl", None, 3, "json", "cut off"),
    ("truncated.json", None, 9, "json", "cut off"),
    ("wrong_types.jsonl", None, 2, "problem", "is a number"),
    ("wrong_types.jsonl", None, 3, "answer", "is a list"),
    ("empty_problem.jsonl", None, 2, "problem", "is empty"),
    ("missing_problem_row.jsonl", None, 3, "problem", "is missing"),
    ("latin1.jsonl", None, 2, "encoding", "Latin-1"),
    ("latin1.csv", None, 3, "encoding", "not valid UTF-8"),
    ("duplicate_ids.jsonl", None, 3, "id", "also at line 1"),
    ("missing_columns.jsonl", None, 0, "problem", "columns found: text, label; map one with --columns problem="),
    ("empty.jsonl", None, 0, "file", "empty"),
    ("blank_only.jsonl", None, 0, "file", "empty"),
    ("missing_field.csv", None, 3, "row", "has 2 fields but the header has 3"),
    ("no_answer_column.csv", "grpo", 0, "answer", "--columns answer=NAME"),
    ("wrong_types.parquet", None, 1, "problem", "is a number (101)"),
    ("nan_answer.parquet", "grpo", 2, "answer", "is NaN"),
    ("corrupt.parquet", None, 0, "file", "could not read as parquet"),
    ("not_a_list.json", None, 0, "json", "expected a list of row objects"),
    ("data_not_a_list.json", None, 0, "json", "\"data\" is a JSON dict"),
    ("json_bad_item.json", None, 2, "row", "not an object"),
    ("bom_mid_file.jsonl", None, 2, "encoding", "byte-order mark"),
    ("nan_answer.jsonl", "sdpo", 2, "answer", "is NaN"),
    ("non_object_row.jsonl", None, 2, "row", "is a list, not an object"),
    ("unknown_extension.txt", None, 0, "file", "unknown extension '.txt'"),
    ("missing_solution.jsonl", "opsd", 2, "solution", "is missing"),
    ("chat_without_user.jsonl", None, 2, "problem", "no user message"),
    ("blank_answer.jsonl", "sdpo", 2, "answer", "is empty"),
    ("boolean_answer.jsonl", None, 3, "answer", "is a boolean"),
    ("trl_no_context.jsonl", "purified-opsd", 0, "solution", "--columns solution=NAME"),
    ("several_problems.jsonl", "opsd", 7, "id", "duplicate id 'q1': also at line 1"),
]


def _expected_prefix(path: Path, row: int, field: str) -> str:
    return f"{path}:{row}: {field}: " if row else f"{path}: {field}: "


def _check(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["data", "check", *argv])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("name,method,row,field,phrase", CASES, ids=[f"{c[0]}:{c[3]}" for c in CASES])
def test_bad_file_is_reported_with_row_and_field(name, method, row, field, phrase, capsys):
    path = BAD / name
    argv = [str(path)] + (["--method", method] if method else [])
    code, out = _check(argv, capsys)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith(_expected_prefix(path, row, field))]
    assert lines, f"no line starting {_expected_prefix(path, row, field)!r} in:\n{out}"
    assert any(phrase in line for line in lines), out
    # the library raises the same error
    with pytest.raises(DataError) as caught:
        load_examples(path, method=method)
    assert any(e.row == row and e.field == field for e in caught.value.errors), str(caught.value)


def test_corpus_covers_at_least_fifteen_kinds():
    files = {c[0] for c in CASES}
    assert files == {p.name for p in BAD.iterdir()}, "every bad fixture has a case and vice versa"
    assert len(files) >= 15


def test_directory_instead_of_file(tmp_path, capsys):
    folder = tmp_path / "train.jsonl"
    folder.mkdir()
    (folder / "part-0.jsonl").write_text(json.dumps({"problem": "1+1?"}) + "\n")
    code, out = _check([str(folder)], capsys)
    assert code == 1
    assert out.startswith(f"{folder}: file: is a directory (it holds part-0.jsonl)")
    assert f"hf:{folder}" in out


def test_missing_file(tmp_path, capsys):
    code, out = _check([str(tmp_path / "nope.jsonl")], capsys)
    assert code == 1 and "no such file" in out


def test_huge_field_generated(tmp_path, capsys):
    path = tmp_path / "huge.jsonl"
    rows = [{"problem": "small?", "answer": "1"}, {"problem": "x" * 1_000_001, "answer": "2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = _check([str(path)], capsys)
    assert code == 1
    assert f"{path}:2: problem: problem is 1,000,001 characters, over the limit of 1,000,000" in out
    code, out = _check([str(path), "--max-chars", "2000000"], capsys)
    assert code == 0, out


def test_several_problems_in_one_file_all_reported(capsys):
    path = BAD / "several_problems.jsonl"
    code, out = _check([str(path), "--method", "opsd"], capsys)
    found = [tuple(line.split(": ")[:2]) for line in out.splitlines()]
    assert code == 1 and found == [(f"{path}:{row}", field) for row, field in
                                   [(3, "solution"), (4, "json"), (5, "encoding"), (6, "answer"), (6, "solution"),
                                    (7, "id"), (8, "problem"), (8, "solution")]]


def test_errors_are_listed_in_row_order_with_a_count_on_stderr(capsys):
    code = main(["data", "check", str(BAD / "wrong_types.jsonl")])
    captured = capsys.readouterr()
    rows = [int(line.split(":")[1]) for line in captured.out.splitlines()]
    assert code == 1 and rows == sorted(rows) == [2, 3]
    assert "2 errors; fix them" in captured.err


def test_data_error_message_lists_first_twenty_and_counts_the_rest(tmp_path):
    path = tmp_path / "many.jsonl"
    rows = [{"problem": "fine?"}] + [{"problem": ""}] * 25
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError) as caught:
        load_examples(path)
    message = str(caught.value)
    assert len(caught.value.errors) == 25
    assert message.splitlines()[0] == f"25 data errors in {path} (25 bad rows):"
    assert f"{path}:21: problem:" in message and f"{path}:22: problem:" not in message
    assert "... and 5 more" in message


def test_real_subprocess_exit_code():
    path = BAD / "truncated_line.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run([sys.executable, "-m", "selfdistill", "data", "check", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(f"{path}:3: json: invalid JSON at line 3, column")
    assert "Traceback" not in done.stderr
