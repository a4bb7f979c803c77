"""Run the `selfdistill` CLI in this process with one fault injected (reliability tests only).

    python tests/reliability/faulty_train.py train smoke ... output_dir=D
    SELFDISTILL_FAULT="kill@STEP:POINT"    SIGKILL this process while checkpoint STEP is written
    SELFDISTILL_FAULT="slow@SECONDS"       sleep SECONDS before each checkpoint file is written, so
                                           an outside SIGKILL lands inside a write on any machine

POINT (in the order a checkpoint is written by selfdistill.train.checkpoint.save):
    mid-file       half of trainable.pt is on disk, nothing else
    before-marker  every blob and state.json written, no COMPLETE marker yet
    before-rename  COMPLETE written and fsynced, the temp folder not yet renamed into place
    after-rename   the new checkpoint is in place; one file of the oldest checkpoint (the one
                   pruning removes) is deleted, as if rmtree was cut short

The hooks wrap the checkpoint module's own functions from outside; the product code is unchanged.
A hook that never fires lets the run finish normally (exit 0), which the test treats as a failure.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

POINTS = ("mid-file", "before-marker", "before-rename", "after-rename")


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_slow(seconds: float) -> None:
    """Delay every torch.save made while a checkpoint is written (the temp folder then lives long
    enough for an outside kill to find it, instead of a few milliseconds on a fast disk)."""
    import time

    import torch

    real_torch_save = torch.save

    def torch_save(obj, f, *args, **kw):
        if isinstance(f, (str, Path)) and Path(f).parent.name.startswith(".tmp-"):
            time.sleep(seconds)
        return real_torch_save(obj, f, *args, **kw)

    torch.save = torch_save


def install(spec: str) -> None:
    """Patch selfdistill.train.checkpoint so ``spec`` ("kill@STEP:POINT") kills the process."""
    import torch

    from selfdistill.train import checkpoint as ck

    kind, _, rest = spec.partition("@")
    if kind == "slow":
        return install_slow(float(rest))
    step_text, _, point = rest.partition(":")
    if kind != "kill" or point not in POINTS:
        raise SystemExit(f"bad SELFDISTILL_FAULT {spec!r}: expected kill@STEP:{'|'.join(POINTS)} "
                         "or slow@SECONDS")
    target = int(step_text)
    saving = {"step": None}
    real_save, real_finalize, real_fsync, real_prune = ck.save, ck.finalize, ck._fsync, ck.prune
    real_torch_save = torch.save

    def active(name: str) -> bool:
        return point == name and saving["step"] == target

    def save(root, step, blobs, state, *, keep_last):
        saving["step"] = step
        try:
            return real_save(root, step, blobs, state, keep_last=keep_last)
        finally:
            saving["step"] = None

    def torch_save(obj, f, *args, **kw):
        if active("mid-file") and isinstance(f, (str, Path)) and Path(f).name == "trainable.pt":
            buf = io.BytesIO()
            real_torch_save(obj, buf, *args, **kw)
            data = buf.getvalue()
            with open(f, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            _die()
        return real_torch_save(obj, f, *args, **kw)

    def finalize(tmp, final):
        if active("before-marker"):
            _die()
        return real_finalize(tmp, final)

    def fsync(path):
        real_fsync(path)
        if active("before-rename") and Path(path).name == ck.MARKER:
            _die()

    def prune(root, keep_last):
        if active("after-rename"):
            steps = ck.complete_steps(root)
            if len(steps) > keep_last:
                victim = ck.step_dir(root, steps[0])
                first = sorted(p for p in victim.iterdir() if p.name != ck.MARKER)[0]
                first.unlink()
            _die()
        return real_prune(root, keep_last)

    ck.save, ck.finalize, ck._fsync, ck.prune = save, finalize, fsync, prune
    torch.save = torch_save


def main() -> int:
    spec = os.environ.get("SELFDISTILL_FAULT")
    if spec:
        install(spec)
    from selfdistill.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
