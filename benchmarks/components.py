"""The CPU speed and memory pieces of docs/training.md "Speed on a CPU", each on or off, on one model:

    .venv/bin/python benchmarks/components.py [--model smollm2-135m] [--threads 2] [--repeats 3] [--dtype auto]

1. rollout sampler: HFGenerate(sampler="topk") vs "hf", 8 prompts x 128 sampled tokens (T 1.1,
   top-p 0.95, top-k 20), generation forced to the cap; best wall seconds of --repeats.
2. LoRA compute: student forward + backward of one 325-token row through ``response_hidden``,
   mixed precision (adapter matmuls in the weights' bf16/fp16) vs float32 adapter compute; best of
   --repeats. With float32 weights there is nothing to mix: one row, marked so.
3. sampling memory: peak resident memory added by one prefill (1 new token) with the output
   layer's input made contiguous (default) vs HF's strided slice; and the exact-restore merge:
   seconds for merge + restore and the share of weight entries it had to save.
4. shape reuse: 20 student forward + backward passes over rows of random lengths (200-460
   tokens, 128 of them response), passes right-padded to a multiple of 32 columns
   (``set_length_multiple``, the trainer's default) vs unpadded: mean seconds per pass and the
   resident memory the 20 passes leave behind (oneDNN keeps what it built for each new shape).
   Padded runs first, so the unpadded run cannot reuse its shapes.
5. adapter off: milliseconds to enter and leave peft's ``disable_adapter()`` vs
   ``models.lora.adapter_disabled`` (every fixed-teacher pass and output-weight lookup of a LoRA
   run does it once); best of --repeats x 10.
6. forward-call cost: one no-grad pass of one row (adapter off) at 2, 129 and 385 columns, best
   of --repeats x 5: the fixed cost per call and the cost per column that
   ``train.passes.CALL_COLUMNS`` is derived from.

LoRA r 64 on all seven projections with B ~ N(0, 1e-3) (a trained-looking adapter), weights in the
hardware's dtype (auto): bfloat16 only where this CPU computes it natively, else float32
(``--dtype`` forces one). The output is headed by the machine record.
Peak memory uses /proc/self/clear_refs (Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

import selfdistill.rollout.hf_generate as hf_generate
from generate import QUESTIONS, _NeverStops  # benchmarks/ is the script's directory
from machine import add_dtype_option, header, machine, record
from selfdistill.models import (
    ForwardInputs,
    LoraSettings,
    apply_lora,
    load_model,
    merged_adapter,
    response_hidden,
    set_length_multiple,
)
from selfdistill.models.lora import _AUTOCAST_ATTR, _delta, adapter_disabled
from selfdistill.rollout import HFGenerate, SamplingParams


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rss_gb() -> tuple[float, float]:
    """(peak since the last reset, current) resident memory in GB."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Vm"))
    return int(status["VmHWM"].split()[0]) / 1e6, int(status["VmRSS"].split()[0]) / 1e6


def prefill_peak_gb(backend, prompts) -> float:
    backend.generate(prompts, SamplingParams(max_new_tokens=1, seed=0))  # warm-up: heap, caches
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current resident size
    before = rss_gb()[1]
    backend.generate(prompts, SamplingParams(max_new_tokens=1, seed=0))
    return rss_gb()[0] - before


def shape_rows(lora, passes: int = 20) -> list[tuple[str, str]]:
    """Component 4: mean seconds per fwd+bwd pass and resident GB left, padded vs unpadded."""
    import random

    rows = []
    for multiple in (32, 1):
        set_length_multiple(lora, multiple)
        rng = random.Random(0)
        before, times = rss_gb()[1], []
        for _ in range(passes):
            L = rng.randint(200, 460)
            ids = torch.randint(100, 40000, (1, L))
            start = time.perf_counter()
            hidden = response_hidden(lora, ForwardInputs(ids, torch.ones_like(ids), torch.arange(L)[None], L - 128, 128))
            hidden.float().square().mean().backward()
            times.append(time.perf_counter() - start)
        lora.zero_grad(set_to_none=True)
        rows.append((f"{passes} fwd+bwd passes of random length, length_multiple={multiple}",
                     f"{sum(times) / passes:.3f} s per pass, +{rss_gb()[1] - before:.2f} GB resident after"))
    set_length_multiple(lora, 1)
    return rows


