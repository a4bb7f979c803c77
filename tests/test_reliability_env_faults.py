"""Environment faults: unwritable output_dir, disk full at a checkpoint, hub unreachable.

Each gives a message (no traceback) and loses nothing: the checkpoint before a failed write is
intact and the run resumes from it with every step logged exactly once.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reliability.guards import forbid_model_loading, run_cli
from safetensors.torch import load_file

from selfdistill.train import checkpoint

ROOT = Path(__file__).resolve().parent.parent
FAST = ["method=opsd", "max_new_tokens=4", "data.limit=4", "checkpoint.every=1", "keep_last=2",
        "logging.progress=false", "logging.tensorboard=false", "rewards.for_all=false"]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("where", ["under_a_file", "sysfs"])
def test_unwritable_output_dir_fails_before_data_and_model(where, tmp_path, capsys, monkeypatch):
    calls = forbid_model_loading(monkeypatch)
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        out, phrase = tmp_path / "file" / "run", "is a file, not a folder"
    else:  # a place even root cannot write (sysfs)
        out, phrase = Path("/sys/selfdistill-run"), "is not writable"
    code, _, err = run_cli(["train", "smoke", f"output_dir={out}", *FAST], capsys)
    assert code == 2 and calls == []
    assert f"output_dir={out}" in err and phrase in err and "Traceback" not in err


def test_disk_full_at_a_checkpoint_keeps_the_previous_one_and_resumes(tmp_path, capsys, monkeypatch):
    real_save = torch.save
    full_at = checkpoint.step_dir(Path("x"), 2).name  # step-000002

    def disk_full(obj, f, *args, **kw):
        if isinstance(f, (str, Path)) and f".tmp-{full_at}-" in str(f) and Path(f).name == "optimizer.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kw)

    out, ref = tmp_path / "run", tmp_path / "reference"
    monkeypatch.setattr(torch, "save", disk_full)
    code, _, err = run_cli(["train", "smoke", "max_steps=3", f"output_dir={out}", *FAST], capsys)
    assert code == 1, err
    assert "Traceback" not in err
    for phrase in ("could not write the checkpoint of step 2", "No space left on device",
                   "step-000001 is intact", "resume=true"):
        assert phrase in err, err
    ckpts = out / "checkpoints"
    assert checkpoint.complete_steps(ckpts) == [1]
    checkpoint.verify(checkpoint.step_dir(ckpts, 1))
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-000001"]  # no temp folder left
    assert [r["step"] for r in _rows(out)] == [1, 2]  # step 2 ran but was never saved

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    code, _, err = run_cli(["train", "smoke", "max_steps=3", "resume=true", f"output_dir={out}", *FAST], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "smoke", "max_steps=3", f"output_dir={ref}", *FAST], capsys)
    assert code == 0, err
    rows, ref_rows = _rows(out), _rows(ref)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
    w, w_ref = (load_file(d / "final" / "adapter_model.safetensors") for d in (out, ref))
    assert all(torch.equal(w[k], w_ref[k]) for k in w_ref)


def _offline(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "selfdistill", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("kind", ["model", "dataset"])
def test_hub_unreachable_says_what_to_do(kind, tmp_path):
    out = tmp_path / "run"
    key = "model=no-such-org/no-such-model" if kind == "model" else "data=no-such-org/no-such-dataset"
    proc = _offline(["train", "smoke", key, f"output_dir={out}", *FAST])
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"could not fetch the {kind}" in proc.stderr
    assert "local" in proc.stderr  # how to point at a local copy
    assert not out.exists()
