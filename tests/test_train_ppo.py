"""Several optimizer updates per rollout batch (PPO epochs, mini-batches), DAPO dynamic sampling
and overlong shaping, the k3 KL term, SDPO's importance weight and hybrid advantage, and
environment feedback in the reprompt, on the tiny random model with scripted rollouts."""

from __future__ import annotations

import math

import pytest
import torch

from selfdistill import methods, objectives as obj
from selfdistill.train import checkpoint, microbatch, rollouts
from selfdistill.train.config import ConfigError, load_config
from selfdistill.train.loop import Trainer
from selfdistill.train.rollouts import FixedRollouts, Rollouts
from selfdistill.types import Example

from test_train_loop import ANSWERS, BASE, _rows, _trainable, run, scripted

GRPO = ["method=grpo", "rollouts_per_prompt=3"]


def test_two_epochs_two_mini_batches_move_the_ratio_and_the_clip_binds(tmp_path):
    _, rows = run(tmp_path, GRPO + ["lr=0.05", "schedule.ppo_epochs=2", "schedule.mini_batches=2",
                                    "prompts_per_step=2", "max_steps=2"])
    for row in rows:
        assert row["ppo/updates"] == 4 and row["skipped"] == 0 and math.isfinite(row["loss"])
    # after the first update the ratio leaves 1 and, at this lr, the clip binds on some tokens
    assert max(r["clip_frac"] for r in rows) > 0


def test_one_update_per_step_keeps_clip_frac_zero_and_no_new_keys(tmp_path):
    _, rows = run(tmp_path, GRPO + ["lr=0.05", "max_steps=2"])
    assert all(r["clip_frac"] == 0 for r in rows)
    assert not any(k.startswith(("ppo/", "sampling/", "pg/kl", "distill/is")) for r in rows for k in r)


def test_first_update_of_several_equals_the_single_update(tmp_path, monkeypatch):
    """The sampling policy's log-probs (a separate no-grad pass) equal the student's own before the
    first update, so that update is the on-policy one: same loss, same gradient norm."""
    seen: dict[str, list] = {"one": [], "two": []}
    original = Trainer._update

    def spy(self, step, results):
        out = original(self, step, results)
        seen[self.cfg.output_dir.rsplit("/", 1)[-1]].append(out)
        return out

    monkeypatch.setattr(Trainer, "_update", spy)
    run(tmp_path, GRPO + ["max_steps=1"], name="one")
    run(tmp_path, GRPO + ["max_steps=1", "schedule.ppo_epochs=2"], name="two")
    assert len(seen["one"]) == 1 and len(seen["two"]) == 2
    assert seen["two"][0].loss == pytest.approx(seen["one"][0].loss, rel=1e-5, abs=1e-7)
    assert seen["two"][0].grad_norm == pytest.approx(seen["one"][0].grad_norm, rel=1e-4)


def test_resume_mid_run_with_several_updates_equals_uninterrupted(tmp_path):
    common = GRPO + ["schedule.ppo_epochs=2", "schedule.mini_batches=2", "checkpoint.every=1"]
    run(tmp_path, common + ["max_steps=3"], name="full")
    run(tmp_path, common + ["max_steps=2"], name="part")
    run(tmp_path, common + ["max_steps=3", "resume=true"], name="part")
    full, part = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r["loss"] for r in part] == [r["loss"] for r in full]
    wf, wp = _trainable(tmp_path / "full", 3), _trainable(tmp_path / "part", 3)
    assert all(torch.equal(wf[k], wp[k]) for k in wf)


def test_lr_schedule_advances_once_per_step_not_per_update(tmp_path):
    _, rows = run(tmp_path, GRPO + ["schedule.ppo_epochs=2", "schedule.mini_batches=2", "max_steps=3",
                                    "schedule.warmup_steps=3"])
    # linear warm-up over 3 steps: the lr of step k does not depend on the 4 updates per step
    _, ref = run(tmp_path, GRPO + ["max_steps=3", "schedule.warmup_steps=3"], name="ref")
    assert [r["lr"] for r in rows] == [r["lr"] for r in ref]


def test_mini_batches_must_divide_the_groups():
    with pytest.raises(ConfigError, match="schedule.mini_batches=3 must be >= 1 and divide"):
        load_config("smoke", BASE + GRPO + ["prompts_per_step=2", "schedule.mini_batches=3"])


# ------------------------------------------------------------------ dynamic sampling


