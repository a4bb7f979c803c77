"""Local files, column mapping and validation rules on good data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfdistill.data import DataError, load_examples, load_with_report, requirements, validate_rows
from selfdistill.data.columns import infer_mapping, parse_columns_flag, split_gsm8k
from selfdistill.types import Example

GOOD = Path(__file__).parent / "fixtures" / "data" / "good"


def test_gsm8k_style_jsonl_is_split_into_solution_and_answer():
    examples = load_examples(GOOD / "gsm8k_tiny.jsonl", method="opsd")
    assert len(examples) == 8
    first = examples[0]
    assert first == Example(
        id="gsm8k_tiny-1",
        problem="Mia has 3 boxes with 4 pencils in each box. She gives away 5 pencils. How many pencils "
                "does she have left?",
        solution="Mia starts with 3 * 4 = <<3*4=12>>12 pencils.\nAfter giving 5 away she has 12 - 5 = "
                 "<<12-5=7>>7 pencils.",
        answer="7", origin="gsm8k_tiny.jsonl line 1")
    assert [e.answer for e in examples] == ["7", "180", "38", "23", "8", "30", "260", "30"]
    assert all("####" not in e.solution for e in examples)


def test_trl_style_prompt_string_or_chat_messages():
    examples = load_examples(GOOD / "trl_style.jsonl", method="opsd", need_answer=True)
    assert len(examples) == 4
    assert examples[0].problem.startswith("Mia has 3 boxes")  # user message of a chat prompt, system dropped
    assert examples[1].problem.startswith("A train travels")  # plain string prompt
    assert examples[0].solution.startswith("Mia starts with 3 * 4 = 3*4=12 12 pencils")  # privileged_context
    assert [e.answer for e in examples] == ["7", "180", "38", "23"]  # ground_truth


def test_bom_at_start_accepted_and_blank_lines_keep_numbering():
    examples = load_examples(GOOD / "bom_blank_lines.jsonl", method="grpo")
    assert [e.origin for e in examples] == ["bom_blank_lines.jsonl line 1", "bom_blank_lines.jsonl line 4",
                                            "bom_blank_lines.jsonl line 6"]
    assert [e.id for e in examples] == ["bom_blank_lines-1", "bom_blank_lines-4", "bom_blank_lines-6"]
    assert examples[0].problem == "1+1?"  # no BOM left in the text
    assert examples[1].answer == "5"  # a JSON number answer becomes text


def test_csv_with_explicit_column_mapping():
    with pytest.raises(DataError) as caught:
        load_examples(GOOD / "custom_columns.csv", method="opsd")
    assert "columns found: q, worked, final, key" in str(caught.value)
    examples = load_examples(GOOD / "custom_columns.csv", method="opsd",
                             columns=parse_columns_flag("problem=q,solution=worked,answer=final,id=key"))
    assert examples == [
        Example("r1", "What is 6 times 7, in words and digits?", "6*7=42", "42", "custom_columns.csv line 2"),
        Example("r2", "Add 10, 20", "10+20=30", "30", "custom_columns.csv line 3"),
    ]


def test_csv_with_bom_and_crlf_and_quoted_newlines(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfproblem,answer\r\n\"Two\r\nlines?\",2\r\n\r\nok?,3\r\n")
    examples = load_examples(path, need_answer=True)
    assert [(e.problem, e.answer, e.origin) for e in examples] == [
        ("Two\r\nlines?", "2", "excel.csv line 2"), ("ok?", "3", "excel.csv line 5")]


def test_parquet_with_aliases_and_integer_answers():
    examples = load_examples(GOOD / "int_answers.parquet", need_answer=True)
    assert [(e.problem, e.answer, e.origin) for e in examples] == [
        ("What is 2+2?", "4", "int_answers.parquet row 1"), ("What is 3+3?", "6", "int_answers.parquet row 2")]


def test_json_list_and_data_wrapper(tmp_path):
    rows = [{"question": "a?", "final_answer": "1"}, {"question": "b?", "final_answer": 2.0}]
    (tmp_path / "list.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows, "version": 3}))
    for name in ("list.json", "wrapped.json"):
        examples = load_examples(tmp_path / name)
        assert [(e.problem, e.answer, e.origin) for e in examples] == [
            ("a?", "1", f"{name} row 1"), ("b?", "2", f"{name} row 2")]


def test_limit_and_skip_report(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"problem": "ok 1", "answer": "1"}), "{broken", json.dumps({"problem": "", "answer": "2"}),
             json.dumps({"problem": "ok 4", "answer": "4"})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        load_examples(path)
    assert [(e.row, e.field) for e in caught.value.errors] == [(2, "json"), (3, "problem")]
    result = load_with_report(path, on_bad_rows="skip")
    assert [e.problem for e in result.examples] == ["ok 1", "ok 4"]
    assert [(e.row, e.field) for e in result.skipped] == [(2, "json"), (3, "problem")]
    assert result.total_rows == 4
    assert [e.problem for e in load_examples(path, limit=1)] == ["ok 1"]


def test_skip_mode_still_raises_for_a_missing_column(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError, match="no problem column"):
        load_examples(path, on_bad_rows="skip")


def test_duplicate_ids_skip_keeps_the_first(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": i, "problem": f"p{n}"}) + "\n" for n, i in enumerate([7, 8, 7])))
    result = load_with_report(path, on_bad_rows="skip")
    assert [(e.id, e.problem) for e in result.examples] == [("7", "p0"), ("8", "p1")]
    assert result.skipped[0].row == 3 and "also at line 1" in result.skipped[0].message


def test_duplicate_of_a_bad_row_is_still_named():
    rows = [{"id": "x", "problem": ""}, {"id": "x", "problem": "fine"}]
    errors = validate_rows(rows)
    assert [(e.row, e.field) for e in errors] == [(1, "problem"), (2, "id")]
    assert "also at row 1" in errors[1].message


def test_requirements_per_method():
    assert set(requirements(None)) == {"problem"}
    assert set(requirements("opsd")) == set(requirements("purified-opsd")) == {"problem", "solution"}
    for method in ("sdpo", "grpo", "srpo"):
        assert set(requirements(method)) == {"problem", "answer"}
    assert set(requirements("opsd", need_answer=True)) == {"problem", "solution", "answer"}
    assert set(requirements("grpo", need_answer=False)) == {"problem"}
    with pytest.raises(ValueError, match="unknown method"):
        requirements("ppo")


def test_validate_rows_on_plain_mappings():
    rows = [{"problem": "a", "solution": "s", "answer": "1"}, {"problem": "b", "answer": "2"},
            {"problem": "c", "solution": "s", "answer": None}]
    assert validate_rows(rows) == []
    assert [(e.row, e.field) for e in validate_rows(rows, method="opsd")] == [(2, "solution")]
    assert [(e.row, e.field) for e in validate_rows(rows, method="grpo")] == [(3, "answer")]
    errors = validate_rows(rows, method="opsd", need_answer=True)
    assert [(e.row, e.field) for e in errors] == [(2, "solution"), (3, "answer")]


def test_alias_priority_and_overrides():
    mapping, problems = infer_mapping(["question", "prompt", "answer_cot", "answer"])
    assert mapping == {"problem": "question", "solution": "answer_cot", "answer": "answer", "id": None,
                       "feedback": None}
    assert problems == []
    mapping, problems = infer_mapping(["q", "answer"], {"problem": "q", "nonsense": "x", "solution": "zz"})
    assert mapping["problem"] == "q" and mapping["solution"] is None
    assert any("unknown field 'nonsense'" in p for p in problems)
    assert any("solution=zz names no column" in p for p in problems)
    with pytest.raises(ValueError, match="FIELD=COLUMN"):
        parse_columns_flag("problem")


def test_gsm8k_answer_with_separate_solution_column_keeps_it(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "solution": "mine", "answer": "theirs\n#### 12"}) + "\n")
    [example] = load_examples(path, method="opsd")
    assert (example.solution, example.answer) == ("mine", "12")


text_no_mark = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="#"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(steps=text_no_mark, final=st.from_regex(r"[0-9][0-9,.]{0,8}", fullmatch=True))
def test_split_gsm8k_property(steps, final):
    answer, solution = split_gsm8k(f"{steps}\n#### {final}", None)
    assert answer == final
    assert solution == (steps.strip() or None)
    assert split_gsm8k(final, None) == (final, None)  # no marker: unchanged


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20).filter(str.strip), st.integers(0, 3)),
                min_size=1, max_size=12))
def test_jsonl_line_numbers_match_physical_lines(tmp_path_factory, rows):
    """Random rows separated by random runs of blank lines: origin line numbers are physical lines."""
    path = tmp_path_factory.mktemp("h") / "r.jsonl"
    lines, expected = [], []
    for problem, blanks in rows:
        lines += [""] * blanks
        lines.append(json.dumps({"problem": problem}))
        expected.append((problem.strip(), f"r.jsonl line {len(lines)}"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [(e.problem, e.origin) for e in load_examples(path)] == expected
