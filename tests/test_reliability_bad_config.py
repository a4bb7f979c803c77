"""Bad configuration through `selfdistill train`: rejected before any model loads, exit 2, a
message naming the key and listing the valid choices, no traceback and no output_dir created."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.guards import forbid_model_loading, run_cli

NO_SOLUTIONS = Path(__file__).parent / "reliability" / "no_solutions.jsonl"
METHODS = "opsd, purified-opsd, sdpo, grpo, srpo"

# overrides, phrases the message must contain
CASES = [
    (["max_stepz=3"], ["unknown config key 'max_stepz'", "did you mean", "max_steps", "--list-keys"]),
    (["optimizer.learning_rate=1e-5"], ["unknown config key 'optimizer.learning_rate'", "--list-keys"]),
    (["nosection.lr=1"], ["unknown config key 'nosection.lr'"]),
    (["temperature=0.5"], ["ambiguous", "sampling.temperature", "objective.temperature"]),
    (["max_steps"], ["must look like key=value"]),
    (["max_steps=abc"], ["schedule.max_steps must be of type int, got 'abc'"]),
    (["max_steps=2.5"], ["schedule.max_steps must be of type int, got 2.5"]),
    (["lr=fast"], ["optimizer.lr must be of type float"]),
    (["resume=maybe"], ["resume must be of type bool"]),
    (["lora.target_modules={a: 1}"], ["lora.target_modules must be of type list"]),
    (["model={a: 1}"], ["unknown config key 'model.a'"]),
    (["method=sdpo", "rollouts_per_prompt=1"], ["method sdpo compares rollouts within a group",
                                                 "sampling.rollouts_per_prompt >= 2"]),
    (["method=grpo", "rollouts_per_prompt=1"], ["method grpo", "rollouts_per_prompt >= 2"]),
    (["method=purified-opsd", "method.teacher=ema"], ["method.teacher must be fixed"]),
    (["method=dpo"], [f"method.name='dpo' is not valid; choose one of {METHODS}"]),
    (["method.teacher=frozen"], ["method.teacher='frozen' is not valid; choose one of fixed, ema, live, trust_region"]),
    (["objective.support=topk"], ["choose one of full, teacher_topk, student_topk"]),
    (["model.dtype=fp8"], ["choose one of auto, float32, bfloat16, float16"]),
    (["device=gpu"], ["device='gpu' is not valid; choose one of auto, cpu"]),
    (["eval.every=5"], ["eval.every > 0 needs eval.data"]),
    (["data.on_bad_rows=ignore"], ["choose one of error, skip"]),
    (["schedule.decay=linear"], ["choose one of constant, cosine"]),
    (["objective.beta=1.5"], ["objective.beta must be in [0, 1], got 1.5"]),
    (["sampling.top_p=0"], ["sampling.top_p must be in (0, 1]"]),
    (["max_steps=0"], ["schedule.max_steps must be >= 1"]),
    (["checkpoint.keep_last=0"], ["checkpoint.keep_last must be >= 1"]),
    (["contexts={transitio: mild}"], ["contexts.transitio is not a ContextConfig option; did you mean transition? valid:"]),
    (["contexts={transition: foo}"], ["contexts.transition='foo' is not valid; choose one of hardened, mild, hardened-v0"]),
    (["method.antisd=true"], ["method.antisd modifies the GRPO advantage"]),
    # needs the data, still before the model
    ([f"data={NO_SOLUTIONS}", "method=purified-opsd"], ["solution", "no_solutions.jsonl"]),
    ([f"data={NO_SOLUTIONS}", "method=opsd"], ["solution", "no_solutions.jsonl"]),
]


def _argv(overrides: list[str], out: Path) -> list[str]:
    return ["train", "smoke", f"output_dir={out}", "logging.progress=false",
            "logging.tensorboard=false", *overrides]


@pytest.mark.parametrize("overrides,phrases", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_bad_config_is_rejected_before_the_model_loads(overrides, phrases, tmp_path, capsys, monkeypatch):
    calls = forbid_model_loading(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(_argv(overrides, out), capsys)
    assert code != 0 and calls == []
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, f"{phrase!r} not in:\n{err}"
    assert not out.exists()


def test_bad_recipe_file(tmp_path, capsys, monkeypatch):
    calls = forbid_model_loading(monkeypatch)
    recipe = tmp_path / "r.yaml"
    for text, phrase in [("- a\n- b\n", "must be a YAML mapping"),
                         ("optimizer: {lr: 1e-5, momentum: 0.9}\n", "unknown config key 'optimizer.momentum'"),
                         ("schedule: 3\n", "section 'schedule' needs a mapping")]:
        recipe.write_text(text)
        code, _, err = run_cli(["train", str(recipe), f"output_dir={tmp_path / 'run'}"], capsys)
        assert code == 2 and phrase in err, err
    code, _, err = run_cli(["train", "no-such-recipe"], capsys)
    assert code == 2 and "unknown recipe 'no-such-recipe'" in err and "smoke" in err
    assert calls == []


def test_topk_larger_than_the_vocabulary_stops_before_training(tmp_path, capsys, monkeypatch):
    """The vocabulary size is only known once the model's config is read: the check runs right
    after loading and before any rollout, and no output is written."""
    out = tmp_path / "run"
    code, _, err = run_cli(_argv(["objective.support=teacher_topk", "objective.topk=10000000"], out), capsys)
    assert code == 2, err
    assert "objective.topk=10000000 is larger than the vocabulary" in err
    assert "objective.support=full" in err
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def test_topk_larger_than_the_vocabulary_is_rejected_before_the_model_loads(tmp_path, capsys, monkeypatch):
    forbid_model_loading(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(_argv(["objective.support=teacher_topk", "objective.topk=10000000"], out), capsys)
    assert code == 2 and "larger than the vocabulary" in err
