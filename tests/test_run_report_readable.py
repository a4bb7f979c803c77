"""`selfdistill report` for a newcomer (issue 18, item 4): titled panels with units and a line on
how to read each group, integer step ticks, constant series as a value in a table, a resume
marker, the run's key config and data, the latest eval/* numbers and the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfdistill.analysis import plots
from selfdistill.cli import main
from selfdistill.train.config import load_config, to_yaml


def _rows() -> list[dict]:
    rows = []
    for step in range(1, 6):
        row = {"step": step, "loss": 1.0 / step, "lr": 2e-4, "accuracy": 0.1 * step,
               "response/length_mean": 100.0 + step, "markers/per_1k": 3.0, "pmi/norm_ratio_ref_total": 1.2 + step / 10}
        if step in (3, 5):
            row.update({"eval/avg@1": 0.25 * (step - 2) / 3, "eval/pass@1": 0.25 * (step - 2) / 3,
                        "eval/problems": 8})
        rows.append(row)
    return rows


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "myrun"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    cfg = load_config("purified-opsd", ["model=tiny-random", "data=my_data.jsonl", "data.columns=answer=gold",
                                        "max_steps=5", "lr=2e-4"])
    (run / "config.yaml").write_text(to_yaml(cfg))
    (run / "hardware.json").write_text(json.dumps({
        "device": "cpu", "dtype": "float32", "reason": "no native bf16 here", "processor": "Test CPU",
        "cpu_capability": "AVX2", "native_bf16": False, "warning": "", "threads": 2, "torch": "2.x"}))
    (run / "resumes.jsonl").write_text(json.dumps({"step": 2, "checkpoint": "c", "metrics_rows_kept": 2,
                                                   "changes": []}) + "\n")
    return run


@pytest.fixture
def figures(monkeypatch) -> list:
    """The matplotlib figures the report draws (kept open for inspection)."""
    saved = []
    real = plots._save

    def keep(fig, path):
        saved.append((Path(path).name, [(ax.get_title(), ax.get_ylabel(), list(ax.get_xticks()), len(ax.lines))
                                        for ax in fig.axes if ax.get_visible() and ax.lines]))
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def test_report_reads_without_the_code(run_dir, figures, capsys):
    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report" / "report.md").read_text()
    # the run: method, model, data with its mapping, steps, machine
    assert "| method | purified-opsd" in report and "tiny-random" in report
    assert "my_data.jsonl, columns answer=gold" in report
    assert "| processor | Test CPU |" in report and "| weight dtype | float32 |" in report
    assert "| why that dtype | no native bf16 here |" in report
    # a resume, the latest evaluation, constant series as numbers
    assert "resumed from step 2 (2 metric rows kept)" in report
    assert "## Latest held-out evaluation (step 5)" in report and "| eval/avg@1 |" in report
    constant = report.split("## Constant over the run", 1)[1].split("\n## ", 1)[0]
    assert "| lr |" in constant and "| markers/per_1k |" in constant and "| loss |" not in constant
    assert report.count("How to read:") == len(figures) >= 4

    panels = {title: (unit, ticks, lines) for _, axes in figures for title, unit, ticks, lines in axes}
    assert "learning rate" not in panels and "epistemic markers" not in panels  # constant: no flat plot
    assert panels["training loss"][0] == "per loss unit (token)"
    assert panels["response length"][0] == "tokens"
    for unit, ticks, lines in panels.values():
        assert unit and all(float(t).is_integer() for t in ticks)
        assert lines == 2  # the curve and the resume marker
