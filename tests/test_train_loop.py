"""The training loop on the tiny random model: every method, teacher modes, split invariance,
resume equivalence, metrics exactly once, the non-finite guard."""

from __future__ import annotations

import json
import math

import pytest
import torch

from selfdistill.train import checkpoint, passes as passes_mod, microbatch as step_mod
from selfdistill.train.config import load_config
from selfdistill.train.loop import NonFiniteError, OutputDirError, Trainer
from selfdistill.train.rollouts import FixedRollouts

# rewards.for_all=false: only the group methods start math-verify workers (they need rewards)
BASE = ["model=tiny-random", "data.limit=4", "logging.tensorboard=false", "logging.progress=false",
        "lr=1e-3", "max_new_tokens=12", "rewards.for_all=false"]


def _answers() -> dict[str, str]:
    from selfdistill.data import load_examples

    return {e.problem: e.answer for e in load_examples("gsm8k-100", limit=4)}


ANSWERS = _answers()


def scripted(tokenizer, prompt_ids, j):
    """Sample 0 of each group answers correctly, the others do not; lengths differ per sample so
    token-level normalisation matters."""
    prompt = tokenizer.decode(prompt_ids)
    answer = next(a for p, a in ANSWERS.items() if p in prompt)
    text = f"So the answer is \\boxed{{{answer}}}." if j == 0 else "I think it is " + "7 " * (j + 1)
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


def run(tmp_path, overrides, *, name="run", backend=scripted, **kw):
    cfg = load_config("smoke", BASE + [f"output_dir={tmp_path / name}"] + overrides)
    trainer = Trainer(cfg, rollout_backend=FixedRollouts.factory(backend) if backend else None, **kw)
    trainer.fit()
    return trainer, _rows(tmp_path / name)


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _trainable(out, step):
    blobs, _, _ = checkpoint.load(checkpoint.step_dir(out / "checkpoints", step))
    return blobs["trainable"]


METHODS = [
    ["method=opsd"],
    ["method=opsd", "diagnostics.pmi=true", "objective.loss_chunk_size=0"],
    ["method=purified-opsd"],
    ["method=purified-opsd", "method.anchor=student", "objective.beta=0"],
    ["method=sdpo", "rollouts_per_prompt=3", "objective.support=student_topk", "objective.topk=20"],
    ["method=sdpo", "rollouts_per_prompt=3", "method.teacher=ema"],
    ["method=sdpo", "rollouts_per_prompt=3", "method.teacher=trust_region", "objective.loss_chunk_size=0"],
    ["method=opsd", "method.teacher=live"],
    ["method=grpo", "rollouts_per_prompt=3"],
    ["method=grpo", "rollouts_per_prompt=3", "method.antisd=true", "method.antisd_lambda=0.5"],
    ["method=srpo", "rollouts_per_prompt=3"],
]


@pytest.mark.parametrize("overrides", METHODS, ids=lambda o: "-".join(x.split("=")[1] for x in o))
def test_each_method_takes_a_finite_step_that_changes_the_adapter(tmp_path, overrides):
    trainer, rows = run(tmp_path, overrides + ["max_steps=1"])
    row = rows[0]
    assert math.isfinite(row["loss"]) and row["skipped"] == 0 and row["grad_norm"] > 0
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at 0: it moved
    name = trainer.cfg.method.name
    if name != "grpo":
        assert row["kl/p10"] <= row["kl/p50"] <= row["kl/p90"] and row["teacher/entropy"] > 0
    if name in ("grpo", "srpo", "sdpo"):
        assert row["accuracy"] == pytest.approx(1 / 3)  # one scripted sample in three is right
    if name == "purified-opsd" or trainer.cfg.diagnostics.pmi:
        assert -1 <= row["pmi/cos_total_ref"] <= 1 and 0 <= row["pmi/tanh_clip_frac"] <= 1
        assert 0 <= row["pmi/norm_ratio_frac_above_1"] <= 1 and row["pmi/kl_ratio_ref_median"] >= 0
    if trainer.cfg.method.antisd:  # first step sets the entropy level, so the gate is open
        assert row["antisd/lambda"] == 0.5 and row["antisd/u_mean"] is not None
    if name == "sdpo":
        # the right sample has no OTHER right sibling; the two wrong ones do
        assert row["sdpo/context_frac"] == pytest.approx(2 / 3)
    for key in ("response/length_mean", "markers/per_1k", "time/step_s", "lr", "data/dropped_rows"):
        assert key in row
    assert (trainer.out / "config.yaml").exists() and (trainer.out / "final").is_dir()


