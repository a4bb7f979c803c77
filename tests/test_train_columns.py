"""Column mapping where a TRL user meets it (issue 18, item 1): ``data.columns`` in train configs,
chat-list completions as the reference, an unread answer column named in a warning, and hints
written in the syntax of the command that failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfdistill.cli import main
from selfdistill.train.config import ConfigError, load_config

TRL = Path(__file__).parent / "fixtures" / "data" / "trl_user"
CHAT = TRL / "chat_completion.jsonl"  # prompt and completion as chat lists, the answer under "gold"
NOTES = TRL / "notes_reference.jsonl"  # the reference under an unrecognised name, "teacher_notes"
TRAIN = ["train", "opsd", "model=tiny-random", "max_steps=1", "logging.progress=false",
         "logging.tensorboard=false", "max_new_tokens=8"]


def _cli(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``selfdistill ARGV`` in a subprocess (what a user sees on stderr, logging included)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "selfdistill", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("text", ["solution=completion,answer=gold", "{solution: completion, answer: gold}"])
def test_data_columns_is_a_train_key_in_both_forms(text):
    cfg = load_config("opsd", [f"data.columns={text}"])
    assert cfg.data.columns == {"solution": "completion", "answer": "gold"}
    assert load_config("opsd", [f"columns={text}"]).data.columns == cfg.data.columns  # the short name


def test_data_columns_names_a_bad_field_before_anything_loads():
    with pytest.raises(ConfigError, match=r"unknown field 'gold'.*data\.columns=problem=question"):
        load_config("opsd", ["data.columns=gold=answer"])


def test_chat_list_completion_is_the_reference(capsys):
    assert main(["data", "show", str(CHAT), "--jsonl", "--limit", "1", "--method", "opsd"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["problem"] == "Sam has 3 apples and buys 4 more. How many apples does he have?"
    assert row["solution"] == "3 + 4 = 7 apples. The answer is \\boxed{7}."  # the assistant's content


def test_explicit_chat_list_solution_column_is_accepted(tmp_path, capsys):
    path = tmp_path / "renamed.jsonl"
    rows = [json.loads(line) for line in CHAT.read_text().splitlines()]
    path.write_text("".join(json.dumps({"q": r["prompt"], "target": r["completion"], "gold": r["gold"]}) + "\n"
                            for r in rows))
    code = main(["data", "check", str(path), "--method", "opsd", "--columns", "problem=q,solution=target,answer=gold"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "solutions present: 6/6" in out and "answers present: 6/6" in out


def test_data_check_warns_of_an_unread_answer_column_with_its_flag(capsys):
    assert main(["data", "check", str(CHAT), "--method", "opsd"]) == 0
    out = capsys.readouterr().out
    assert "answers present: 0/6" in out
    assert "warning: column 'gold' looks like the answer" in out and "--columns answer=gold" in out


def test_missing_reference_hint_uses_the_syntax_of_each_command(tmp_path, capsys):
    assert main(["data", "check", str(NOTES), "--method", "opsd"]) == 1
    out = capsys.readouterr().out
    assert "--columns solution=NAME" in out and "data.columns" not in out
    code = main(TRAIN + [f"data={NOTES}", f"output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "data.columns=solution=NAME" in err and "--columns" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the model loads


def test_train_warns_of_gold_then_reads_it_when_mapped(tmp_path):
    plain = _cli(TRAIN + [f"data={CHAT}", f"output_dir={tmp_path / 'plain'}"], tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "column 'gold' looks like the answer" in plain.stderr
    assert "data.columns=answer=gold" in plain.stderr
    assert _rows(tmp_path / "plain")[0]["accuracy"] is None  # nothing to score against

    mapped = _cli(TRAIN + [f"data={CHAT}", "data.columns=answer=gold", f"output_dir={tmp_path / 'mapped'}"],
                  tmp_path)
    assert mapped.returncode == 0, mapped.stderr
    assert "looks like the answer" not in mapped.stderr
    row = _rows(tmp_path / "mapped")[0]
    assert row["accuracy"] is not None and 0.0 <= row["accuracy"] <= 1.0


def test_analyze_maps_columns_like_data_check(tmp_path, capsys):
    rows = [json.loads(line) for line in CHAT.read_text().splitlines()]
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps({"q": r["prompt"], "target": r["completion"], "gold": r["gold"]}) + "\n"
                            for r in rows))
    args = ["analyze", "richness", "--model", "tiny-random", "--data", str(path), "--limit", "1", "--k", "1",
            "--settings", "unguided", "--max-new-tokens", "4", "--dtype", "float32", "--output-dir", str(tmp_path / "o")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "map one with --columns solution=NAME" in err and "Traceback" not in err
    assert main(args + ["--columns", "problem=q,solution=target,answer=gold"]) == 0
    assert (tmp_path / "o" / "richness.md").exists()
