"""FSDP2 on two CPU processes (``accelerate launch`` with an FSDP config, gloo) trains like one
process: same losses, gradient norms and weights, through a checkpoint and a resume.

accelerate runs MULTI_CPU without sharding whatever the config says, so the trainer applies
accelerate's own FSDP2 wrapping on the CPU process group (``selfdistill.train.fsdp``); each run
below checks that it did (the checkpoint's optimizer state is the FSDP format) before comparing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from distributed_script import PRELUDE  # tests/ is on the path
from selfdistill.train import checkpoint

CONFIG = Path(__file__).parent / "fixtures" / "accelerate_fsdp2_cpu.yaml"

SCRIPT = "import json\n" + PRELUDE + textwrap.dedent(
    """

    if __name__ == "__main__":  # the reward workers are spawned processes
        cfg = load_config("smoke", ["model=tiny-random", "data.limit=8", "prompts_per_step=4",
                                    "micro_batch_size=2", "lr=1e-3", "objective.loss_chunk_size=16",
                                    "logging.tensorboard=false", "logging.progress=false",
                                    "output_dir=" + sys.argv[1], *json.loads(sys.argv[2])])
        Trainer(cfg, rollout_backend=FixedRollouts.factory(responses)).fit()
    """
)

CASES = {
    "lora-fixed": ["method=opsd"],
    "full-ema": ["method=opsd", "lora.enabled=false", "method.teacher=ema", "method.ema_rate=0.5"],
    "lora-live": ["method=opsd", "method.teacher=live"],
    # three no-grad contexts (teacher, refonly, base) on the fixed handle, PMI diagnostics gathered
    "lora-purified": ["method=purified-opsd"],
    "full-trust_region": ["method=opsd", "lora.enabled=false", "method.teacher=trust_region",
                          "method.trust_region_mix=0.5"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _fsdp(script: Path, out: Path, overrides: list[str], cwd: Path) -> None:
    accelerate = Path(sys.executable).parent / "accelerate"
    _run([str(accelerate), "launch", "--config_file", str(CONFIG), "--main_process_port", str(_free_port()),
          str(script), str(out), json.dumps(overrides)], cwd)


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_fsdp_two_processes_match_one_process_through_a_resume(tmp_path: Path, case: str):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    overrides = CASES[case]
    _run([sys.executable, str(script), str(tmp_path / "one"), json.dumps([*overrides, "max_steps=3"])], tmp_path)
    _fsdp(script, tmp_path / "two", [*overrides, "max_steps=2"], tmp_path)
    _fsdp(script, tmp_path / "two", [*overrides, "max_steps=3", "resume=true"], tmp_path)

    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3]  # only the main process writes, the resume kept 1-2
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert [r["grad_norm"] for r in two] == pytest.approx([r["grad_norm"] for r in one], rel=1e-4)
    assert [r["kl/p50"] for r in two] == pytest.approx([r["kl/p50"] for r in one], rel=1e-5)

    blobs1, _, _ = checkpoint.load(checkpoint.step_dir(tmp_path / "one" / "checkpoints", 3))
    blobs2, state, _ = checkpoint.load(checkpoint.step_dir(tmp_path / "two" / "checkpoints", 3), rank=1)
    assert state["world_size"] == 2
    assert state.get("optimizer_format") == "full_by_name"  # the run was sharded, not replicated
    w1, w2 = blobs1["trainable"], blobs2["trainable"]
    assert set(w2) == set(w1)
    for k in w1:  # 1% of one Adam step (lr 1e-3), as the DDP test
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5)
    if "teacher" in blobs1:  # the EMA averages, gathered from their shards
        assert set(blobs2["teacher"]["ema"]) == set(blobs1["teacher"]["ema"])
        for k, v in blobs1["teacher"]["ema"].items():
            torch.testing.assert_close(blobs2["teacher"]["ema"][k].cpu(), v.cpu(), rtol=0, atol=1e-5)
    # the optimizer state survived the resume: the Adam moments of step 3 match one process's
    m1 = blobs1["optimizer"]["state"]
    m2 = blobs2["optimizer"]["state"]
    names = list(w1)  # one AdamW group over the trainable parameters, in named_parameters order
    assert len(m1) == len(names)
    for i, name in enumerate(names):
        torch.testing.assert_close(m2[f"model.{name}"]["exp_avg_sq"], m1[i]["exp_avg_sq"], rtol=1e-3, atol=1e-12)



def test_fsdp1_is_refused_before_any_sharding(monkeypatch: pytest.MonkeyPatch):
    """FSDP1 cannot run without an accelerator (torch: "FSDP needs a non-CPU accelerator device"),
    so the paths here, which read FSDP2's DTensor parameters, refuse it with the fix."""
    from types import SimpleNamespace

    from selfdistill.train import fsdp
    from selfdistill.train.errors import ConfigError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    assert fsdp.requested()
    module = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        fsdp.shard_on_cpu(SimpleNamespace(is_main_process=True, device=torch.device("cpu")), module)
    assert not fsdp.is_sharded(module)


@pytest.mark.slow
def test_fsdp_sampled_rollouts_and_main_only_evaluation_finish(tmp_path: Path):
    """Real HF ``generate`` rollouts on every process and an evaluation on the main process only,
    under FSDP: transformers syncs every decoding step across processes for FSDP-managed models,
    which hung the main-only evaluation until the gathered phase unmarked them."""
    exe = Path(sys.executable).parent
    out = tmp_path / "run"
    cmd = [str(exe / "accelerate"), "launch", "--config_file", str(CONFIG), "--main_process_port",
           str(_free_port()), str(exe / "selfdistill"), "train", "smoke", "method=purified-opsd",
           f"output_dir={out}", "logging.progress=false", "max_steps=2", "eval.every=1", "eval.data=gsm8k-100",
           "eval.limit=2", "eval.k=1", "eval.max_new_tokens=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["eval/problems"] == 2 for r in rows)
    assert len((out / "eval" / "step-000002.jsonl").read_text().splitlines()) == 2
    assert (out / "final" / "adapter_model.safetensors").is_file()


def test_output_layers_taken_inside_gathered_outlive_the_phase():
    """Inside ``Teacher.gathered()`` an output layer is a copy (FSDP frees the gathered storage when
    the phase ends, and the loss phase still projects with the layer), equal to the weights the
    teacher scores with, one copy per phase; outside it the layer is the weights themselves."""
    from selfdistill.models import load_model, make_teacher

    model, _ = load_model("tiny-random", dtype="float32")
    ema = make_teacher(model, "ema", rate=0.5)
    head = model.get_output_embeddings().weight
    assert ema.output_layer().weight_V_H.data_ptr() != head.data_ptr()  # EMA values swapped in
    live = make_teacher(model, "live")
    assert live.output_layer().weight_V_H.data_ptr() == head.data_ptr()
    with live.gathered():
        layer = live.output_layer()
        assert layer.weight_V_H.data_ptr() != head.data_ptr()
        assert live.output_layer() is layer
        torch.testing.assert_close(layer.weight_V_H, head.detach(), rtol=0, atol=0)
    with live.gathered():
        assert live.output_layer() is not layer  # a new phase, a new copy (the weights moved)
