"""The training config's eval section: eval/* rows at every eval.every-th step and at the last,
equal to the metrics recomputed from the eval/step-NNNNNN.jsonl files; refused without eval.data."""

from __future__ import annotations

import json

import pytest

from selfdistill.eval.metrics import summarize_samples
from selfdistill.train.config import ConfigError, load_config
from selfdistill.train.loop import Trainer
from selfdistill.train.rollouts import FixedRollouts

BASE = ["model=tiny-random", "data.limit=4", "logging.tensorboard=false", "logging.progress=false",
        "lr=1e-3", "max_new_tokens=8", "rewards.for_all=false", "method=opsd",
        "checkpoint.every=10", "model.dtype=float32"]
EVAL = ["eval.every=2", "eval.data=gsm8k-100", "eval.limit=3", "eval.k=2", "eval.max_new_tokens=6",
        "rewards.answer_format=boxed_or_last_number"]


def _respond(tokenizer, prompt_ids, j):
    return tokenizer.encode("It is 18", add_special_tokens=False) + [tokenizer.eos_token_id]


def _run(out, overrides, backend=_respond):
    cfg = load_config("smoke", BASE + [f"output_dir={out}", *overrides])
    trainer = Trainer(cfg, rollout_backend=FixedRollouts.factory(backend) if backend else None)
    trainer.fit()
    return trainer, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_eval_rows_at_every_and_last_step_match_the_sample_files(tmp_path):
    out = tmp_path / "run"
    trainer, rows = _run(out, ["max_steps=3", *EVAL])
    with_eval = [r["step"] for r in rows if any(k.startswith("eval/") for k in r)]
    assert with_eval == [2, 3]
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["step-000002.jsonl", "step-000003.jsonl"]
    for row in rows[1:]:
        samples = [json.loads(line) for line in
                   (out / "eval" / f"step-{row['step']:06d}.jsonl").read_text().splitlines()]
        assert len(samples) == 3 * 2 and {s["step"] for s in samples} == {row["step"]}
        assert all(s["num_tokens"] <= 6 for s in samples)
        s = summarize_samples(samples, [1, 2])["gsm8k-100"]
        assert row["eval/avg@2"] == pytest.approx(s["avg@2"])
        assert row["eval/pass@1"] == pytest.approx(s["pass@1"]) and row["eval/pass@2"] == pytest.approx(s["pass@2"])
        assert row["eval/maj@2"] == pytest.approx(s["maj@2"])
        assert row["eval/mean_tokens"] == pytest.approx(s["mean_tokens"])
        assert row["eval/truncated_frac"] == pytest.approx(s["truncation_rate"])
        assert row["eval/markers_per_1k"] == pytest.approx(s["markers_word_per_1k"])
        assert row["eval/problems"] == 3 and row["eval/time_s"] > 0
    assert trainer.periodic_eval.scorer is None  # closed after the last evaluation


def test_evaluation_does_not_change_training(tmp_path):
    """Sampling for the evaluation forks the RNG and restores the model: with real seeded
    rollouts, the same losses and gradient norms as a run without it."""
    _, plain = _run(tmp_path / "plain", ["max_steps=3"], backend=None)
    _, evald = _run(tmp_path / "evald", ["max_steps=3", "eval.every=1", "eval.data=gsm8k-100",
                                         "eval.limit=2", "eval.k=1", "eval.max_new_tokens=4"], backend=None)
    assert sum(any(k.startswith("eval/") for k in r) for r in evald) == 3
    assert [r["loss"] for r in plain] == [r["loss"] for r in evald]
    assert [r["grad_norm"] for r in plain] == [r["grad_norm"] for r in evald]


def test_eval_every_needs_eval_data(tmp_path):
    with pytest.raises(ConfigError, match=r"eval\.data"):
        load_config("smoke", BASE + [f"output_dir={tmp_path}", "eval.every=2"])