def test_sdpo_skips_samples_without_context(tmp_path):
    wrong = lambda tok, ids, j: tok.encode("no idea", add_special_tokens=False)  # noqa: E731
    _, rows = run(tmp_path, ["method=sdpo", "rollouts_per_prompt=2", "max_steps=1"], backend=wrong)
    assert rows[0]["sdpo/context_frac"] == 0 and rows[0]["loss"] == 0 and rows[0]["kl/p50"] is None


def test_loss_and_update_do_not_depend_on_the_micro_batch_split(tmp_path):
    common = ["method=opsd", "max_steps=2", "prompts_per_step=4", "objective.loss_chunk_size=7"]
    _, a = run(tmp_path, common + ["micro_batch_size=4"], name="a")
    _, b = run(tmp_path, common + ["micro_batch_size=1", "objective.loss_chunk_size=0"], name="b")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    assert [r["grad_norm"] for r in a] == pytest.approx([r["grad_norm"] for r in b], rel=1e-4)
    wa, wb = _trainable(tmp_path / "a", 2), _trainable(tmp_path / "b", 2)
    # Adam divides by sqrt(v): float noise in near-zero gradients shows up at ~1e-6 in the update,
    # so weights are compared at 1% of one step (lr 1e-3)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5)


def test_resume_equals_uninterrupted_and_logs_each_step_once(tmp_path):
    # real seeded sampling (HF generate) and an EMA teacher whose state must survive the resume
    common = ["method=opsd", "method.teacher=ema", "checkpoint.every=2", "max_new_tokens=6"]
    run(tmp_path, common + ["max_steps=4"], name="full", backend=None)
    run(tmp_path, common + ["max_steps=3"], name="part", backend=None)
    # crash after step 3 was logged but before it was checkpointed
    import shutil

    shutil.rmtree(checkpoint.step_dir(tmp_path / "part" / "checkpoints", 3))
    assert len(_rows(tmp_path / "part")) == 3
    with pytest.raises(OutputDirError, match="resume=true"):
        run(tmp_path, common + ["max_steps=4"], name="part", backend=None)
    run(tmp_path, common + ["max_steps=4", "resume=true"], name="part", backend=None)
    full, part = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r["step"] for r in part] == [1, 2, 3, 4]
    assert [r["loss"] for r in part] == [r["loss"] for r in full]  # exact
    wf, wp = _trainable(tmp_path / "full", 4), _trainable(tmp_path / "part", 4)
    assert all(torch.equal(wf[k], wp[k]) for k in wf)  # bitwise equal
    assert checkpoint.complete_steps(tmp_path / "part" / "checkpoints") == [2, 4]


def test_nonfinite_steps_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    real = step_mod.compute_loss
    bad_steps: set[int] = {2}
    calls = {"n": 0}

    def poisoned(cfg, passes, mb, targets, units, **kw):
        res = real(cfg, passes, mb, targets, units, **kw)
        calls["n"] += 1
        if (calls["n"] + 1) // 2 in bad_steps:  # two micro-batches per step
            res.loss = res.loss * float("nan")
        return res

    monkeypatch.setattr(step_mod, "compute_loss", poisoned)
    common = ["method=opsd", "prompts_per_step=2", "micro_batch_size=1", "checkpoint.every=1", "keep_last=5",
              "schedule.max_nonfinite_steps=2"]
    _, rows = run(tmp_path, common + ["max_steps=3"], name="one")
    assert [r["skipped"] for r in rows] == [0, 1, 0]
    w1, w2 = _trainable(tmp_path / "one", 1), _trainable(tmp_path / "one", 2)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # the skipped step changed nothing
    assert all(torch.isfinite(v).all() for v in _trainable(tmp_path / "one", 3).values())

    bad_steps.update({1, 2, 3, 4, 5})
    calls["n"] = 0
    with pytest.raises(NonFiniteError, match="2 steps in a row.*last good state"):
        run(tmp_path, common + ["max_steps=5"], name="two")
    assert len(_rows(tmp_path / "two")) == 2


def test_stacked_no_grad_passes_equal_separate_passes():
    """Purified OPSD runs teacher, refonly and base as one left-padded batch; same hidden states."""
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.data import load_examples
    from selfdistill.models import load_model, make_teacher

    torch.manual_seed(0)
    model, tok = load_model("tiny-random")
    handle = make_teacher(model, "fixed")
    examples = load_examples("gsm8k-100", limit=2)
    batches = Renderer(tok, ContextConfig(max_length=4096)).scoring_batches(
        ["teacher", "refonly", "base"], examples, [[11, 12, 13], [14, 15]])
    stacked = passes_mod.stacked_hidden(handle, list(batches.values()))
    for got, batch in zip(stacked, batches.values()):
        alone = handle.hidden(passes_mod.forward_inputs(batch))
        mask = batch.response_mask_B_T.bool()
        torch.testing.assert_close(got[mask], alone[mask], rtol=1e-4, atol=1e-5)


