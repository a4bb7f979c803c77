"""Pure analyses on fixtures: marker tables, word-frequency shift, run report; plots written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from selfdistill.analysis.frequency import frequency_shift
from selfdistill.analysis.run_report import collect_series, write_run_report
from selfdistill.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "samples"


def _png_ok(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, path


def test_frequency_shift_formula():
    a = ["wait wait the cat", "hmm the dog"]
    b = ["the cat the dog", "so the dog"]
    rows, summary = frequency_shift(a, b, alpha=0.5, min_count=1)
    by_word = {r.word: r for r in rows}
    vocab = summary["vocab"]
    assert vocab == len({"wait", "the", "cat", "hmm", "dog", "so"} | {
        "perhaps", "maybe", "actually", "alternatively", "seems", "might", "likely", "check"})
    fa = (2 + 0.5) / (7 + 0.5 * vocab)
    fb = (0 + 0.5) / (7 + 0.5 * vocab)
    assert by_word["wait"].log2_ratio == pytest.approx(math.log2(fb / fa))
    assert by_word["wait"].is_marker and not by_word["the"].is_marker
    assert by_word["the"].log2_ratio > 0 > by_word["wait"].log2_ratio
    assert summary["marker_share_a"] == pytest.approx(3 / 7)
    assert summary["marker_share_b"] == 0.0
    assert summary["marker_mean_log2_ratio"] < summary["other_mean_log2_ratio"]
    with pytest.raises(ValueError, match="words on both sides"):
        frequency_shift([""], ["x"])


def test_analyze_markers_cli(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["analyze", "markers", str(FIXTURES / "base.jsonl"), str(FIXTURES / "trained.jsonl"),
                 "--output-dir", str(out), "--min-count", "2"]) == 0
    rows = list(csv.DictReader(open(out / "markers.csv")))
    assert [(r["group"], r["mode"]) for r in rows] == [
        ("base.jsonl", "word"), ("trained.jsonl", "word"), ("base.jsonl", "paper"), ("trained.jsonl", "paper")]
    base_word = rows[0]
    # hand count of the fixture, word mode: wait 4, hmm 5, perhaps 1, maybe 3, actually 2,
    # alternatively 1, seems 2, might 1, likely 1, check 4 ("checking" excluded, "double-check" in)
    assert int(base_word["wait"]) == 4 and int(base_word["check"]) == 4
    assert float(base_word["E_per_response"]) == pytest.approx(24 / 4)
    assert float(base_word["total_per_1k"]) == pytest.approx(1000 * 24 / int(base_word["tokens"]))
    assert int(rows[2]["check"]) == 5  # paper mode also counts "checking"
    assert int(rows[1]["check"]) == 1 and float(rows[1]["E_per_response"]) == pytest.approx(0.25)
    for name in ("markers_per_1k_word.png", "markers_per_1k_paper.png", "freq_shift.png"):
        _png_ok(out / name)
    shift = list(csv.DictReader(open(out / "freq_shift.csv")))
    marker_rows = {r["word"]: float(r["log2_ratio"]) for r in shift if r["marker"] == "yes"}
    assert marker_rows["wait"] < 0 and marker_rows["hmm"] < 0
    assert "markers mean log2 ratio" in capsys.readouterr().out


def test_analyze_markers_bad_rows(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "wait", "num_tokens": 3}\n{"text": "x"}\n')
    with pytest.raises(ValueError, match="row 2: field 'response'"):
        main(["analyze", "markers", str(bad), "--output-dir", str(tmp_path / "o")])
    bad.write_text('{"response": "wait"}\n')
    with pytest.raises(ValueError, match="no 'num_tokens'"):
        main(["analyze", "markers", str(bad), "--output-dir", str(tmp_path / "o")])


def test_report_on_fixture(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text((FIXTURES / "metrics.jsonl").read_text())
    assert main(["report", str(run)]) == 0
    report = (run / "report" / "report.md").read_text()
    assert "| loss | 1 | 0.1667 | 0.1667 | 1 | 6 | 6 |" in report
    assert "note" not in report and "flag" not in report  # text and bools are not metrics
    assert "| pmi/kl_ratio_ref | 0.7 | 0.7 | 0.7 | 0.7 | 5 | 6 |" in report  # null skipped
    for group in ("loss", "accuracy", "length", "markers", "diagnostics", "speed"):
        _png_ok(run / "report" / f"{group}.png")
        assert f"![{group}]({group}.png)" in report
    assert "wrote" in capsys.readouterr().out


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        write_run_report(tmp_path)
    with pytest.raises(ValueError, match="row 1: no 'step'"):
        collect_series([{"loss": 1.0}])


def test_analyze_markers_group_by(tmp_path):
    merged = tmp_path / "merged.jsonl"
    lines = []
    for name in ("base", "trained"):
        for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
            lines.append(json.dumps({**json.loads(line), "setting": name}))
    merged.write_text("\n".join(lines) + "\n")
    out = tmp_path / "g"
    assert main(["analyze", "markers", str(merged), "--group-by", "setting", "--compare", "trained,base",
                 "--output-dir", str(out), "--min-count", "2"]) == 0
    rows = list(csv.DictReader(open(out / "markers.csv")))
    assert [r["group"] for r in rows[:2]] == ["base", "trained"]
    assert int(rows[0]["wait"]) == 4
    shift = {r["word"]: float(r["log2_ratio"]) for r in csv.DictReader(open(out / "freq_shift.csv"))}
    assert shift["wait"] > 0  # B = base has more "wait" than A = trained
    with pytest.raises(ValueError, match="groups are base, trained"):
        main(["analyze", "markers", str(merged), "--group-by", "setting", "--compare", "x,base",
              "--output-dir", str(out)])
