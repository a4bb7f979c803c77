"""A size estimate before a run starts (issue 18, item 6): sampled tokens and a rough CPU time,
printed at start; a warning when it exceeds an hour."""

from __future__ import annotations

import logging

import pytest

from selfdistill.cli import main
from selfdistill.train import size_estimate
from selfdistill.train.config import load_config
from selfdistill.train.loop import Trainer


def test_the_benchmark_step_is_its_own_estimate():
    cfg = load_config("opsd", ["max_steps=1", "prompts_per_step=8", "max_new_tokens=128"])
    size = size_estimate.estimate(cfg, num_params=int(size_estimate.BENCH_PARAMS), device_type="cpu", threads=2)
    assert size.tokens == 8 * 128 and size.seconds == pytest.approx(size_estimate.BENCH_SECONDS)
    twice = size_estimate.estimate(load_config("purified-opsd", ["max_steps=2", "prompts_per_step=8",
                                                                 "max_new_tokens=128"]),
                                   num_params=int(size_estimate.BENCH_PARAMS), device_type="cpu", threads=4)
    assert twice.seconds == pytest.approx(size.seconds * 2 * 1.25 / 2)  # steps, method, threads
    assert size_estimate.estimate(cfg, num_params=1, device_type="cuda", threads=2).seconds is None


def test_recipe_defaults_on_a_cpu_warn_of_hours(caplog, capsys):
    cfg = load_config("opsd", ["model=smollm2-135m"])
    size = size_estimate.estimate(cfg, num_params=134_515_008, device_type="cpu", threads=2)
    with caplog.at_level(logging.WARNING, logger="selfdistill.train.size_estimate"):
        size_estimate.announce(size, cfg)
    line = capsys.readouterr().err
    assert (f"{cfg.schedule.max_steps} steps x 32 prompts x 1 rollouts x up to 1024 new tokens = up to "
            f"{cfg.schedule.max_steps * 32 * 1024:,} sampled tokens") in line
    assert "rough time on this CPU: ~" in line and " h " in line
    assert any("over an hour" in r.getMessage() and "schedule.max_steps" in r.getMessage() for r in caplog.records)


def test_train_prints_the_size_at_start(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "opsd", "model=tiny-random", "max_steps=1", "logging.progress=false",
                 "logging.tensorboard=false", f"output_dir={out}", "rewards.for_all=false"]) == 0
    err = capsys.readouterr().err
    assert "run size: 1 steps x 2 prompts x 1 rollouts x up to 16 new tokens = up to 32 sampled tokens" in err
    assert "rough time on this CPU" in err
    assert "first step took" not in err  # nothing left to project


def test_the_first_step_gives_the_measured_pace(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "opsd", "model=tiny-random", "max_steps=3", "logging.progress=false",
                 "logging.tensorboard=false", f"output_dir={out}", "rewards.for_all=false"]) == 0
    err = capsys.readouterr().err
    assert err.count("first step took") == 1 and "the remaining 2 steps take ~" in err


def test_a_slow_measured_pace_warns(caplog, capsys):
    with caplog.at_level(logging.WARNING, logger="selfdistill.train.size_estimate"):
        size_estimate.after_first_step(84.0, 199)
    assert "the remaining 199 steps take ~4.6 h at this pace" in capsys.readouterr().err
    assert any("over an hour" in r.getMessage() for r in caplog.records)


def test_a_long_run_warns_before_its_first_step(tmp_path, caplog, capsys):
    cfg = load_config("opsd", ["model=tiny-random", "max_steps=1000000000", "logging.progress=false",
                               "logging.tensorboard=false", f"output_dir={tmp_path / 'run'}",
                               "rewards.for_all=false"])
    with caplog.at_level(logging.WARNING, logger="selfdistill.train.size_estimate"):
        trainer = Trainer(cfg)  # built, not run: the warning comes before any step
    trainer.close()
    assert "up to 32,000,000,000 sampled tokens" in capsys.readouterr().err
    assert any("over an hour" in r.getMessage() for r in caplog.records)


def test_the_estimate_follows_the_runs_dtype():
    """float32 on a CPU (the AVX2 path) is priced from the float32 benchmark row, not the bf16 one."""
    cfg = load_config("opsd", ["max_steps=1", "prompts_per_step=8", "max_new_tokens=128"])
    args = dict(num_params=int(size_estimate.BENCH_PARAMS), device_type="cpu", threads=2)
    bf16 = size_estimate.estimate(cfg, dtype="bfloat16", **args).seconds
    fp32 = size_estimate.estimate(cfg, dtype="float32", **args).seconds
    assert bf16 == pytest.approx(size_estimate.BENCH_SECONDS_BY_DTYPE["bfloat16"])
    assert fp32 == pytest.approx(size_estimate.BENCH_SECONDS_BY_DTYPE["float32"]) and fp32 > 2 * bf16
