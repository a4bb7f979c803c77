"""The machine record every benchmark prints above its table and writes into the JSON it emits.

A timing means nothing without the CPU it ran on and the dtype it ran at: the same step is bf16
on a CPU with native bf16 and float32 on a plain AVX2 one (``selfdistill.hardware.resolve``), and
the two differ by far more than any change being measured. So each script takes ``--dtype``
(default ``auto``), resolves it once here, runs every row at that dtype, and prints this block.

``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` are recorded when set, because a bf16 CPU capped
to AVX2 by them reports its real processor name but computes like an AVX2 CPU.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from selfdistill.hardware import DTYPE_CHOICES, Hardware, resolve

def add_dtype_option(parser) -> None:
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="weight/compute dtype of every row; auto = the hardware's (bfloat16 only "
                             "where the CPU computes it natively, else float32)")


def machine(dtype: str = "auto", device: str = "cpu") -> Hardware:
    """Resolve once per run. The benchmarks measure the CPU, so the device defaults to it."""
    return resolve(dtype, device)


def record(hw: Hardware, requested: str) -> dict:
    """``Hardware.describe()`` plus what else a reader needs to repeat the run (JSON-ready).

    Call after ``torch.set_num_threads``: ``describe()`` reads the thread count at call time.
    """
    return {**hw.describe(), "requested_dtype": requested,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(shlex.quote(x) for x in [os.path.relpath(sys.executable), *sys.argv])}


def header(rec: dict) -> str:
    """The record as the markdown block docs/benchmarks/*.md keep above each table."""
    env = " ".join(f"{k}={v}" for k, v in rec["isa_caps"].items()) or "none"
    lines = ["machine",
             f"- processor: {rec['processor']}",
             f"- cpu_capability: {rec['cpu_capability']} (ISA caps in the environment: {env})",
             f"- native_bf16: {'yes' if rec['native_bf16'] else 'no'}",
             f"- dtype: {rec['dtype']} (--dtype {rec['requested_dtype']}: {rec['reason']})",
             f"- threads: {rec['threads']} torch threads, device {rec['device']}, torch {rec['torch']}",
             f"- date: {rec['date']}",
             f"- command: {rec['command']}"]
    if rec.get("warning"):
        lines.append(f"- warning: {rec['warning']}")
    return "\n".join(lines)
