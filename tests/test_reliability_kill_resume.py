"""Kill and resume: `selfdistill train` is SIGKILLed at seeded points, then resumed until done.

Trials (one chain of processes on one output_dir, each resumed with resume=true):
  - SIGKILL from outside during start-up, at a seeded delay;
  - SIGKILL inside a checkpoint write at four points (tests/reliability/faulty_train.py):
    half of trainable.pt written / blobs but no COMPLETE / COMPLETE but not renamed /
    renamed but the pruning of the oldest checkpoint cut short;
  - the newest complete checkpoint corrupted on disk (one byte flipped) before a resume;
  - SIGKILL from outside the moment a checkpoint temp folder appears (polled every ~1 ms; each
    checkpoint file write is slowed by 0.3 s so the folder cannot come and go unseen);
  - SIGKILL from outside after a seeded number of logged steps plus a seeded delay.
Then the run is resumed until it exits 0 and compared with an uninterrupted run of the same
command: final adapter weights bitwise equal (CPU, seeded sampling per step), metrics.jsonl has
every step exactly once with the same losses, and every checkpoint folder left on disk verifies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfdistill.train import checkpoint

ROOT = Path(__file__).resolve().parent.parent
RUNNER = [sys.executable, str(ROOT / "tests" / "reliability" / "faulty_train.py")]
MAX_STEPS = 6
ARGS = ["train", "smoke", "method=opsd", "method.teacher=ema", f"max_steps={MAX_STEPS}",
        "checkpoint.every=1", "keep_last=2", "max_new_tokens=4", "data.limit=4",
        "logging.progress=false", "logging.tensorboard=false", "rewards.for_all=false",
        "resume=true"]
SEED = int(os.environ.get("SELFDISTILL_RELIABILITY_SEED", "20261122"))  # other seeds: more trials
# volatile metric fields (wall-clock timings)
TIMED = ("time/", "tokens_per_s")


def _env(fault: str | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("SELFDISTILL_FAULT", None)
    if fault:
        env["SELFDISTILL_FAULT"] = fault
    return env


def _start(out: Path, fault: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(RUNNER + ARGS + [f"output_dir={out}"], env=_env(fault), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 150) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _lines(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _tmp_dirs(out: Path) -> list[Path]:
    root = out / "checkpoints"
    return sorted(root.glob(".tmp-step-*")) if root.is_dir() else []


def _latest_step(out: Path) -> int:
    folder = checkpoint.latest(out / "checkpoints")
    return 0 if folder is None else int(folder.name.split("-")[1])


def _kill_when(proc: subprocess.Popen, cond, poll_s: float = 0.001, delay_s: float = 0.0) -> bool:
    """SIGKILL ``proc`` once ``cond()`` holds (then after ``delay_s``); False if it exited first."""
    while proc.poll() is None:
        if cond():
            if delay_s:
                time.sleep(delay_s)
            if proc.poll() is None:
                proc.kill()
                return True
            return False
        time.sleep(poll_s)
    return False


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(TIMED)} for r in rows]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _check_on_disk(out: Path, point: str, step: int) -> None:
    """What a kill at ``point`` of checkpoint ``step`` must leave behind."""
    final = checkpoint.step_dir(out / "checkpoints", step)
    tmp = [p for p in _tmp_dirs(out) if p.name.startswith(f".tmp-{final.name}-")]
    if point in ("mid-file", "before-marker", "before-rename"):
        assert tmp, f"no temp folder of {final.name} after a kill at {point}"
        assert not final.exists()
        assert _latest_step(out) < step, "a half-written checkpoint would be picked up"
        if point != "before-rename":
            assert not (tmp[0] / checkpoint.MARKER).exists()
            with pytest.raises(checkpoint.CheckpointError, match="half-written"):
                checkpoint.load(tmp[0])
    else:
        checkpoint.verify(final)
        assert _latest_step(out) == step


@pytest.mark.timeout(600)
def test_sigkill_at_seeded_points_then_resume_equals_uninterrupted(tmp_path):
    from selfdistill.models.aliases import tiny_random_path

    tiny_random_path()  # build the cached model once here, not in two racing child processes
    rng = random.Random(SEED)
    t0 = time.perf_counter()
    ref_dir, out = tmp_path / "reference", tmp_path / "chain"
    reference = _start(ref_dir)  # runs alongside the chain
    log: list[str] = []

    # 1. outside kill during start-up (model load / first steps); slowed checkpoint writes keep a
    # whole run (~4.5 s unslowed on an idle 2-core machine) from ending inside the 3 s delay
    proc = _start(out, "slow@0.3")
    delay = rng.uniform(0.5, 3.0)
    killed = _kill_when(proc, lambda: True, delay_s=delay)
    _finish(proc)
    log.append(f"startup kill after {delay:.2f}s: killed={killed}, metrics lines={_lines(out)}")
    assert killed

    # 2-5. kills inside checkpoint writes, at seeded steps ahead of the newest checkpoint
    for point in ("mid-file", "before-marker", "before-rename", "after-rename"):
        done = _latest_step(out)
        step = min(MAX_STEPS, done + rng.randint(1, 2))
        code, err = _finish(_start(out, f"kill@{step}:{point}"))
        assert code == -signal.SIGKILL, f"{point}@{step}: the hook never fired (exit {code}):\n{err[-2000:]}"
        _check_on_disk(out, point, step)
        log.append(f"kill@{step}:{point}: newest complete checkpoint now step {_latest_step(out)}")

    # 6. corrupt the newest complete checkpoint: the resume must skip it, not load it
    newest = checkpoint.latest(out / "checkpoints")
    _flip_byte(newest / "optimizer.pt")
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(newest)
    assert checkpoint.latest(out / "checkpoints") != newest
    log.append(f"corrupted {newest.name}/optimizer.pt; resume falls back to step {_latest_step(out)}")

    # 7. outside kill the moment a checkpoint temp folder appears (before trial 8, which may run
    # to the last checkpoint; writes slowed by 0.3 s per file:
    # on a fast disk an unslowed temp folder lives a few ms and a 1 ms poll can miss it)
    before = set(_tmp_dirs(out))
    proc = _start(out, "slow@0.3")
    killed = _kill_when(proc, lambda: bool(set(_tmp_dirs(out)) - before))
    code, err = _finish(proc)
    left = set(_tmp_dirs(out)) - before
    log.append(f"outside kill on temp folder: killed={killed}, temp folders left={[p.name for p in left]}")
    assert killed, f"exit {code}, lines {_lines(out)}, newest {_latest_step(out)}:\n{err[-3000:]}"

    # 8. outside kill after a seeded number of logged steps plus a seeded delay (>= 2 steps remain)
    metrics = out / "metrics.jsonl"
    start_lines, start_inode = _lines(out), metrics.stat().st_ino if metrics.exists() else None
    target = min(_latest_step(out) + rng.randint(1, 2), MAX_STEPS - 2)
    delay = rng.uniform(0.0, 0.5)
    proc = _start(out, "slow@0.3")  # >= 2 slowed checkpoints remain: the run cannot end in the delay
    seen = {"rewritten": False}

    def logged() -> bool:
        # a resume first rewrites metrics.jsonl (new inode) cut to the checkpoint's line count
        n = _lines(out)
        inode = metrics.stat().st_ino if metrics.exists() else None
        seen["rewritten"] |= inode != start_inode or n < start_lines
        return seen["rewritten"] and n >= target

    killed = _kill_when(proc, logged, poll_s=0.01, delay_s=delay)
    _finish(proc)
    log.append(f"outside kill at >= {target} lines + {delay:.2f}s: killed={killed}, lines={_lines(out)}")
    assert killed

    # resume to the end
    for _ in range(3):
        code, err = _finish(_start(out))
        if code == 0:
            break
    assert code == 0, err[-3000:]
    ref_code, ref_err = _finish(reference)
    assert ref_code == 0, ref_err[-3000:]

    rows, ref_rows = _rows(out), _rows(ref_dir)
    assert [r["step"] for r in rows] == list(range(1, MAX_STEPS + 1))  # every step exactly once
    assert rows == ref_rows  # same losses, KL quantiles, grad norms, rewards: exact
    w, w_ref = (load_file(d / "final" / "adapter_model.safetensors") for d in (out, ref_dir))
    assert w.keys() == w_ref.keys()
    assert all(torch.equal(w[k], w_ref[k]) for k in w)  # bitwise equal final weights
    ckpts = out / "checkpoints"
    assert checkpoint.complete_steps(ckpts) == [MAX_STEPS - 1, MAX_STEPS]
    for step in checkpoint.complete_steps(ckpts):
        checkpoint.verify(checkpoint.step_dir(ckpts, step))
    leftovers = sorted(p.name for p in ckpts.iterdir() if not p.name.startswith(checkpoint.PREFIX))
    assert leftovers == [], f"half-written folders left behind: {leftovers}"
    elapsed = time.perf_counter() - t0
    print("\n".join(log + [f"total {elapsed:.1f}s"]))
