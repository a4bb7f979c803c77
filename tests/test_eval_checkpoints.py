"""`selfdistill eval --model RUN/checkpoints/step-N` and `--model RUN` for LoRA and full fine-tuning
runs: the evaluated weights are the checkpoint's (not the base model's, not another step's), and
bad folders end in a one-line error, not a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from selfdistill.cli import main
from selfdistill.models import LoraSettings, apply_lora, load_model
from selfdistill.train import checkpoint
from selfdistill.train.config import load_config
from selfdistill.train.loop import Trainer
from selfdistill.train.rollouts import FixedRollouts
from selfdistill.train.run_checkpoint import RunCheckpointError, find, load_run_checkpoint

BASE = ["model=tiny-random", "data.limit=4", "logging.tensorboard=false", "logging.progress=false",
        "lr=1e-2", "max_new_tokens=8", "rewards.for_all=false", "method=opsd", "max_steps=2",
        "checkpoint.every=1", "checkpoint.keep_last=3", "model.dtype=float32"]
IDS = torch.tensor([[5, 17, 33, 2, 40, 41, 7, 9]])


def _respond(tokenizer, prompt_ids, j):
    return tokenizer.encode("The answer is 12 because 3 times 4", add_special_tokens=False)


@pytest.fixture(scope="module", params=["lora", "full"])
def run_dir(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    extra = ["lora.enabled=false"] if request.param == "full" else []
    cfg = load_config("smoke", BASE + extra + [f"output_dir={out}"])
    Trainer(cfg, rollout_backend=FixedRollouts.factory(_respond)).fit()
    return out


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits.double()


def _manual(run_dir, step: int):
    """The step's model built by hand: base (+ the run's LoRA) with trainable.pt copied in."""
    lora = yaml.safe_load((run_dir / "config.yaml").read_text())["lora"]
    model, _ = load_model("tiny-random", dtype="float32")
    if lora["enabled"]:
        model = apply_lora(model, LoraSettings(r=lora["r"], alpha=lora["alpha"],
                                               target_modules=tuple(lora["target_modules"])))
    blob = torch.load(checkpoint.step_dir(run_dir / "checkpoints", step) / "trainable.pt")
    model.load_state_dict(blob, strict=False)
    return model


def test_checkpoint_weights_are_the_trained_ones(run_dir):
    step1 = checkpoint.step_dir(run_dir / "checkpoints", 1)
    model, _ = load_run_checkpoint(step1, dtype="float32", device="cpu")
    blob = torch.load(step1 / "trainable.pt")
    params = dict(model.named_parameters())
    assert all(torch.equal(params[name], value) for name, value in blob.items())
    base, _ = load_model("tiny-random", dtype="float32")
    logits = _logits(model)
    assert not torch.allclose(logits, _logits(base))  # training moved the weights
    torch.testing.assert_close(logits, _logits(_manual(run_dir, 1)), rtol=0, atol=0)
    step2, _ = load_run_checkpoint(checkpoint.step_dir(run_dir / "checkpoints", 2), dtype="float32",
                                   device="cpu")
    assert not torch.allclose(logits, _logits(step2))  # a different step, different weights


def test_eval_cli_on_a_checkpoint_and_on_the_run(run_dir, tmp_path, capsys):
    args = ["--benchmarks", "gsm8k-100", "--limit", "2", "--k", "1", "--max-new-tokens", "4",
            "--dtype", "float32", "--device", "cpu", "--no-progress"]
    step1 = checkpoint.step_dir(run_dir / "checkpoints", 1)
    assert main(["eval", "--model", str(step1), *args, "--output-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr()
    assert f"using checkpoint step 1 of training run {run_dir}" in out.out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["gsm8k-100"]
    assert summary["model"] == str(step1) and summary["hardware"]["device"] == "cpu"
    assert summary["hardware"]["dtype"] == "float32"
    assert "device cpu" in out.err  # the start-up line

    assert main(["eval", "--model", str(run_dir), *args, "--output-dir", str(tmp_path / "b")]) == 0
    assert f"using the final model of training run {run_dir}" in capsys.readouterr().out
    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "final")  # a run still going (or killed): its newest complete checkpoint
    assert find(copy).step == 2
    assert main(["eval", "--model", str(copy), *args, "--output-dir", str(tmp_path / "c")]) == 0
    assert "using checkpoint step 2 of training run" in capsys.readouterr().out


def test_incomplete_or_mismatched_checkpoints_give_one_line_errors(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    step2 = checkpoint.step_dir(copy / "checkpoints", 2)
    (step2 / checkpoint.MARKER).unlink()  # killed mid-write
    args = ["--benchmarks", "gsm8k-100", "--limit", "1", "--k", "1", "--max-new-tokens", "2",
            "--dtype", "float32", "--no-progress", "--output-dir", str(tmp_path / "ev")]
    assert main(["eval", "--model", str(step2), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(step2) in err and "COMPLETE" in err and "trainable.pt" in err  # what the folder holds

    shutil.rmtree(copy / "final")
    assert find(copy).step == 1  # the half-written step 2 is passed over
    shutil.rmtree(checkpoint.step_dir(copy / "checkpoints", 1))
    assert main(["eval", "--model", str(copy), *args]) == 2
    err = capsys.readouterr().err
    assert "no final/ model and no complete checkpoint" in err and str(copy) in err

    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    text = (other / "config.yaml").read_text()
    if "enabled: true" in text:  # LoRA run: claim another rank
        text = text.replace("  r: 8\n", "  r: 4\n")
    else:  # full fine-tuning: claim it was LoRA
        text = text.replace("enabled: false", "enabled: true")
    (other / "config.yaml").write_text(text)
    with pytest.raises(RunCheckpointError, match=r"trainable\.pt does not fit the model rebuilt from"):
        load_run_checkpoint(checkpoint.step_dir(other / "checkpoints", 1), dtype="float32", device="cpu")