def call_cost_rows(lora, repeats: int) -> list[tuple[str, str]]:
    """Component 6: ms per no-grad one-row pass with the adapter off, by column count."""
    rows = []
    with torch.no_grad(), adapter_disabled(lora):
        for L in (2, 129, 385):
            ids = torch.randint(100, 40000, (1, L), generator=torch.Generator().manual_seed(L))
            args = ForwardInputs(ids, torch.ones_like(ids), torch.arange(L)[None], 1, L - 1)
            response_hidden(lora, args)  # warm-up: this shape's kernels

            def five(args=args):
                for _ in range(5):
                    response_hidden(lora, args)

            rows.append((f"no-grad pass, 1 row x {L} columns, adapter off", f"{best(five, repeats) * 200:.1f} ms"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    add_dtype_option(p)
    a = p.parse_args()
    hw = machine(a.dtype)
    torch.set_num_threads(a.threads)
    model, tok = load_model(a.model, dtype=hw.dtype)
    lora = apply_lora(model, LoraSettings())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1e-3)
    prompts = [tok.apply_chat_template([{"role": "user", "content": QUESTIONS[i]}], add_generation_prompt=True)
               ["input_ids"] for i in range(8)]
    rows = []

    params = SamplingParams(temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=128, seed=1)
    for sampler in ("topk", "hf"):
        backend = HFGenerate(lora, _NeverStops(tok), sampler=sampler)
        rows.append((f"rollout 8 x 128 tokens, sampler={sampler}", f"{best(lambda: backend.generate(prompts, params), a.repeats):.2f} s"))

    ids = torch.randint(100, 40000, (1, 325), generator=torch.Generator().manual_seed(0))
    batch = ForwardInputs(ids, torch.ones_like(ids), torch.arange(325)[None], 197, 128)
    direction = torch.randn(1, 128, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    lora.train()
    # apply_lora sets the autocast marker only for bf16/fp16 weights: float32 has no mixed variant
    saved = getattr(lora, _AUTOCAST_ATTR, None)
    for mixed in (True, False) if saved is not None else (False,):
        if not mixed and saved is not None:
            delattr(lora, _AUTOCAST_ATTR)

        def fwd_bwd():
            (response_hidden(lora, batch).float() * direction).sum().backward()

        fwd_bwd()
        label = f"lora mixed_precision={mixed}" if saved is not None else f"{hw.dtype} weights, no mixed variant"
        rows.append((f"student fwd+bwd, 325-token row, {label}", f"{best(fwd_bwd, a.repeats):.2f} s"))
    if saved is not None:
        setattr(lora, _AUTOCAST_ATTR, saved)
    lora.zero_grad(set_to_none=True)
    rows += shape_rows(lora)
    lora.eval()

    for name, switch in (("peft disable_adapter()", lora.disable_adapter), ("adapter_disabled", lambda: adapter_disabled(lora))):
        def toggle(switch=switch):
            for _ in range(10):
                with switch():
                    pass

        rows.append((f"adapter off, enter + leave: {name}", f"{best(toggle, a.repeats) * 100:.1f} ms"))
    rows += call_cost_rows(lora, a.repeats)

    backend = HFGenerate(lora, tok)
    rows.append(("prefill peak memory added, contiguous head input", f"{prefill_peak_gb(backend, prompts):.2f} GB"))
    real = hf_generate._contiguous_head_input
    hf_generate._contiguous_head_input = lambda model: contextlib.nullcontext()
    try:
        rows.append(("prefill peak memory added, HF's strided slice", f"{prefill_peak_gb(backend, prompts):.2f} GB"))
    finally:
        hf_generate._contiguous_head_input = real

    def merge_restore():
        with torch.no_grad(), merged_adapter(lora):
            pass

    rows.append(("exact-restore merge + restore", f"{best(merge_restore, a.repeats):.2f} s"))
    from peft.tuners.lora import LoraLayer

    lost = total = 0
    with torch.no_grad():
        for module in (m for m in lora.modules() if isinstance(m, LoraLayer)):
            w = module.get_base_layer().weight
            d = _delta(module, w.dtype)
            lost += int(((w + d - d) != w).sum())
            total += w.numel()
    rows.append(("weight entries the merge saves (W + D - D != W)", f"{lost / total:.2%} of {total:,}"))

    print(header(record(hw, a.dtype)) + "\n")
    print(f"model {a.model}, {hw.dtype}, LoRA r 64 (B ~ 1e-3), {a.threads} threads, best of {a.repeats}\n")
    print("| piece | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
