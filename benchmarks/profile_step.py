"""Where the time of one training step goes: torch.profiler over the second step of a row at
the step benchmark's settings (benchmarks/step.py; the CPU-settings rows: 1-rollout micro-batches,
no gradient checkpointing), the top operators by self CPU time, at the hardware's dtype (auto):
bfloat16 only where this CPU computes it natively, else float32 (``--dtype`` forces one).

    .venv/bin/python benchmarks/profile_step.py [opsd|purified-opsd|opsd-unpadded|...] [--threads 1] [--rows 25] \
        [--dtype auto]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from machine import add_dtype_option, header, machine, record  # benchmarks/ is the script's directory
from step import COMMON, CONFIGS  # benchmarks/step.py


def main() -> None:
    from selfdistill.train import load_config
    from selfdistill.train.loop import Trainer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default="opsd", help="a selfdistill row of step.py without "
                   "the selfdistill- prefix (opsd, purified-opsd, purified-opsd-unshared, ...)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=25)
    add_dtype_option(p)
    a = p.parse_args()
    hw = machine(a.dtype)
    torch.set_num_threads(a.threads)
    print(header(record(hw, a.dtype)) + "\n", flush=True)
    with tempfile.TemporaryDirectory() as out:
        recipe, micro, checkpointing, extra = CONFIGS[f"selfdistill-{a.config}"]
        cfg = load_config(recipe, COMMON + [f"model={a.model}", f"model.dtype={hw.dtype}", "max_steps=2",
                                              f"output_dir={out}",
                                              "objective.beta=0", f"micro_batch_size={micro}",
                                              f"model.gradient_checkpointing={str(checkpointing).lower()}", *extra])
        trainer = Trainer(cfg)
        trainer.train_step(1)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            row = trainer.train_step(2)
        trainer.close()
    print({k: round(v, 2) for k, v in row.items() if k.startswith("time/")})
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
