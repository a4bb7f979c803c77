"""Training-time diagnostics controls (issue 9): logged every N steps, checked against the
analysis-layer computation on the same rollouts."""

import json

import pytest

from selfdistill.train.config import ConfigError, load_config
from selfdistill.train.loop import train

FAST = ["model=tiny-random", "data=gsm8k-100", "schedule.prompts_per_step=3",
        "schedule.micro_batch_size=3", "sampling.max_new_tokens=6", "logging.tensorboard=false",
        "logging.progress=false", "checkpoint.every=100"]


def test_controls_logged_every_n_steps(tmp_path):
    cfg = load_config("purified-opsd", [*FAST, "max_steps=2", "diagnostics.controls_every=2",
                                         f"output_dir={tmp_path}"])
    train(cfg)
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "pmi_ctrl/wrong_norm_ratio_ref_total" not in rows[0]
    last = rows[1]
    for key in ("wrong_norm_ratio_ref_total", "wrong_kl_ratio_ref", "content_effect_kl_ratio_ref",
                "cos_blank_shift_ref", "cos_ref_over_blank_ref"):
        value = last[f"pmi_ctrl/{key}"]
        assert value == value  # finite number, not NaN
    # the matched means the controls subtract from are the step's own diagnostics
    matched = last["pmi_ctrl/wrong_kl_ratio_ref"] + last["pmi_ctrl/content_effect_kl_ratio_ref"]
    assert matched == pytest.approx(last["pmi/kl_ratio_ref"], rel=0.05, abs=1e-3)


def test_controls_need_the_diagnostics():
    with pytest.raises(ConfigError, match="controls_every needs the diagnostics"):
        load_config("opsd", [*FAST, "diagnostics.controls_every=5"])
