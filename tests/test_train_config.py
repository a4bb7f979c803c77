"""Config validation, recipes, checkpoints, metrics file and prompt stream (no model loaded)."""

from __future__ import annotations

import json

import pytest
import torch

from selfdistill.train import checkpoint
from selfdistill.train.batches import PromptStream, shard
from selfdistill.train.config import (
    ConfigError,
    TINY_SIZES,
    all_keys,
    load_config,
    recipe_names,
)
from selfdistill.train.checks import validate_examples, validate_vocab
from selfdistill.train.metrics import MetricsLogger, quantiles
from selfdistill.train.optim import lr_factor
from selfdistill.types import Example


def _err(recipe, overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(recipe, overrides)
    return str(info.value)


def test_bundled_recipes_all_load_with_published_settings():
    assert set(recipe_names()) >= {"opsd", "opsd-v1", "purified-opsd", "sdpo", "grpo", "srpo", "smoke"}
    opsd = load_config("opsd")
    assert (opsd.objective.beta, opsd.objective.token_clip, opsd.optimizer.lr) == (0.0, 0.05, 5e-6)
    assert (opsd.optimizer.max_grad_norm, opsd.schedule.prompts_per_step) == (0.1, 32)
    assert (opsd.sampling.max_new_tokens, opsd.sampling.temperature, opsd.sampling.top_k) == (1024, 1.1, 20)
    assert (opsd.lora.r, opsd.lora.alpha, len(opsd.lora.target_modules)) == (64, 128, 7)
    v1 = load_config("opsd-v1")
    assert (v1.objective.beta, v1.sampling.temperature, v1.sampling.max_new_tokens, v1.optimizer.lr) == (0.5, 1.2, 2048, 1e-5)
    pur = load_config("purified-opsd")
    assert (pur.objective.purified_beta, pur.objective.purified_clip, pur.method.anchor) == (1.0, 10.0, "base")
    sdpo = load_config("sdpo")
    assert (sdpo.sampling.rollouts_per_prompt, sdpo.objective.support, sdpo.objective.topk) == (8, "student_topk", 100)
    grpo = load_config("grpo")
    assert (grpo.objective.eps_low, grpo.objective.eps_high) == (0.2, 0.28)
    assert load_config("srpo").method.entropy_beta == 1.0


def test_overrides_shorthands_and_coercion():
    cfg = load_config("opsd", ["model=some/model", "max_steps=7", "lr=2e-5", "lora.enabled=false",
                               "data.limit=null", "lora.target_modules=q_proj,v_proj", "method=sdpo",
                               "rollouts_per_prompt=4"])
    assert cfg.model.name == "some/model" and cfg.schedule.max_steps == 7
    assert cfg.optimizer.lr == 2e-5 and isinstance(cfg.optimizer.lr, float)
    assert cfg.lora.enabled is False and cfg.data.limit is None
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.method.name == "sdpo"


@pytest.mark.parametrize("override, needle", [
    (["max_step=3"], "unknown config key 'max_step'; did you mean schedule.max_steps"),
    (["temperature=1"], "ambiguous: write one of sampling.temperature, objective.temperature"),
    (["method=dpo"], "choose one of opsd, purified-opsd, sdpo, grpo, srpo"),
    (["objective.support=topk"], "choose one of full, teacher_topk, student_topk"),
    (["lr=fast"], "optimizer.lr must be of type float"),
    (["max_steps=2.5"], "schedule.max_steps must be of type int"),
    (["lora.enabled=maybe"], "lora.enabled must be of type bool"),
    (["method=grpo", "rollouts_per_prompt=1"], "rollouts_per_prompt >= 2"),
    (["method=purified-opsd", "method.teacher=ema"], "method.teacher must be fixed"),
    (["objective.beta=1.5"], "objective.beta must be in [0, 1]"),
    (["nokey"], "must look like key=value"),
    (["contexts={bogus: 1}"], "contexts.bogus is not a ContextConfig option"),
])
def test_bad_configs_are_rejected_with_the_fix(override, needle):
    assert needle in _err("opsd", override)


def test_unknown_recipe_lists_the_bundled_ones(tmp_path):
    assert "grpo" in _err("nope", [])
    bad = tmp_path / "r.yaml"
    bad.write_text("optimizer: {lrr: 1}\n")
    assert "unknown config key 'optimizer.lrr'" in _err(str(bad), [])


def test_tiny_random_uses_smoke_sizes_unless_set_explicitly():
    cfg = load_config("purified-opsd", ["model=tiny-random", "max_new_tokens=8"])
    assert cfg.schedule.prompts_per_step == TINY_SIZES["schedule.prompts_per_step"]
    assert cfg.sampling.max_new_tokens == 8
    full = load_config("purified-opsd", ["model=tiny-random", "tiny_sizes=false"])
    assert full.schedule.prompts_per_step == 32 and full.sampling.max_new_tokens == 1024


def test_data_and_vocab_checks():
    cfg = load_config("opsd", [])
    rows = [Example("a", "1+1?", "2", "2", "f.jsonl line 1"), Example("b", "2+2?", None, "4", "f.jsonl line 2")]
    with pytest.raises(ConfigError, match="reference solution.*f.jsonl line 2"):
        validate_examples(cfg, rows)
    grpo = load_config("grpo", [])
    with pytest.raises(ConfigError, match="gold answer"):
        validate_examples(grpo, [Example("c", "q", "s", None, "row 3")])
    sdpo = load_config("sdpo", [])
    with pytest.raises(ConfigError, match="objective.topk=100 is larger than the vocabulary \\(50\\)"):
        validate_vocab(sdpo, 50)
    validate_vocab(sdpo, 1000)


def test_cli_print_config_and_errors(capsys):
    from selfdistill.cli import main

    assert main(["train", "smoke", "max_steps=9", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 9" in out and "name: tiny-random" in out
    assert main(["train", "smoke", "bogus=1"]) == 2
    assert "unknown config key 'bogus'" in capsys.readouterr().err
    assert main(["train", "--list-recipes"]) == 0
    assert "purified-opsd" in capsys.readouterr().out


# --------------------------------------------------------------------------- checkpoints


def _save(root, step, value):
    return checkpoint.save(root, step, {"trainable": {"w": torch.full((3,), float(value))}},
                           {"step": step}, keep_last=2)


def test_checkpoint_roundtrip_prune_and_corruption(tmp_path):
    for s in (1, 2, 3):
        _save(tmp_path, s, s)
    assert checkpoint.complete_steps(tmp_path) == [2, 3]  # keep_last=2
    blobs, state, rng = checkpoint.load(checkpoint.latest(tmp_path))
    assert state["step"] == 3 and torch.equal(blobs["trainable"]["w"], torch.full((3,), 3.0)) and rng is None
    # a corrupt newest checkpoint is skipped, and refused when asked for directly
    target = checkpoint.step_dir(tmp_path, 3) / "trainable.pt"
    target.write_bytes(target.read_bytes()[:-5] + b"xxxxx")
    assert checkpoint.latest(tmp_path) == checkpoint.step_dir(tmp_path, 2)
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(checkpoint.step_dir(tmp_path, 3))
    # a half-written folder (no COMPLETE marker) is never picked up
    half = checkpoint.step_dir(tmp_path, 9)
    half.mkdir()
    (half / "state.json").write_text("{}")
    assert checkpoint.latest(tmp_path) == checkpoint.step_dir(tmp_path, 2)
    with pytest.raises(checkpoint.CheckpointError, match="no COMPLETE marker"):
        checkpoint.verify(half)


def test_rng_state_roundtrip():
    import random

    state = checkpoint.rng_state()
    a = (random.random(), torch.rand(2))
    checkpoint.set_rng_state(state)
    b = (random.random(), torch.rand(2))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


# --------------------------------------------------------------------------- metrics, stream, schedule


def test_metrics_logger_truncates_on_resume(tmp_path):
    log = MetricsLogger(tmp_path, keep_lines=None, tensorboard=False, wandb=False, trackio=False,
                        project="p", run_config={})
    for s in (1, 2, 3):
        log.log({"step": s, "loss": float("nan") if s == 2 else 0.5})
    log.close()
    again = MetricsLogger(tmp_path, keep_lines=2, tensorboard=False, wandb=False, trackio=False,
                          project="p", run_config={})
    again.log({"step": 3, "loss": 0.1})
    again.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[1]["loss"] is None and rows[2]["loss"] == 0.1


def test_missing_optional_sink_has_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "wandb":
            raise ImportError("no wandb")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(RuntimeError, match="pip install wandb"):
        MetricsLogger(tmp_path, keep_lines=None, tensorboard=False, wandb=True, trackio=False,
                      project="p", run_config={})


def test_quantiles_match_numpy():
    import numpy as np

    x = torch.rand(101, dtype=torch.float64)
    assert np.allclose(quantiles(x), np.quantile(x.numpy(), [0.1, 0.5, 0.9]))
    assert all(q != q for q in quantiles(torch.zeros(0)))


def test_prompt_stream_resumes_and_shards():
    a = PromptStream(5, data_seed=3)
    first = [a.next_global(2) for _ in range(4)]  # crosses an epoch boundary
    assert sorted(first[0] + first[1] + [first[2][0]]) == list(range(5))
    b = PromptStream(5, data_seed=3)
    b.next_global(2)
    c = PromptStream(5, data_seed=3, position=b.position)
    assert [c.next_global(2) for _ in range(3)] == first[1:]
    assert shard([1, 2, 3, 4], 1, 2) == [3, 4]
    with pytest.raises(ValueError):
        shard([1, 2, 3], 0, 2)


def test_lr_schedule_warmup_constant_and_cosine():
    cfg = load_config("opsd", ["warmup_steps=4", "max_steps=14"])
    assert [lr_factor(s, cfg.schedule) for s in (0, 3, 4, 13)] == [0.2, 0.8, 1.0, 1.0]
    cfg = load_config("opsd", ["warmup_steps=0", "max_steps=10", "schedule.decay=cosine", "min_lr_ratio=0.1"])
    assert lr_factor(0, cfg.schedule) == pytest.approx(1.0)
    assert lr_factor(5, cfg.schedule) == pytest.approx(0.55)
    assert lr_factor(10, cfg.schedule) == pytest.approx(0.1)


def test_typos_are_matched_on_the_last_component_and_on_other_tools_names():
    with pytest.raises(ConfigError, match=r"did you mean optimizer\.lr \(called learning_rate elsewhere\)"):
        load_config("smoke", ["lernrate=1"])
    with pytest.raises(ConfigError, match=r"did you mean optimizer\.lr"):
        load_config("smoke", ["optimizer.lernrate=1"])
    with pytest.raises(ConfigError, match=r"did you mean sampling\.rollouts_per_prompt"):
        load_config("smoke", ["num_generations=4"])


def test_tiny_presets_never_override_the_users_yaml_and_say_what_they_change(tmp_path, caplog):
    own = tmp_path / "mine.yaml"
    own.write_text("model: {name: tiny-random}\nmethod: {name: opsd}\n"
                   "schedule: {prompts_per_step: 8, micro_batch_size: 8}\nsampling: {max_new_tokens: 64}\n")
    with caplog.at_level("WARNING", logger="selfdistill.train.config"):
        cfg = load_config(str(own), [])
    assert (cfg.schedule.prompts_per_step, cfg.schedule.micro_batch_size, cfg.sampling.max_new_tokens) == (8, 8, 64)
    assert cfg.lora.r == TINY_SIZES["lora.r"]  # not in the user's file: the preset applies
    said = caplog.text
    assert "lora.r 64 -> 8" in said and "prompts_per_step" not in said
    caplog.clear()
    with caplog.at_level("WARNING", logger="selfdistill.train.config"):
        cfg = load_config("opsd", ["model=tiny-random"])  # a bundled recipe: the preset shrinks it
    assert cfg.schedule.prompts_per_step == TINY_SIZES["schedule.prompts_per_step"]
    assert "schedule.prompts_per_step 32 -> 2" in caplog.text


@pytest.mark.parametrize("overrides, key", [
    (["method=grpo", "rollouts_per_prompt=2", "objective.support=teacher_topk"], "objective.support"),
    (["method=grpo", "rollouts_per_prompt=2", "method.anchor=student"], "method.anchor"),
    (["method=opsd", "objective.eps_high=0.4"], "objective.eps_high"),
    (["method=sdpo", "rollouts_per_prompt=2", "objective.purified_clip=3"], "objective.purified_clip"),
    (["method=purified-opsd", "diagnostics.pmi=true"], "diagnostics.pmi"),
])
def test_keys_the_method_does_not_read_are_refused_naming_the_method(overrides, key):
    method = overrides[0].split("=")[1]
    with pytest.raises(ConfigError, match=rf"{key}=.* is not read by method {method}"):
        load_config("smoke", overrides)


def test_every_bundled_recipe_sets_only_keys_its_method_reads():
    for name in recipe_names():
        load_config(name, [])  # ConfigError names the key otherwise


def test_contexts_keys_are_typed_by_the_renderers_options():
    cfg = load_config("smoke", ["contexts.max_length=4096", "contexts.roles.teacher.enable_thinking=true",
                                "contexts.strip_think=true"])
    assert cfg.contexts == {"max_length": 4096, "roles": {"teacher": {"enable_thinking": True}},
                            "strip_think": True}
    for bad, message in [("contexts.transition=wild", "choose one of hardened, mild, hardened-v0"),
                         ("contexts.max_length=many", "must be of type int"),
                         ("contexts.max_lenght=3", "did you mean max_length"),
                         ("contexts.roles.techer.system_prompt=x", "unknown role 'techer'")]:
        with pytest.raises(ConfigError, match=message):
            load_config("smoke", [bad])
    assert "contexts.max_length" in all_keys() and "contexts.roles.<role>.enable_thinking" in all_keys()


def test_sections_say_what_they_govern_and_old_names_still_work(tmp_path, caplog):
    cfg = load_config("smoke", ["rewards.answer_format=boxed_or_last_number", "diagnostics=true",
                                "method=opsd", "runtime.device=cpu"])
    assert (cfg.rewards.answer_format, cfg.diagnostics.pmi, cfg.runtime.device) == ("boxed_or_last_number", True, "cpu")
    old = tmp_path / "old.yaml"  # a recipe or a run's config.yaml written before the move
    old.write_text("model: {name: tiny-random}\nmethod: {name: opsd, diagnostics: true, controls_every: 2}\n"
                   "logging: {answer_format: boxed_or_last_number, rewards_for_all: false}\n"
                   "cpu_allocator: system\nshare_prefixes: false\n")
    with caplog.at_level("WARNING", logger="selfdistill.train.config"):
        cfg = load_config(str(old), ["rewards_for_all=true"])
    assert (cfg.diagnostics.pmi, cfg.diagnostics.controls_every, cfg.rewards.answer_format) == (True, 2, "boxed_or_last_number")
    assert (cfg.rewards.for_all, cfg.runtime.cpu_allocator, cfg.runtime.share_prefixes) == (True, "system", False)
    assert "config key logging.answer_format is now rewards.answer_format" in caplog.text
    assert "config key method.diagnostics is now diagnostics.pmi" in caplog.text
