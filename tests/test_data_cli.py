"""`selfdistill data check | show | list` on good data (the bad corpus is in test_data_bad_corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfdistill.cli import main

GOOD = Path(__file__).parent / "fixtures" / "data" / "good"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFDISTILL_CACHE", str(tmp_path / "cache"))


def _run(argv, capsys):
    code = main(["data", *argv])
    return code, capsys.readouterr()


def test_check_good_file_prints_summary(capsys):
    path = GOOD / "gsm8k_tiny.jsonl"
    code, out = _run(["check", str(path), "--method", "opsd"], capsys)
    assert code == 0, out
    lines = out.out.splitlines()
    assert lines[0] == f"{path}: 8 rows, all good for opsd"
    assert "  columns found: question, answer" in lines
    assert "  solutions present: 8/8" in lines and "  answers present: 8/8" in lines
    assert any(line.startswith("  mapping: problem <- question, answer <- answer") and "before '####'" in line
               for line in lines)
    assert "  answer chars: min 1, median 2, max 3" in lines


def test_check_with_columns_flag(capsys):
    path = GOOD / "custom_columns.csv"
    code, out = _run(["check", str(path), "--method", "sdpo"], capsys)
    assert code == 1 and f"{path}: problem: no problem column" in out.out
    code, out = _run(["check", str(path), "--method", "sdpo", "--columns", "problem=q,answer=final"], capsys)
    assert code == 0 and "2 rows, all good for sdpo" in out.out


def test_check_need_answer_flag(capsys, tmp_path):
    path = tmp_path / "no_answers.jsonl"
    path.write_text('{"problem": "a?", "solution": "s"}\n')
    assert _run(["check", str(path)], capsys)[0] == 0
    code, out = _run(["check", str(path), "--need-answer"], capsys)
    assert code == 1 and out.out.startswith(f"{path}: answer: no answer column (the gold answer is needed")
    code, out = _run(["check", str(GOOD / "trl_style.jsonl"), "--columns", "problem=prompt,answer=prompt"], capsys)
    assert code == 1 and ":1: answer: answer (column 'prompt') is a list" in out.out


def test_bad_columns_flag_exits_2(capsys):
    code, out = _run(["check", str(GOOD / "gsm8k_tiny.jsonl"), "--columns", "problem"], capsys)
    assert code == 2 and "FIELD=COLUMN" in out.err


def test_show_offline_set_and_jsonl(capsys):
    code, out = _run(["show", "rg:chain_sum?size=5&seed=1", "--limit", "2"], capsys)
    assert code == 0
    assert out.out.startswith("rg:chain_sum?size=5&seed=1: 5 rows\n")
    assert out.out.count("\n[chain_sum-1-") == 2
    code, out = _run(["show", str(GOOD / "trl_style.jsonl"), "--limit", "1", "--jsonl"], capsys)
    [row] = [json.loads(line) for line in out.out.splitlines()]
    assert row["id"] == "trl_style-1" and row["answer"] == "7" and row["origin"] == "trl_style.jsonl line 1"


def test_show_skips_and_counts_bad_rows(capsys, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"problem": "a"}\n{"problem": 3}\n')
    code, out = _run(["show", str(path)], capsys)
    assert code == 0 and out.out.startswith(f"{path}: 1 row (1 bad row skipped)")


def test_list(capsys):
    code, out = _run(["list"], capsys)
    assert code == 0 and [line.split()[0] for line in out.out.splitlines()] == ["gsm8k-100", "champ", "rg:<task>"]
    code, out = _run(["list", "--rg"], capsys)
    assert "  gsm_symbolic" in out.out.splitlines() and "  chain_sum" in out.out.splitlines()
