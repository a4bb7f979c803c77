"""What each dtype costs on this CPU: one forward+backward of a SmolLM2-sized MLP matmul
(256 x 576 by 576 x 1536) in float32, bf16 weights, and float32 weights under bf16 autocast,
best of --repeats, with the machine record and what ``dtype=auto`` picks here.

    .venv/bin/python benchmarks/precision.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/precision.py

The second line makes a bf16-capable CPU compute like an AVX2-only one (bf16 emulated), which is
how the project reproduces the AVX2 path on its own machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from machine import header, machine, record  # benchmarks/ is the script's directory


def fwd_bwd_ms(dtype: torch.dtype, autocast: bool, rows: int, hidden: int, inner: int, repeats: int) -> float:
    """Best wall time in ms of ``(x @ w).sum().backward()`` over ``repeats`` (after 3 warm-ups)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, hidden, generator=g).to(dtype).requires_grad_()
    w = torch.randn(hidden, inner, generator=g).to(dtype).requires_grad_()
    best = float("inf")
    for i in range(repeats + 3):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = x @ w
        y.float().sum().backward()
        if i >= 3:
            best = min(best, time.perf_counter() - t)
    return 1000 * best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=None, help="also write the table and machine record here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    hw = machine("auto")
    rec = record(hw, "auto")
    shape = dict(rows=256, hidden=576, inner=1536, repeats=a.repeats)
    rows = {
        "float32": fwd_bwd_ms(torch.float32, False, **shape),
        "bfloat16 weights": fwd_bwd_ms(torch.bfloat16, False, **shape),
        "float32 + bf16 autocast": fwd_bwd_ms(torch.float32, True, **shape),
    }
    print(header(rec) + "\n")
    print("| compute | fwd+bwd ms | x float32 |\n|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.2f} | {ms / rows['float32']:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": rec, "ms": rows}, f, indent=2)


if __name__ == "__main__":
    main()
