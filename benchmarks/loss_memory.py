"""Peak memory and time of the Purified OPSD loss (forward + backward): direct vs chunked.

Direct materialises the four logit sets [B, T, V] (student, teacher, refonly, anchor); chunked
(`selfdistill.objectives.chunked_distill_loss`) projects `--chunk-size` positions at a time.
Each cell runs in a fresh subprocess; memory is the growth of peak RSS (ru_maxrss) over the
baseline taken after the inputs exist, time is wall clock of one forward+backward after a tiny
warm-up. B = 1, the hardware's dtype (auto): bfloat16 only where this CPU computes it natively,
else float32 (``--dtype`` forces one; the results in docs/benchmarks/loss_memory.md are
``--dtype float32``), random hidden states, output weight frozen (the LoRA setting). The dtype is
resolved once and handed to every cell by name; the cells inherit the environment (ISA caps
included) and a cell that resolves another machine is reported as an error. The table is headed
by the machine record.

A direct cell runs only if its estimated need (bytes per logit element measured on the largest
direct cell already run at the same V, times B*T*V) fits in `--mem-fraction` of MemAvailable;
otherwise the table says "not run" with the estimate.

    python benchmarks/loss_memory.py [--quick] [--chunk-size 1024] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from machine import add_dtype_option, header, machine, record  # benchmarks/ is the script's directory

TS = (512, 2048, 8192)
VS = (49152, 151936)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_cell(path: str, T: int, V: int, H: int, chunk_size: int, dtype: str, seed: int = 0) -> dict:
    """Runs in the subprocess: one measured forward+backward."""
    import torch

    from selfdistill.hardware import resolve
    from selfdistill.objectives import chunked_distill_loss, direct_distill_loss, make_target_fn

    hardware = resolve(dtype, "cpu", warn=False)  # the parent warned already; this is for the check
    dt = hardware.torch_dtype
    torch.manual_seed(seed)
    fn = make_target_fn("purified", beta=1.0, clip=10.0)
    div_kw = dict(beta=0.5)

    def inputs(t: int, v: int):
        weight = (torch.randn(v, H) * (3.0 / H**0.5)).to(dt)
        student = torch.randn(1, t, H).to(dt).requires_grad_()
        hidden = {r: torch.randn(1, t, H).to(dt) for r in ("teacher", "refonly", "anchor")}
        return student, weight, hidden, torch.ones(1, t)

    def step(student, weight, hidden, mask):
        kw = dict(target_hidden=hidden, target_fn=fn, mask_B_T=mask, divergence_kwargs=div_kw)
        if path == "direct":
            out = direct_distill_loss(student, weight, **kw)
        else:
            out = chunked_distill_loss(student, weight, chunk_size=chunk_size, **kw)
        out.loss.backward()
        return float(out.loss.detach())

    step(*inputs(8, 512))  # warm-up: kernels, allocator, autograd
    args = inputs(T, V)
    base = _peak_rss_bytes()
    t0 = time.perf_counter()
    loss = step(*args)
    seconds = time.perf_counter() - t0
    return {"peak_bytes": _peak_rss_bytes() - base, "seconds": seconds, "loss": loss,
            "hardware": hardware.describe()}


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def spawn(path: str, T: int, V: int, H: int, chunk_size: int, rec: dict) -> dict:
    # the resolved dtype goes by name so the cell cannot decide differently, and os.environ so
    # ISA caps (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) apply in the cell as in the parent
    cmd = [sys.executable, __file__, "--cell", path, str(T), str(V), str(H), str(chunk_size), rec["dtype"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    cell = json.loads(proc.stdout.strip().splitlines()[-1])
    seen = cell.pop("hardware")
    diff = [f"{k} {seen[k]} (parent {rec[k]})" for k in ("dtype", "cpu_capability", "native_bf16") if seen[k] != rec[k]]
    return {"error": "cell saw another machine: " + ", ".join(diff)} if diff else cell


def gib(x: float) -> str:
    return f"{x / 2**30:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--mem-fraction", type=float, default=0.6, help="share of MemAvailable a direct cell may use")
    ap.add_argument("--quick", action="store_true", help="only T=512 (a smoke run)")
    add_dtype_option(ap)
    args = ap.parse_args()
    if args.cell:
        path, T, V, H, chunk, dtype = args.cell
        print(json.dumps(run_cell(path, int(T), int(V), int(H), int(chunk), dtype)))
        return 0
    rec = record(machine(args.dtype), args.dtype)

    ts = TS[:1] if args.quick else TS
    bytes_per_elem: dict[int, float] = {}
    rows = []
    for V in VS:
        for T in ts:
            elems = T * V
            chunked = spawn("chunked", T, V, args.hidden, args.chunk_size, rec)
            est = bytes_per_elem.get(V)
            avail = mem_available_bytes()
            if est is not None and est * elems > args.mem_fraction * avail:
                direct = {"skipped": f"not run: est. {gib(est * elems)} GiB > {args.mem_fraction:.0%} of "
                                     f"{gib(avail)} GiB available"}
            else:
                direct = spawn("direct", T, V, args.hidden, args.chunk_size, rec)
                if "peak_bytes" in direct:
                    bytes_per_elem[V] = direct["peak_bytes"] / elems
            rows.append((T, V, direct, chunked))
            print(_row(T, V, direct, chunked, bytes_per_elem.get(V)), flush=True)
    print()
    print(header(rec) + "\n")
    print(_table(rows, bytes_per_elem, args, rec["dtype"]))
    return 0


def _row(T, V, d, c, bpe) -> str:
    return f"T={T} V={V} direct={d} chunked={c} direct_bytes_per_logit={bpe}"


def _table(rows, bpe, args, dtype: str) -> str:
    head = ("| T | V | direct peak GiB | chunked peak GiB | chunked/direct mem | direct s | chunked s "
            "| chunked/direct time |\n|---|---|---|---|---|---|---|---|")
    lines = [f"B=1, H={args.hidden}, {dtype}, chunk_size={args.chunk_size}, Purified OPSD target, JSD beta=0.5", "", head]
    for T, V, d, c in rows:
        cm = gib(c["peak_bytes"]) if "peak_bytes" in c else c.get("error", "?")
        cs = f"{c['seconds']:.2f}" if "seconds" in c else "-"
        if "peak_bytes" in d:
            mem_ratio = f"{c['peak_bytes'] / d['peak_bytes']:.3f}" if "peak_bytes" in c else "-"
            time_ratio = f"{c['seconds'] / d['seconds']:.2f}" if "seconds" in c else "-"
            lines.append(f"| {T} | {V} | {gib(d['peak_bytes'])} | {cm} | {mem_ratio} | {d['seconds']:.2f} | {cs} | {time_ratio} |")
        else:
            why = d.get("skipped") or d.get("error", "?")
            ratio = "-"
            if V in bpe and "peak_bytes" in c:
                ratio = f"~{c['peak_bytes'] / (bpe[V] * T * V):.3f} (vs estimate)"
            lines.append(f"| {T} | {V} | {why} | {cm} | {ratio} | - | {cs} | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
