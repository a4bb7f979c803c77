"""Every study end to end on tiny-random (one step per cell, 2 eval problems x 1 sample):
report files written, finished cells reused on rerun, a cell whose markers are removed resumes."""

import json
import shutil

import pytest

from selfdistill.cli import main

pytestmark = pytest.mark.slow

TINY = ["model=tiny-random", "dtype=float32", "steps=1", "eval_problems=2", "eval_samples=1",
        "eval_max_new_tokens=4", "max_new_tokens=6", "checkpoint_every=1", "prompts_per_step=2"]
GRIDS = {  # study -> settings that keep its grid to one or two cells
    "context-richness": ["cells=c=full,c=no-think"],
    "task-coverage": ["sizes=1", "rollouts=2"],
    "teacher-target": ["ema_rates=0.05", "rollouts=2", "cells=ema-0.05"],
    "offline-sft": ["keep=all", "gen_problems=2", "gen_samples=1", "sft_epochs=1", "sft_batch_size=2"],
    "purified-ablation": ["clips=10", "betas=1", "anchors=base"],
    "srpo": ["budget_s=0.5", "probe_steps=1", "rollouts=2", "cells=srpo"],
}
REPORT = ["summary.md", "results.md", "results.csv", "timings.json"]


def _run(name, out):
    return main(["study", name, *TINY, *GRIDS[name], "--output-dir", str(out)])


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    for name in GRIDS:
        assert _run(name, root / name) == 0, name
    return root


@pytest.mark.parametrize("name", list(GRIDS))
def test_report_files_and_one_row_per_cell(studies, name):
    report = studies / name / "report"
    for f in REPORT:
        assert (report / f).stat().st_size > 0, f
    assert list(report.glob("eval_*.png"))
    rows = (report / "results.csv").read_text().splitlines()
    cells = sorted(p.name for p in (studies / name / "cells").iterdir())
    assert len(rows) == 1 + 1 + len(cells)  # header, base, cells
    for cell in cells:
        assert (studies / name / "cells" / cell / "COMPLETE").exists()
        assert any(r.startswith(cell + ",") for r in rows)


def test_training_curves_and_study_specifics(studies):
    assert (studies / "purified-ablation" / "report" / "training_curves.png").exists()
    metrics = (studies / "purified-ablation" / "cells" / "opsd" / "run" / "metrics.jsonl").read_text()
    assert "pmi/norm_ratio_ref_total" in metrics  # diagnostics on for standard OPSD
    header = (studies / "task-coverage" / "report" / "results.csv").read_text().splitlines()[0]
    assert "in-dist avg@k" in header and "ood avg@k" in header
    budget = json.loads((studies / "srpo" / "cells" / "srpo" / "budget.json").read_text())
    assert budget["max_steps"] >= budget["probe_steps"] == 1 and budget["seconds_per_step"] > 0
    full = (studies / "context-richness" / "data" / "reference-full.jsonl").read_text()
    stripped = (studies / "context-richness" / "data" / "reference-no-think.jsonl").read_text()
    assert "<think>" in full and "<think>" not in stripped and "boxed" in stripped
    gen = json.loads((studies / "offline-sft" / "cells" / "sft-guided" / "generation.json").read_text())
    assert gen["guide"] == "teacher" and gen["kept"] == gen["samples"] == 2
    assert (studies / "offline-sft" / "cells" / "sft-guided" / "run" / "final").is_dir()
    sft_rows = (studies / "offline-sft" / "cells" / "sft-guided" / "run" / "metrics.jsonl").read_text().splitlines()
    assert sft_rows and all(json.loads(r)["time/step_s"] > 0 for r in sft_rows)  # timed like training steps


def test_rerun_reuses_finished_cells_and_resumes_an_unfinished_one(studies, capsys):
    out = studies / "purified-ablation"
    cell = out / "cells" / "purified-c10-b1"
    (cell / "COMPLETE").unlink()  # as if killed after training, during evaluation
    (cell / "train.json").unlink()
    shutil.rmtree(cell / "eval")
    capsys.readouterr()
    assert _run("purified-ablation", out) == 0
    text = capsys.readouterr().out
    assert "opsd (method=opsd" in text and text.count("finished, reused") == 1
    assert "[base] evaluation found, reused" in text
    assert json.loads((cell / "train.json").read_text())["resumed"] is True
    steps = [json.loads(l)["step"] for l in (cell / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]  # resumed at its last checkpoint: no step logged twice
    assert (cell / "COMPLETE").exists()
