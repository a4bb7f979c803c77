"""Hostile model output and non-finite losses at the trainer level.

- Rollouts built to stall math-verify (exponent towers, deep nesting) are scored inside the
  reward time bound during a real training step: the step finishes, the rewards are 0.
- A step whose loss is NaN is skipped (no weight change) and logged; repeated non-finite steps
  stop `selfdistill train` with exit 3 and a message, leaving a checkpoint that resumes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from reliability.guards import run_cli

from selfdistill.train import checkpoint, loop
from selfdistill.train import microbatch as step_mod
from selfdistill.train.config import load_config
from selfdistill.train.rollouts import FixedRollouts

FAST = ["max_new_tokens=4", "data.limit=4", "checkpoint.every=1", "keep_last=5",
        "logging.progress=false", "logging.tensorboard=false", "rewards.for_all=false"]
TIMEOUT_S = 1.0
SLACK_S = 4.0  # per scored sample: worker replacement after a kill, on a loaded 2-core machine
HOSTILE = [
    "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    "\\boxed{9^9^9^9^9^9^9}",
    "\\boxed{" + "(" * 60 + "1" + ")" * 60 + "}",
    "\\boxed{" + "{" * 60 + "1" + "}" * 60 + "}",
]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_hostile_rollouts_are_scored_within_the_bound_in_a_training_step(tmp_path):
    def hostile(tokenizer, prompt_ids, j):
        text = HOSTILE[(len(prompt_ids) + j) % len(HOSTILE)]
        return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]

    out = tmp_path / "run"
    cfg = load_config("smoke", ["method=grpo", "rollouts_per_prompt=2", "max_steps=1", "max_new_tokens=200",
                                f"rewards.timeout_s={TIMEOUT_S}", f"output_dir={out}",
                                "logging.progress=false", "logging.tensorboard=false"])
    trainer = loop.Trainer(cfg, rollout_backend=FixedRollouts.factory(hostile))
    verdicts = []
    real_detailed = trainer.rewarder.score_detailed

    def spy(texts, golds):
        verdicts.extend(real_detailed(texts, golds))
        return verdicts[-len(texts):]

    trainer.rewarder.score_detailed = spy
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    (row,) = _rows(out)
    n = cfg.schedule.prompts_per_step * cfg.sampling.rollouts_per_prompt
    assert len(verdicts) == n and row["reward/mean"] == 0.0 and row["skipped"] == 0
    assert any(v.status == "timeout" for v in verdicts), verdicts  # they did stall math-verify
    assert all(v.seconds < TIMEOUT_S + 0.5 for v in verdicts), verdicts  # each one's own clock
    bound = n * (TIMEOUT_S + SLACK_S)
    assert row["time/score_s"] < bound, (row["time/score_s"], bound)
    print(f"\nhostile step: verdicts {[(v.status, round(v.seconds, 2)) for v in verdicts]}, "
          f"score {row['time/score_s']:.2f}s for {n} samples (bound {bound:.0f}s), "
          f"step {row['time/step_s']:.2f}s, fit {wall:.2f}s")


def test_nonfinite_steps_are_skipped_then_stop_with_a_resumable_checkpoint(tmp_path, capsys, monkeypatch, caplog):
    real_loss, real_step = step_mod.compute_loss, loop.Trainer.train_step
    now, bad = {"step": 0}, {2, 3}

    def train_step(self, step):
        now["step"] = step
        return real_step(self, step)

    def compute_loss(*args, **kwargs):
        res = real_loss(*args, **kwargs)
        if now["step"] in bad:
            res.loss = res.loss * float("nan")
        return res

    monkeypatch.setattr(loop.Trainer, "train_step", train_step)
    monkeypatch.setattr(step_mod, "compute_loss", compute_loss)
    out = tmp_path / "run"
    argv = ["train", "smoke", "method=opsd", "max_steps=4", "schedule.max_nonfinite_steps=2",
            f"output_dir={out}", *FAST]
    with caplog.at_level(logging.WARNING, logger="selfdistill.train.loop"):
        code, _, err = run_cli(argv, capsys)
    assert code == 3, err
    assert "Traceback" not in err
    assert "2 steps in a row (up to step 3)" in err and "resume=true" in err
    assert "step 2: non-finite loss" in caplog.text and "step skipped" in caplog.text
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["skipped"] for r in rows] == [0, 1, 1]
    ckpts = out / "checkpoints"
    assert checkpoint.latest(ckpts) == checkpoint.step_dir(ckpts, 3)
    w = {s: checkpoint.load(checkpoint.step_dir(ckpts, s))[0]["trainable"] for s in (1, 3)}
    assert all(torch.equal(w[1][k], w[3][k]) for k in w[1])  # the skipped steps changed nothing

    bad.clear()  # the cause is fixed: resume from the last checkpoint
    code, _, err = run_cli(argv + ["resume=true"], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["skipped"] for r in rows] == [0, 1, 1, 0]
    assert all(math.isfinite(r["loss"]) for r in rows if not r["skipped"])
    w4 = checkpoint.load(checkpoint.step_dir(ckpts, 4))[0]["trainable"]
    assert all(torch.isfinite(v).all() for v in w4.values())
    assert any(not torch.equal(w4[k], w[3][k]) for k in w4)  # training went on after the resume