def test_shared_prefix_passes_give_the_same_step(tmp_path, monkeypatch):
    """Purified OPSD with share_prefixes (the default) runs the shared plan and ends with the same
    loss and weights as separate passes (share_prefixes=false, which never calls the plan).

    In float64: the two plans sum in different orders, and in float32 that rounding differs by
    CPU kind (AVX2 vs AVX-512 kernels) and is then amplified by Adam's per-element normalisation,
    so a float32 tolerance would be tuned to one machine. float64 leaves ~1e-12 of it."""
    import selfdistill.models as models_pkg
    from selfdistill.models import prefix

    load = models_pkg.load_model
    monkeypatch.setattr(models_pkg, "load_model", lambda *a, **k: _as_float64(load(*a, **k)))
    calls = []
    run_plan = prefix.run_plan
    monkeypatch.setattr(prefix, "run_plan", lambda *a: calls.append(1) or run_plan(*a))
    monkeypatch.setattr(passes_mod, "CALL_COLUMNS", 0)  # share even 2-row micro-batches of tiny prompts
    common = ["method=purified-opsd", "max_steps=2"]
    _, shared = run(tmp_path, common, name="shared")
    used = len(calls)
    _, separate = run(tmp_path, common + ["runtime.share_prefixes=false"], name="separate")
    assert used > 0 and len(calls) == used
    for a, b in zip(shared, separate):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-9, abs=1e-12)
    got, want = _trainable(tmp_path / "shared", 2), _trainable(tmp_path / "separate", 2)
    assert all(w.dtype == torch.float64 for w in want.values())
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-12)


def _as_float64(loaded):
    model, tokenizer = loaded
    return model.to(torch.float64), tokenizer


def test_prefix_plan_weighs_forward_calls_against_shared_columns(monkeypatch):
    """Sharing splits each row into more forward calls: with 8 rows per micro-batch the shared
    header + question outweigh them, with 1 row they do not (CALL_COLUMNS per call)."""
    from selfdistill.contexts import ContextConfig, Renderer
    from selfdistill.data import load_examples
    from selfdistill.models import load_model, make_teacher

    model, tok = load_model("tiny-random")
    handle = make_teacher(model, "fixed")
    examples = load_examples("gsm8k-100", limit=8)
    responses = [[11 + i] * 40 for i in range(8)]
    render = lambda n: list(Renderer(tok, ContextConfig(max_length=4096)).scoring_batches(  # noqa: E731
        ["teacher", "refonly", "base"], examples[:n], responses[:n]).values())
    assert passes_mod.prefix_plan(handle, render(8)) is not None
    assert passes_mod.prefix_plan(handle, render(1)) is None
    assert passes_mod.prefix_plan(handle, render(1), separate_calls=9) is not None  # many separate calls
    monkeypatch.setattr(passes_mod, "CALL_COLUMNS", 0)
    assert passes_mod.prefix_plan(handle, render(1)) is not None


def test_cli_smoke_command_then_resume(tmp_path):
    """The documented smoke: 3 steps, then max_steps=5 resume=true continues at step 4."""
    from selfdistill.cli import main

    out = tmp_path / "cli"
    cmd = ["train", "purified-opsd", "model=tiny-random", "data=gsm8k-100", f"output_dir={out}",
           "logging.progress=false"]
    assert main(cmd + ["max_steps=3"]) == 0
    assert [r["step"] for r in _rows(out)] == [1, 2, 3]
    assert checkpoint.latest(out / "checkpoints") == checkpoint.step_dir(out / "checkpoints", 3)
    assert main(cmd + ["max_steps=5", "resume=true"]) == 0
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(0 <= r["pmi/tanh_clip_frac"] <= 1 for r in rows)
    assert (out / "final" / "adapter_config.json").exists()


def test_over_length_rows_are_dropped_and_counted(tmp_path):
    _, rows = run(tmp_path, ["method=opsd", "max_steps=1", "prompts_per_step=4",
                             "contexts={max_length: 300, over_length: drop}"])
    assert 0 < rows[0]["data/dropped_rows"] < 4 and math.isfinite(rows[0]["loss"]) and rows[0]["loss"] > 0


