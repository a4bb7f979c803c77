"""One output layer for training, scoring and evaluation: a biased lm_head trains on the model's
own distributions, and logit transforms the layer cannot reproduce are refused before training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfdistill.models import output_layer, response_logits
from selfdistill.objectives import generalized_jsd
from selfdistill.train import microbatch, passes as passes_mod
from selfdistill.train.config import load_config
from selfdistill.train.loop import Trainer
from selfdistill.train.rollouts import Rollouts

BASE = ["model=tiny-random", "data.limit=4", "logging.tensorboard=false", "logging.progress=false",
        "rewards.for_all=false"]


def _trainer(tmp_path, extra):
    torch.manual_seed(0)
    trainer = Trainer(load_config("smoke", BASE + [f"output_dir={tmp_path}"] + extra))
    head = trainer.model.get_output_embeddings()
    with torch.no_grad():
        for n, p in trainer.model.named_parameters():
            if "lora_B" in n:  # student and teacher differ
                p.normal_(0, 0.05)
    # a large bias: training that ignores it sees other distributions than the model's
    head.bias = nn.Parameter(torch.randn(head.weight.shape[0]) * 3.0, requires_grad=False)
    return trainer


def _microbatch(trainer):
    examples = trainer.data.examples[:2]
    ro = Rollouts(examples, [0, 1], [[11, 12, 13, 14], [15, 16, 17]], ["", ""], [False, False],
                  rewards=[1.0, 0.0], advantages_B=torch.tensor([0.5, -0.5]))
    return microbatch.plan(trainer.cfg, trainer.renderer, ro, [0, 1])


@pytest.mark.parametrize("chunk", [0, 256])
def test_opsd_loss_with_a_biased_lm_head_equals_the_float64_loss_on_the_models_logits(tmp_path, chunk):
    trainer = _trainer(tmp_path, ["method=opsd", f"objective.loss_chunk_size={chunk}",
                                  "objective.temperature=1.3"])
    cfg, p = trainer.cfg, trainer.passes
    mb = _microbatch(trainer)
    targets = microbatch.score(cfg, p, mb)
    res = microbatch.compute_loss(cfg, p, mb, targets, mb.loss_units, diagnostics=False)

    mask = mb.distill_mask_B_T.bool()
    with torch.no_grad():  # the model's own logits (HF head: weight and bias), in float64
        s = response_logits(p.model, passes_mod.forward_inputs(mb.batches["student"])).double()
        t = p.teacher.logits(passes_mod.forward_inputs(mb.batches["teacher"])).double()
    tau = cfg.objective.temperature
    target = (t / tau).log_softmax(-1)
    div = generalized_jsd(s, target, beta=cfg.objective.beta, temperature=tau, mask=mask)
    want = float(div[mask].sum() / mask.sum())
    assert float(res.loss) == pytest.approx(want, rel=1e-4, abs=1e-6)
    ent = -(target.exp() * target).sum(-1)[mask].sum()
    assert res.sums["teacher_entropy"] == pytest.approx(float(ent), rel=1e-4)
    trainer.close()


def test_policy_gradient_log_probs_include_the_bias(tmp_path):
    trainer = _trainer(tmp_path, ["method=grpo", "rollouts_per_prompt=2"])
    mb = _microbatch(trainer)
    batch = mb.batches["student"]
    with torch.no_grad():
        h = passes_mod.ResponseScorer(trainer.model)(passes_mod.forward_inputs(batch))
        got = passes_mod.token_logprobs(h, output_layer(trainer.model), batch.response_ids_B_T, 2)
        logits = response_logits(trainer.model, passes_mod.forward_inputs(batch)).double()
    want = logits.log_softmax(-1).gather(-1, batch.response_ids_B_T.unsqueeze(-1)).squeeze(-1)
    m = batch.response_mask_B_T.bool()
    torch.testing.assert_close(got.double()[m], want[m], rtol=1e-5, atol=1e-5)
    trainer.close()


def test_scaled_logits_are_refused_by_the_training_step(tmp_path):
    trainer = _trainer(tmp_path, ["method=opsd"])
    trainer.model.config.logit_scale = 0.25  # e.g. Cohere: logits = (h @ W.T) * scale
    mb = _microbatch(trainer)
    with pytest.raises(NotImplementedError, match="logit_scale=0.25"):
        targets = microbatch.score(trainer.cfg, trainer.passes, mb)
        microbatch.compute_loss(trainer.cfg, trainer.passes, mb, targets, mb.loss_units, diagnostics=False)
    trainer.close()


def test_output_layer_unpacks_and_detaches():
    head = nn.Linear(4, 7, bias=True)
    model = nn.Module()
    model.config = type("C", (), {"final_logit_softcapping": 30.0})()
    model.get_output_embeddings = lambda: head
    weight, bias, cap = output_layer(model)
    assert weight is head.weight and bias is head.bias and cap == 30.0
    layer = output_layer(model).detached()
    assert not layer.weight_V_H.requires_grad and not layer.bias_V.requires_grad
    h = torch.randn(3, 4)
    torch.testing.assert_close(layer.logits(h), 30.0 * torch.tanh(head(h).detach() / 30.0))
