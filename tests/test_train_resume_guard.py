"""Resume that protects the run (issue 18, item 2): the checkpoint records what defines the run,
a changed resume is refused key by key unless resume_allow_changes=true (then logged, applied and
recorded with its step), a visible resume line, and an output_dir message whose advice works."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from selfdistill.cli import main
from selfdistill.train import checkpoint, resume_guard
from selfdistill.train.config import load_config

GOOD = Path(__file__).parent / "fixtures" / "data" / "good"
CMD = ["train", "opsd", "model=tiny-random", "logging.progress=false", "logging.tensorboard=false",
       "max_new_tokens=6", "checkpoint.every=1", "lr=2e-4", "rewards.for_all=false"]


def _train(out: Path, *extra: str) -> int:
    return main(CMD + [f"output_dir={out}", *extra])


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory) -> Path:
    """A 2-step run on gsm8k-100 (limit 4), checkpointed at every step."""
    out = tmp_path_factory.mktemp("guard") / "run"
    assert _train(out, "data.limit=4", "max_steps=2") == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    return dest


def test_checkpoint_records_what_defines_the_run(two_steps):
    state = json.loads((checkpoint.latest(two_steps / "checkpoints") / "state.json").read_text())
    run = state["run"]
    assert run["method.name"] == "opsd" and run["model.name"] == "tiny-random"
    assert run["data.spec"] == "gsm8k-100" and run["data.limit"] == 4
    assert run["optimizer.lr"] == 2e-4 and run["sampling.max_new_tokens"] == 6
    assert run["data.fingerprint"].startswith("sha256:") and run["data.fingerprint"].endswith("(4 rows)")
    assert "schedule.max_steps" not in run and "logging.progress" not in run  # free to change


def test_changed_resume_is_refused_naming_each_key(two_steps, tmp_path, capsys):
    out = _copy(two_steps, tmp_path)
    before = (out / "metrics.jsonl").read_text()
    # another data set, another response length, and lr left out (default 5e-6, the run used 2e-4)
    cmd = [c for c in CMD if not c.startswith("lr=")] + [f"output_dir={out}", f"data={GOOD / 'gsm8k_tiny.jsonl'}",
                                                         "max_new_tokens=5", "max_steps=3", "resume=true"]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "data.spec: 'gsm8k-100' -> " in err and "gsm8k_tiny.jsonl" in err
    assert "sampling.max_new_tokens: 6 -> 5" in err and "optimizer.lr: 0.0002 -> 5e-06" in err
    assert "data.fingerprint: 'sha256:" in err and "resume_allow_changes=true" in err
    assert (out / "metrics.jsonl").read_text() == before  # nothing ran


def test_allowed_changes_are_logged_applied_and_recorded(two_steps, tmp_path, capsys, caplog):
    out = _copy(two_steps, tmp_path)
    with caplog.at_level(logging.WARNING, logger="selfdistill.train.resume_guard"):
        assert _train(out, "data.limit=3", "max_steps=3", "lr=1e-4", "max_new_tokens=5", "resume=true",
                      "resume_allow_changes=true") == 0
    err = capsys.readouterr().err
    assert "resumed from step 2 (checkpoint " in err and "2 metric rows kept" in err
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert "optimizer.lr changed from 0.0002 to 0.0001, in effect from step 3" in warned
    assert "data.limit changed from 4 to 3" in warned
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[2]["lr"] == pytest.approx(1e-4)  # the new lr runs (the scheduler state had 2e-4)
    text = (out / "config.yaml").read_text()
    assert yaml.safe_load(text)["optimizer"]["lr"] == pytest.approx(1e-4)  # config.yaml = what runs
    assert "#   from step 3: optimizer.lr: 0.0002 -> 0.0001" in text
    assert "#   from step 3: sampling.max_new_tokens: 6 -> 5" in text
    entry = resume_guard.history(out)[-1]
    assert entry["step"] == 2 and entry["metrics_rows_kept"] == 2
    assert {c["key"] for c in entry["changes"]} >= {"optimizer.lr", "data.limit", "data.fingerprint"}
    load_config(str(out / "config.yaml"))  # still a valid recipe
    assert main(["report", str(out)]) == 0  # the report marks the resume and its changes
    report = (out / "report" / "report.md").read_text()
    assert "resumed from step 2 (2 metric rows kept), with changes from step 3:" in report
    assert "optimizer.lr 0.0002 -> 0.0001" in report


def test_same_run_resumes_with_a_visible_line(two_steps, tmp_path, capsys):
    out = _copy(two_steps, tmp_path)
    assert _train(out, "data.limit=4", "max_steps=3", "resume=true") == 0
    err = capsys.readouterr().err
    assert f"resumed from step 2 (checkpoint {out / 'checkpoints' / 'step-000002'}, 2 metric rows kept)" in err
    assert resume_guard.history(out)[-1]["changes"] == []


def test_shape_keys_cannot_change_even_when_allowed(two_steps, tmp_path, capsys):
    out = _copy(two_steps, tmp_path)
    assert _train(out, "data.limit=4", "max_steps=3", "lora.r=4", "resume=true",
                  "resume_allow_changes=true") == 2
    err = capsys.readouterr().err
    assert "lora.r: 8 -> 4" in err and "shape of its saved weights" in err


def test_another_methods_output_dir_gives_advice_that_works(two_steps, tmp_path, capsys):
    out = _copy(two_steps, tmp_path)
    other = [c.replace("opsd", "purified-opsd") if c == "opsd" else c for c in CMD]
    assert main(other + [f"output_dir={out}", "data.limit=4", "max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "method.name: 'opsd' -> 'purified-opsd'" in err
    assert "Choose another output_dir" in err and "pass resume=true" not in err
    # the same run without resume=true: resume=true is the advice, and following it works
    assert _train(out, "data.limit=4", "max_steps=3") == 2
    assert "pass resume=true to continue it" in capsys.readouterr().err
    assert _train(out, "data.limit=4", "max_steps=3", "resume=true") == 0