def _flat_for_first(tokenizer, prompt_ids, j):
    """Every sample of the first problem (in ANSWERS order) is correct (a flat group); the others'
    groups are mixed as in ``scripted``."""
    prompt = tokenizer.decode(prompt_ids)
    first_problem = next(iter(ANSWERS))
    if first_problem in prompt:
        return tokenizer.encode(f"\\boxed{{{ANSWERS[first_problem]}}}", add_special_tokens=False) + [
            tokenizer.eos_token_id]
    return scripted(tokenizer, prompt_ids, j)


def test_dynamic_sampling_drops_flat_groups_and_refills(tmp_path):
    trainer, rows = run(tmp_path, GRPO + ["sampling.dynamic_sampling=true", "prompts_per_step=2", "max_steps=4"],
                        backend=_flat_for_first)
    # every step trains on prompts_per_step groups, none of them flat
    for row in rows:
        assert row["grpo/zero_signal_frac"] == 0
        assert row["sampling/kept_groups"] >= 2
        assert row["sampling/prompts_drawn"] == 2 * row["sampling/batches"]
    # 4 problems, one of them always flat: over 4 steps of 2 prompts it was drawn, so some step
    # needed a second batch
    assert max(r["sampling/batches"] for r in rows) >= 2


def test_dynamic_sampling_stops_at_the_cap_and_trains_the_first_batch(tmp_path):
    def right(tok, ids, j):  # every sample of every problem correct: every group flat
        answer = next(a for p, a in ANSWERS.items() if p in tok.decode(ids))
        return tok.encode(f"\\boxed{{{answer}}}", add_special_tokens=False) + [tok.eos_token_id]

    _, rows = run(tmp_path, GRPO + ["sampling.dynamic_sampling=true", "sampling.max_sampling_batches=3",
                                    "prompts_per_step=2", "max_steps=1"], backend=right)
    row = rows[0]
    assert row["sampling/batches"] == 3 and row["sampling/kept_groups"] == 0
    assert row["grpo/zero_signal_frac"] == 1.0 and math.isfinite(row["loss"])


def test_dynamic_sampling_refuses_several_processes():
    from selfdistill.train.loop import _check_updates

    cfg = load_config("smoke", BASE + GRPO + ["sampling.dynamic_sampling=true"])
    with pytest.raises(ConfigError, match="one process"):
        _check_updates(cfg, 2)


# ------------------------------------------------------------------ overlong shaping


class _Rewards:
    def __init__(self, values):
        self.values = values

    def score(self, texts, answers):
        return self.values


def test_overlong_shaping_enters_the_advantage_as_the_float64_formula():
    cfg = load_config("smoke", BASE + GRPO + ["sampling.max_new_tokens=10", "objective.overlong_buffer=4",
                                              "objective.overlong_penalty=0.5"])
    lengths = [3, 7, 10, 6, 8, 9]
    raw = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    ex = Example("a", "p", answer="1")
    ro = Rollouts([ex] * 6, [0, 0, 0, 1, 1, 1], [[5] * n for n in lengths], ["t"] * 6, [n == 10 for n in lengths])
    rollouts.reward(cfg, _Rewards(raw), ro)
    shaped = []
    for L, r in zip(lengths, raw):
        pen = 0.0 if L <= 6 else (6 - L) / 4 * 0.5  # L_max - L_cache = 6
        shaped.append(r + pen)
    want = []
    for g in range(2):
        grp = shaped[3 * g: 3 * g + 3]
        mean = sum(grp) / 3
        want += [x - mean for x in grp]
    assert ro.rewards == raw  # accuracy and siblings read the raw reward
    assert ro.advantages_B.tolist() == pytest.approx(want, abs=1e-6)
    assert ro.overlong_B.tolist() == pytest.approx([s - r for s, r in zip(shaped, raw)], abs=1e-15)


# ------------------------------------------------------------------ KL to the reference


def test_kl_term_is_zero_at_the_start_then_positive(tmp_path):
    _, a = run(tmp_path, GRPO + ["max_steps=2", "lr=0.01"], name="a")
    _, b = run(tmp_path, GRPO + ["max_steps=2", "lr=0.01", "objective.kl_coef=0.5"], name="b")
    assert "pg/kl_ref" not in a[0]
    # step 1: the policy is the reference: the k3 term and its gradient are 0
    assert b[0]["pg/kl_ref"] == pytest.approx(0, abs=1e-6)
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], abs=1e-6)
    assert b[1]["pg/kl_ref"] > 1e-6 and b[1]["loss"] != a[1]["loss"]


