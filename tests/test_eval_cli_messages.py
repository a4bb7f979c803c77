"""`selfdistill eval` says what it measured and fails fast (issue 18, item 3): --answer-format,
the no-answer warning, defaults in --help, one number format, benchmark names checked before the
model loads, a missing model path named as such, HF_HUB_OFFLINE in hub failures, recipe names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfdistill.cli import main
from selfdistill.train.rollouts import FixedRollouts

PROBLEMS = {"What is 2 + 3?": "5", "What is 4 + 4?": "8", "What is 9 - 2?": "7", "What is 3 * 3?": "9"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps({"problem": q, "answer": a}) + "\n" for q, a in PROBLEMS.items()))
    return path


def _unboxed(tokenizer, prompt_ids, j):
    """A model that answers right but never boxes: 'the result is 5.'"""
    prompt = tokenizer.decode(prompt_ids)
    answer = next(a for q, a in PROBLEMS.items() if q in prompt)
    return tokenizer.encode(f"I add them up and the result is {answer}.", add_special_tokens=False) + [
        tokenizer.eos_token_id]


@pytest.fixture
def unboxed_model(monkeypatch):
    import selfdistill.eval.runner as runner

    monkeypatch.setattr(runner, "HFGenerate", FixedRollouts.factory(_unboxed))


def _eval(data: Path, out: Path, *extra: str) -> int:
    return main(["eval", "--model", "tiny-random", "--benchmarks", str(data), "--k", "2", "--pass-k", "1,2",
                 "--dtype", "float32", "--output-dir", str(out), "--no-progress", *extra])


def test_unboxed_answers_warn_and_answer_format_reads_them(data, tmp_path, unboxed_model, capsys):
    assert _eval(data, tmp_path / "boxed") == 0
    captured = capsys.readouterr()
    assert "100% of the samples gave no answer under --answer-format boxed" in captured.err
    assert "--answer-format boxed_or_last_number" in captured.err
    boxed = json.loads((tmp_path / "boxed" / "summary.json").read_text())["sums"]
    assert boxed["avg@2"] == 0.0 and boxed["no_answer_rate"] == 1.0 and boxed["answer_format"] == "boxed"

    assert _eval(data, tmp_path / "last", "--answer-format", "boxed_or_last_number") == 0
    captured = capsys.readouterr()
    assert "gave no answer" not in captured.err
    summary = json.loads((tmp_path / "last" / "summary.json").read_text())["sums"]
    assert summary["avg@2"] == 1.0 and summary["no_answer_rate"] == 0.0
    assert summary["answer_format"] == "boxed_or_last_number"
    rows = [json.loads(line) for line in (tmp_path / "last" / "samples.jsonl").read_text().splitlines()]
    assert {r["pred"] for r in rows} == set(PROBLEMS.values())
    assert "answer_format `boxed_or_last_number`" in (tmp_path / "last" / "summary.md").read_text()


def test_rates_share_one_number_format(data, tmp_path, unboxed_model, capsys):
    assert _eval(data, tmp_path / "out") == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| sums"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = next(line for line in table.splitlines() if line.startswith("| benchmark"))
    named = dict(zip([c.strip() for c in header.strip("|").split("|")], cells))
    assert named["avg@k"] == "0.000" and named["maj@k"] == "0.000"
    assert named["pass@k"] == "@1 0.000, @2 0.000"


def test_help_shows_defaults():
    from selfdistill.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["eval"]
    text = sub.format_help().split("options:", 1)[1]
    for option, default in [("--temperature", "0.6"), ("--top-p", "0.95"), ("--top-k", "20"), ("--k", "4"),
                            ("--max-new-tokens", "1024"), ("--answer-format", "boxed")]:
        block = text.split(f"\n  {option} ", 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default})" in " ".join(block.split()), option


def test_unknown_benchmark_fails_before_the_model_with_did_you_mean(tmp_path, monkeypatch, capsys):
    import selfdistill.cli.evaluate as evaluate

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load for a bad benchmark name")

    monkeypatch.setattr(evaluate, "load_any_model", no_model)
    assert main(["eval", "--model", "tiny-random", "--benchmarks", "gsm8k100",
                 "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'gsm8k100': did you mean gsm8k-100" in err
    assert not (tmp_path / "out").exists()  # no empty samples.jsonl left behind
    assert main(["eval", "--model", "tiny-random", "--benchmarks", str(tmp_path / "missing.jsonl"),
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_local_model_path_is_reported_as_a_missing_path(tmp_path, data, capsys):
    missing = tmp_path / "models" / "my-model"
    assert main(["eval", "--model", str(missing), "--benchmarks", str(data), "--output-dir",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no model at {missing}: the path does not exist" in err
    assert "huggingface-cli" not in err and "hub is unreachable" not in err


def test_hub_model_fails_fast_and_names_hf_hub_offline(tmp_path, data):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "selfdistill", "eval", "--model", "nobody/no-such-model-xyz",
                           "--benchmarks", str(data), "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and time.monotonic() - start < 60
    assert "HF_HUB_OFFLINE=1 is set" in done.stderr and "Traceback" not in done.stderr


def test_recipe_name_typo_gets_did_you_mean(capsys):
    assert main(["train", "purified_opsd", "--print-config"]) == 2
    assert "did you mean purified-opsd?" in capsys.readouterr().err


def test_eval_columns_maps_a_benchmark_file(tmp_path, unboxed_model, capsys):
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps({"q": q, "gold": a}) + "\n" for q, a in PROBLEMS.items()))
    out = tmp_path / "out"
    args = ["eval", "--model", "tiny-random", "--benchmarks", str(path), "--k", "1", "--dtype", "float32",
            "--output-dir", str(out), "--no-progress", "--answer-format", "boxed_or_last_number"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "map one with --columns problem=NAME" in err and not out.exists()  # refused before the model
    assert main(args + ["--columns", "problem=q,answer=gold"]) == 0
    assert json.loads((out / "summary.json").read_text())["renamed"]["avg@1"] == 1.0


def test_missing_local_data_path_is_not_taken_for_a_hub_id(tmp_path, capsys):
    missing = tmp_path / "data" / "problems"  # no extension: used to be tried on the hub
    assert main(["data", "check", str(missing)]) == 1
    out = capsys.readouterr().out
    assert "no such file" in out and "hub" not in out
    assert main(["eval", "--model", "tiny-random", "--benchmarks", str(missing), "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_data_typo_gets_did_you_mean_before_the_model(tmp_path, capsys):
    assert main(["train", "opsd", "model=tiny-random", "data=gsm8k100", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "no data set 'gsm8k100': did you mean gsm8k-100?" in err
    assert not (tmp_path / "run").exists()
