"""The trainer on the hardware it is given: every teacher kind keeps its tensors on the student's
device (checked with the `meta` device, where a CPU-built copy cannot hide), float16 steps stay
finite with loss scaling, and the dtype choice is recorded with the run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from accelerate import Accelerator

from selfdistill import hardware
from selfdistill.train import microbatch as step_mod
from selfdistill.train.config import load_config
from selfdistill.train.loop import Trainer
from selfdistill.train.loss_scale import LossScaler
from selfdistill.train.rollouts import FixedRollouts

from test_train_loop import BASE, run, scripted


class MetaAccelerator(Accelerator):
    """One CPU process whose device is `meta`: ``prepare`` moves modules there, as accelerate moves
    them to a GPU. Anything a teacher built on the CPU then sits on another device than the student."""

    def __init__(self):
        super().__init__(cpu=True)

    @property
    def device(self):
        return torch.device("meta")

    def prepare(self, *objects):
        moved = [o.to("meta") if isinstance(o, torch.nn.Module) else o for o in objects]
        return tuple(moved) if len(moved) > 1 else moved[0]


def teacher_tensors(teacher) -> dict[str, torch.Tensor]:
    """Every tensor a teacher handle owns (EMA averages, a frozen copy's weights and buffers)."""
    out = {f"ema.{k}": v for k, v in getattr(teacher, "ema", {}).items()}
    frozen = getattr(teacher, "frozen", None)
    if frozen is not None:
        out.update({f"frozen.{k}": v for k, v in frozen.state_dict().items()})
    return out


@pytest.mark.parametrize("overrides", [
    ["method=opsd", "lora.enabled=false"],  # fixed teacher = frozen full copy
    ["method=sdpo", "rollouts_per_prompt=2", "method.teacher=ema"],  # EMA of the adapter
    ["method=sdpo", "rollouts_per_prompt=2", "method.teacher=ema", "lora.enabled=false"],
    ["method=sdpo", "rollouts_per_prompt=2", "method.teacher=trust_region", "lora.enabled=false"],
    ["method=purified-opsd"],  # fixed LoRA teacher (adapter off) + base handle
], ids=["fixed-full", "ema-lora", "ema-full", "trust-region-full", "purified-lora"])
def test_every_teacher_lives_on_the_students_device(tmp_path, overrides):
    cfg = load_config("smoke", BASE + [f"output_dir={tmp_path}"] + overrides)
    trainer = Trainer(cfg, accelerator=MetaAccelerator(),
                      rollout_backend=FixedRollouts.factory(scripted))
    student = {p.device for p in trainer.model.parameters()}
    assert student == {torch.device("meta")}
    handles = [h for h in (trainer.passes.teacher, trainer.passes.base, trainer.passes.live) if h is not None]
    assert handles
    owned = {name: t for h in handles for name, t in teacher_tensors(h).items()}
    if "lora.enabled=false" in overrides or "method.teacher=ema" in overrides:
        assert owned  # the check below must look at something
    wrong = {name: str(t.device) for name, t in owned.items() if t.device != torch.device("meta")}
    assert not wrong, f"teacher tensors off the student's device: {sorted(wrong)[:5]}"
    for h in handles:  # the weights a pass would use
        assert h.output_layer().weight_V_H.device == torch.device("meta")
    trainer.close()


def test_float16_steps_are_finite_with_loss_scaling(tmp_path):
    trainer, rows = run(tmp_path, ["method=opsd", "model.dtype=float16", "max_steps=4"])
    assert trainer.hardware.dtype == "float16" and trainer.scaler is not None
    assert next(p for n, p in trainer.model.named_parameters() if "lora" not in n).dtype == torch.float16
    assert all(math.isfinite(r["loss"]) for r in rows)
    # an overflow of the scaled gradients skips a step and halves the scale (GradScaler's policy);
    # after that the steps go through: never three skips in a row, which would stop the run
    taken = [r for r in rows if not r["skipped"]]
    assert len(taken) >= 2 and all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in taken)
    assert rows[-1]["loss_scale"] == 2.0**16 / 2 ** sum(r["skipped"] for r in rows)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_graph_anchor_is_zero_where_a_float16_sum_overflows():
    h = torch.full((2, 64, 64), 100.0, dtype=torch.float16, requires_grad=True)
    assert torch.isinf(h.sum())  # 409600 > float16 max: the old keep-alive term gave inf * 0 = NaN
    anchor = step_mod.graph_anchor(h)
    assert anchor.dtype == torch.float32 and anchor.item() == 0.0
    anchor.backward()
    assert h.grad is not None and torch.all(h.grad == 0)


def test_loss_scaler_unscales_exactly_halves_on_overflow_and_grows():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([2.0, -4.0, 6.0]) * 1024
    s = LossScaler(init_scale=1024, growth_interval=2)
    s.unscale_([p])
    assert torch.equal(p.grad, torch.tensor([2.0, -4.0, 6.0]))
    s.update(overflow=True)
    assert s.scale == 512 and s.good_steps == 0
    s.update(False)
    s.update(False)
    assert s.scale == 1024
    clone = LossScaler()
    clone.load_state_dict(s.state_dict())
    assert clone.state_dict() == s.state_dict()
    floor = LossScaler(init_scale=1.0)
    floor.update(True)
    assert floor.scale == 1.0


def test_auto_dtype_choice_is_printed_and_recorded_with_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: False)
    trainer, _ = run(tmp_path, ["method=opsd", "model.dtype=auto", "max_steps=1"])
    assert trainer.hardware.dtype == "float32"
    assert next(trainer.model.parameters()).dtype == torch.float32
    record = json.loads((tmp_path / "run" / "hardware.json").read_text())
    assert record["dtype"] == "float32" and "no native bf16" in record["reason"]
    assert record["cpu_capability"] == hardware.cpu_capability()
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert config.startswith("# device cpu") and "dtype: auto" in config
    assert "no native bf16" in capsys.readouterr().err
