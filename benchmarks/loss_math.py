"""Seconds of the loss math of one chunk, alone, at a training step's shapes: what a step spends
outside the model's own passes (docs/benchmarks/step.md, "time outside the model's passes").

    .venv/bin/python benchmarks/loss_math.py [--positions 256] [--vocab 49152] [--chunks 4] [--threads 2] \
        [--allocator keep|system] [--dtype auto]

Defaults are the step benchmark's: 256-position chunks of SmolLM2-135M (V 49,152, H 576), logits
in the hardware's dtype (auto): bfloat16 only where this CPU computes it natively, else float32
(``--dtype`` forces one), 4 chunks per step (8 prompts x 128 tokens). Random logits; medians of ``--repeats`` runs
after one warm-up. The rows are the pieces `train.microbatch.compute_loss` runs per chunk.
``--allocator keep`` (default) is what a training run uses on a CPU (``cpu_allocator=keep``,
``selfdistill.train.allocator``); ``system`` leaves glibc's defaults.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from machine import add_dtype_option, header, machine, record  # benchmarks/ is the script's directory
from selfdistill import objectives as obj
from selfdistill.objectives.divergences import kl_with_logit_grad
from selfdistill.train.passes import entropy


def seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--positions", type=int, default=256)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--hidden", type=int, default=576)
    p.add_argument("--chunks", type=int, default=4, help="chunks per training step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--allocator", choices=("keep", "system"), default="keep")
    add_dtype_option(p)
    a = p.parse_args()
    hw = machine(a.dtype)
    if a.allocator == "keep":
        from selfdistill.train.allocator import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    hidden = {k: torch.randn(a.positions, a.hidden, generator=g).to(hw.torch_dtype)
              for k in ("teacher", "refonly", "anchor", "student")}
    weight = (torch.randn(a.vocab, a.hidden, generator=g) * 0.05).to(hw.torch_dtype)
    lg = {k: obj.project(v, weight) for k, v in hidden.items()}
    student = lg["student"].float().requires_grad_()
    target = obj.purified_target_logprobs(lg["teacher"], lg["refonly"], lg["anchor"])

    def divergence():  # what the chunked loss runs for beta 0 on the full vocabulary
        kl_with_logit_grad(lg["student"], target, beta=0.0, token_clip=0.05)

    def divergence_autograd():  # the general path (0 < beta < 1, top-k supports) for comparison
        d = obj.generalized_jsd(student, target, beta=0.0, token_clip=0.05)
        torch.autograd.grad(d.sum(), student)

    rows = [
        ("output projection (one role)", lambda: obj.project(hidden["teacher"], weight), "model"),
        ("divergence + logit gradient (closed form)", divergence, "both"),
        ("same through autograd (not used at beta 0)", divergence_autograd, "neither"),
        ("OPSD target (log_softmax)", lambda: obj.raw_target_logprobs(lg["teacher"]), "opsd"),
        ("teacher entropy", lambda: entropy(lg["teacher"]), "both"),
        ("Purified target", lambda: obj.purified_target_logprobs(lg["teacher"], lg["refonly"], lg["anchor"]),
         "purified"),
        ("PMI diagnostics", lambda: obj.pmi_diagnostics(lg["teacher"], lg["refonly"], lg["student"]), "purified"),
    ]
    print(header(record(hw, a.dtype)) + "\n")
    print(f"{a.positions} positions x V {a.vocab}, {hw.dtype} logits, {a.threads} threads, allocator {a.allocator}, "
          f"{a.chunks} chunks per step, median of {a.repeats}\n")
    print("| piece | s per chunk | s per step | counted for |")
    print("|---|---|---|---|")
    totals = {"opsd": 0.0, "purified": 0.0}
    for name, fn, who in rows:
        s = seconds(fn, a.repeats)
        print(f"| {name} | {s:.3f} | {s * a.chunks:.2f} | {who} |")
        for arm in totals:
            if who in ("both", arm):
                totals[arm] += s * a.chunks
    print(f"\nloss math outside the model per step: OPSD {totals['opsd']:.2f} s, "
          f"Purified OPSD {totals['purified']:.2f} s")


if __name__ == "__main__":
    main()