def test_stack_groups_bounds_padding_waste():
    """Passes are stacked only while padded tokens stay within the allowed share."""
    from types import SimpleNamespace

    def batch(rows, start, T=10):
        return SimpleNamespace(ids_B_L=torch.zeros(rows, start + T), response_start=start,
                               response_ids_B_T=torch.zeros(rows, T))

    same = [batch(4, 100), batch(4, 98), batch(4, 95)]
    assert passes_mod.stack_groups(same) == [[0, 1, 2]]
    mixed = [batch(4, 40), batch(4, 300), batch(4, 280)]  # base (short) vs teacher / refonly
    assert passes_mod.stack_groups(mixed) == [[1, 2], [0]]
    assert passes_mod.stack_groups(mixed, max_waste=1.0) == [[1, 2, 0]]
    assert passes_mod.stack_groups(mixed, max_waste=0.0) == [[1], [2], [0]]
    for groups in (passes_mod.stack_groups(mixed, w) for w in (0.0, 0.05, 0.3, 1.0)):
        assert sorted(i for g in groups for i in g) == [0, 1, 2]  # every pass exactly once


@pytest.mark.parametrize("method,chunk,tau", [("purified-opsd", 2, 1.0), ("purified-opsd", 0, 1.0),
                                              ("opsd", 3, 1.0), ("purified-opsd", 2, 1.7), ("opsd", 0, 0.6)])
def test_step_metrics_equal_a_plain_float64_computation(tmp_path, method, chunk, tau):
    """Teacher entropy and the PMI diagnostics of a micro-batch (measured on the loss's own
    chunks) equal pmi_diagnostics / entropy over every role's full logits divided by the
    distillation tau (the distributions the target is built from), in float64."""
    from selfdistill.models import response_hidden
    from selfdistill.objectives import pmi_diagnostics
    from selfdistill.train.rollouts import Rollouts

    torch.manual_seed(0)
    extra = ["diagnostics.pmi=true"] if method == "opsd" else []
    cfg = load_config("smoke", BASE + [f"output_dir={tmp_path}", f"method={method}",
                                       f"objective.loss_chunk_size={chunk}", f"objective.temperature={tau}"]
                      + extra)
    trainer = Trainer(cfg)
    with torch.no_grad():  # move the adapter off zero so student and teachers differ
        for n, p in trainer.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    examples = trainer.data.examples[:2]
    responses = [[11, 12, 13, 14], [15, 16, 17]]
    ro = Rollouts(examples, [0, 1], responses, ["", ""], [False, False])
    mb = step_mod.plan(cfg, trainer.renderer, ro, [0, 1])
    targets = step_mod.score(cfg, trainer.passes, mb)
    res = step_mod.compute_loss(cfg, trainer.passes, mb, targets, mb.loss_units, diagnostics=True)

    mask = mb.distill_mask_B_T.bool()

    def logits64(handle_hidden, weight, role):
        h = handle_hidden(passes_mod.forward_inputs(mb.batches[role]))
        return (h.double() @ weight.detach().double().T)[mask] / tau

    p = trainer.passes
    with torch.no_grad():
        t = logits64(p.teacher.hidden, p.teacher.output_layer().weight_V_H, "teacher")
        r = logits64(p.base.hidden, p.base.output_layer().weight_V_H, "refonly")
        s = logits64(lambda a: response_hidden(p.model, a), p.model.get_output_embeddings().weight, "student")
    logp = t.log_softmax(-1)
    n = float(mask.sum())
    assert res.sums["teacher_entropy_n"] == n
    assert res.sums["teacher_entropy"] == pytest.approx(float(-(logp.exp() * logp).sum()), rel=1e-4)
    want = pmi_diagnostics(t, r, s, clip=cfg.objective.purified_clip, center=cfg.objective.purified_center)
    assert res.sums["pmi_n"] == n
    for key, src in step_mod.ChunkStats.KEYS:
        assert res.sums[key] / n == pytest.approx(float(want[src]), rel=1e-3, abs=1e-4), key
    ratio = want["norm_ratio_ref_total_per_position"]
    far = (ratio - 1).abs() > 1e-3  # positions clearly on one side of 1 decide the count
    assert abs(res.sums["norm_ratio_above_1"] - float((ratio > 1).sum())) <= float((~far).sum())
    torch.testing.assert_close(res.kl_ratio_N.double(), want["kl_ratio_ref_per_position"], rtol=2e-3, atol=1e-4)
    trainer.close()


def test_entropy_at_a_temperature_is_the_entropy_of_the_tempered_softmax():
    logits = torch.randn(5, 40, dtype=torch.float64) * 3
    for tau in (0.5, 1.0, 2.0):
        p = (logits / tau).softmax(-1)
        want = -(p * p.log()).sum(-1)
        torch.testing.assert_close(passes_mod.entropy(logits, tau).double(), want, rtol=1e-5, atol=1e-6)