# ------------------------------------------------------------------ SDPO


def _sdpo_step_parts(tmp_path, extra=()):
    cfg = load_config("smoke", BASE + ["method=sdpo", "rollouts_per_prompt=3", f"output_dir={tmp_path}/s",
                                       "max_steps=1"] + list(extra))
    tr = Trainer(cfg, rollout_backend=FixedRollouts.factory(scripted))
    local = tr.stream.next_global(cfg.schedule.prompts_per_step)
    ro = rollouts.sample(cfg, tr.backend, tr.renderer, [tr.data.examples[i] for i in local], 0, step=1, rank=0)
    rollouts.reward(cfg, tr.rewarder, ro)
    _, minis = tr._plan(1, ro)
    plan = minis[0][0]
    target = microbatch.score(cfg, tr.passes, plan)
    return tr, cfg, plan, target


def test_sdpo_importance_weight_scales_the_distillation_loss(tmp_path):
    tr, cfg, plan, target = _sdpo_step_parts(tmp_path)
    from selfdistill.models import make_teacher

    now = microbatch.policy_logprobs(make_teacher(tr.model, "live"), plan, tr.passes.chunk_size)
    units = plan.loss_units
    kw = dict(diagnostics=False)
    base = microbatch.compute_loss(cfg, tr.passes, plan, target, units, **kw)
    # stale rollouts 3x less likely under the old policy: the weight 3 is clipped to is_clip = 2
    up = microbatch.compute_loss(cfg, tr.passes, plan, target, units, old_logp_B_T=now - math.log(3.0), **kw)
    down = microbatch.compute_loss(cfg, tr.passes, plan, target, units, old_logp_B_T=now + math.log(2.0), **kw)
    assert float(base.loss) > 0
    assert float(up.loss) == pytest.approx(2.0 * float(base.loss), rel=1e-4)
    assert float(down.loss) == pytest.approx(0.5 * float(base.loss), rel=1e-4)
    assert up.sums["is_weight"] / up.sums["is_weight_n"] == pytest.approx(2.0, rel=1e-5)
    tr.close()


def test_sdpo_is_clip_key_sets_the_clip(tmp_path):
    tr, cfg, plan, target = _sdpo_step_parts(tmp_path, ["objective.is_clip=1.5"])
    from selfdistill.models import make_teacher

    now = microbatch.policy_logprobs(make_teacher(tr.model, "live"), plan, tr.passes.chunk_size)
    base = microbatch.compute_loss(cfg, tr.passes, plan, target, plan.loss_units, diagnostics=False)
    up = microbatch.compute_loss(cfg, tr.passes, plan, target, plan.loss_units, diagnostics=False,
                                 old_logp_B_T=now - math.log(3.0))
    assert float(up.loss) == pytest.approx(1.5 * float(base.loss), rel=1e-4)
    tr.close()


def test_sdpo_two_epochs_logs_the_importance_weight(tmp_path):
    _, rows = run(tmp_path, ["method=sdpo", "rollouts_per_prompt=3", "lr=0.05", "schedule.ppo_epochs=2",
                             "max_steps=1"])
    w = rows[0]["distill/is_weight"]
    assert 0 < w <= 2.0 and w != 1.0  # the second epoch's ratio left 1


def test_hybrid_lambda_one_is_grpo_and_zero_is_pure_sdpo(tmp_path):
    _, grpo = run(tmp_path, GRPO + ["max_steps=1"], name="grpo")
    _, hyb1 = run(tmp_path, ["method=sdpo", "rollouts_per_prompt=3", "objective.hybrid_lambda=1", "max_steps=1"],
                  name="h1")
    _, sdpo = run(tmp_path, ["method=sdpo", "rollouts_per_prompt=3", "max_steps=1"], name="s")
    _, hyb0 = run(tmp_path, ["method=sdpo", "rollouts_per_prompt=3", "objective.hybrid_lambda=0", "max_steps=1"],
                  name="h0")
    # lambda = 1: the distillation term is weighted 0 and the PG term is GRPO's on every token
    assert hyb1[0]["loss"] == pytest.approx(grpo[0]["loss"], rel=1e-5, abs=1e-7)
    assert hyb1[0]["grad_norm"] == pytest.approx(grpo[0]["grad_norm"], rel=1e-4)
    assert hyb0[0]["loss"] == sdpo[0]["loss"]


def test_hybrid_lambda_mixes_the_two_gradients(tmp_path):
    """With lambda = 0.5 the loss is 0.5 x (SDPO's distillation over all response tokens) + 0.5 x GRPO."""
    tr, cfg, plan, target = _sdpo_step_parts(tmp_path, ["objective.hybrid_lambda=0.5"])
    assert plan.pg_mask_B_T is not None and plan.advantages_B is not None
    units = plan.loss_units  # all response tokens: every row takes the PG term
    mixed = microbatch.compute_loss(cfg, tr.passes, plan, target, units, diagnostics=False)
    cfg_d = load_config("smoke", BASE + ["method=sdpo", "rollouts_per_prompt=3"])
    pure_plan = microbatch.MicroBatch(plan.batches, plan.response_mask_B_T, plan.distill_mask_B_T, None,
                                      plan.unit_weights_B_T, None, plan.rows)
    distill = microbatch.compute_loss(cfg_d, tr.passes, pure_plan, target, units, diagnostics=False)
    cfg_g = load_config("smoke", BASE + GRPO)
    pg_plan = microbatch.MicroBatch(plan.batches, plan.response_mask_B_T, None, plan.pg_mask_B_T,
                                    plan.unit_weights_B_T, plan.advantages_B, plan.rows)
    pg = microbatch.compute_loss(cfg_g, tr.passes, pg_plan, None, units, diagnostics=False)
    assert float(mixed.loss) == pytest.approx(0.5 * float(distill.loss) + 0.5 * float(pg.loss), rel=1e-5, abs=1e-8)
    tr.close()


def test_hybrid_lambda_is_refused_for_other_methods():
    with pytest.raises(ConfigError, match="objective.hybrid_lambda=0.5 is not read by method opsd"):
        load_config("smoke", BASE + ["method=opsd", "objective.hybrid_lambda=0.5"])
    assert methods.takes_pg(methods.get("sdpo"), 0.5) and not methods.takes_pg(methods.get("sdpo"), 0.0)


# ------------------------------------------------------------------ feedback


def test_feedback_of_the_data_reaches_the_reprompt_without_a_sibling(tmp_path):
    tr, cfg, _, _ = _sdpo_step_parts(tmp_path)
    ex = Example("f1", "What is 2+2?", answer="4", feedback="Your answer 5 failed the check 2+2=4.")
    ids = tr.tokenizer.encode("I think 5", add_special_tokens=False)
    ro = Rollouts([ex, ex], [0, 0], [ids, ids], ["I think 5"] * 2, [True, True], rewards=[0.0, 0.0],
                  siblings=[None, None])
    mb = microbatch.plan(cfg, tr.renderer, ro, [0, 1])
    reprompt = mb.batches["reprompt"]
    assert reprompt.has_context_B.tolist() == [1, 1]  # feedback alone gives a teacher context
    text = tr.tokenizer.decode(reprompt.ids_B_L[0])
    assert "failed the check 2+2=4" in text
    no_fb = Example("f2", "What is 2+2?", answer="4")
    ro2 = Rollouts([no_fb], [0], [ids], ["I think 5"], [True], rewards=[0.0], siblings=[None])
    assert microbatch.plan(cfg, tr.renderer, ro2, [0]).batches["reprompt"].has_context_B.tolist() == [0]
    tr.close()


def test_feedback_column_loads_into_the_example():
    from selfdistill.data.validate import check_rows
    from selfdistill.data.rows import RawRow

    rows = [RawRow(1, {"problem": "2+2?", "answer": "4", "feedback": "wrong: 5"}),
            RawRow(2, {"problem": "3+3?", "answer": "6"})]
    out = check_rows(rows)
    assert not out.errors
    assert [e.feedback for e in out.examples] == ["wrong: 5", None]


def test_sdpo_pg_only_keys_need_the_hybrid_term():
    for key in ("objective.kl_coef=0.1", "objective.overlong_buffer=4"):
        with pytest.raises(ConfigError, match="hybrid_lambda > 0"):
            load_config("smoke", BASE + ["method=sdpo", "rollouts_per_prompt=3", key])
        load_config("smoke", BASE + ["method=sdpo", "rollouts_per_prompt=3", key, "objective.hybrid_lambda=0.3"])
