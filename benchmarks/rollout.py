"""Rollout tokens/s and step time: the vLLM backend (a colocated vLLM engine) vs the HF backend
(transformers ``generate``), side by side in one run.

    .venv/bin/python benchmarks/rollout.py [--lengths 128,512,1024] [--step-steps 3] [--dtype auto]

Setup (the step benchmark's, docs/benchmarks/step.md): SmolLM2-135M-Instruct (offline alias),
LoRA r 64 alpha 128 on every projection (as the trainer wraps it), the OPSD student prompts of the
first 8 GSM8K problems of ``gsm8k-100``, 1 rollout each, sampling T 1.1 / top-p 0.95 / top-k 20,
one seed, the hardware's dtype (``--dtype``), 2 torch threads, CPU. Responses stop at the eos as in
training, so a cap of 512 or 1024 tokens is a cap, not a length: the table gives the mean length
and the share that hit the cap, and tokens/s counts the tokens actually sampled (HF ``generate``
keeps computing a batch's finished rows until the last one ends; vLLM drops them).

Per backend, in its own process: build the backend (vLLM: engine start and the first weight load,
timed apart), one 16-token warm-up call, then one timed ``generate`` per length. Then the step
rows: ``selfdistill-opsd`` of benchmarks/step.py (CPU settings) with ``rollout.backend`` hf and
vllm, ``--step-steps`` steps, the first dropped, median of the rest; the vLLM step includes the
weight load after the optimizer step (``load_policy``), which the HF backend does not need.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import add_dtype_option, header, machine, record  # benchmarks/ is the script's directory

BACKENDS = ("hf", "vllm")


def _prompts(tokenizer, model, n: int) -> list[list[int]]:
    from selfdistill.contexts import Renderer
    from selfdistill.data import load_examples
    from selfdistill.train import load_config
    from selfdistill.train.setup import context_config

    cfg = load_config("opsd", [])
    renderer = Renderer(tokenizer, context_config(cfg.contexts, model=model))
    return [renderer.prompt_ids("student", ex) for ex in load_examples("gsm8k-100", limit=n)]


def rollouts(backend_name: str, model_name: str, dtype: str, lengths: list[int], prompts: int) -> dict:
    """One backend's timings: start-up, first weight load, and per length the sampled tokens."""
    import torch

    from selfdistill.models import LoraSettings, apply_lora, load_model
    from selfdistill.rollout import SamplingParams, make_backend

    model, tokenizer = load_model(model_name, dtype=dtype)
    model = apply_lora(model, LoraSettings(r=64, alpha=128))
    ids = _prompts(tokenizer, model, prompts)
    t = time.perf_counter()
    opts = {} if backend_name == "hf" else dict(gpu_memory_utilization=0.3, sleep=True, dtype=dtype,
                                                device=torch.device("cpu"), seed=0)
    backend = make_backend(backend_name, model, tokenizer, **opts)
    out = {"start_s": time.perf_counter() - t, "load_s": None, "lengths": {}}
    if hasattr(backend, "load_policy"):
        out["load_s"] = backend.load_policy(model)
    backend.generate(ids, SamplingParams(temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=16, seed=1))
    for cap in lengths:
        params = SamplingParams(temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=cap, seed=0)
        t, cpu = time.perf_counter(), time.process_time()
        samples = backend.generate(ids, params)
        wall = time.perf_counter() - t
        tokens = sum(s.num_tokens for s in samples)
        out["lengths"][str(cap)] = {"wall_s": wall, "cpu_s": time.process_time() - cpu, "tokens": tokens,
                                    "mean_len": tokens / len(samples),
                                    "truncated": sum(s.truncated for s in samples) / len(samples)}
    if hasattr(backend, "close"):
        backend.close()
    return out


def step_times(backend_name: str, model_name: str, dtype: str, steps: int) -> list[dict]:
    from step import run_selfdistill  # the step benchmark's OPSD row, CPU settings

    with tempfile.TemporaryDirectory() as out:
        return run_selfdistill("opsd", model_name, steps, Path(out) / "run", 1, False, dtype,
                               (f"rollout.backend={backend_name}",))


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    if a.kind == "rollout":
        data = rollouts(a.backend, a.model, a.dtype, [int(x) for x in a.lengths.split(",")], a.prompts)
    else:
        data = {"rows": step_times(a.backend, a.model, a.dtype, a.step_steps)}
    Path(a.result).write_text(json.dumps(data))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="128,512,1024", help="max_new_tokens caps, comma-separated")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--step-steps", type=int, default=3, help="steps per step row (first dropped); 0 = no step rows")
    p.add_argument("--threads", type=int, default=2)
    add_dtype_option(p)
    p.add_argument("--json", help="also write the results and the machine record to this file")
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.kind:
        child(a)
        return 0
    import torch

    hw = machine(a.dtype)
    torch.set_num_threads(a.threads)
    rec = record(hw, a.dtype)
    rec["load_average_start"] = os.getloadavg()[0]
    print(f"rollout.py: {hw.line()}", file=sys.stderr)
    jobs = [("rollout", b) for b in BACKENDS] + ([("step", b) for b in BACKENDS] if a.step_steps else [])
    results: dict = {}
    for kind, backend in jobs:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            res = Path(f.name)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--kind", kind, "--backend", backend, "--result", str(res),
                               "--model", a.model, "--dtype", hw.dtype, "--threads", str(a.threads),
                               "--lengths", a.lengths, "--prompts", str(a.prompts), "--step-steps", str(a.step_steps)],
                              capture_output=True, text=True, env=os.environ)
        data = json.loads(res.read_text()) if res.exists() and res.stat().st_size else {"error": proc.stderr[-600:]}
        res.unlink(missing_ok=True)
        data["wall_s"] = time.perf_counter() - start
        results[f"{kind}-{backend}"] = data
        print(f"{kind} {backend}: {'error ' + data['error'] if data.get('error') else 'ok'} "
              f"({data['wall_s']:.0f} s)", file=sys.stderr)
    rec["load_average_end"] = os.getloadavg()[0]
    print(header(rec))
    print(f"- load average (1 min): {rec['load_average_start']:.1f} at the start, "
          f"{rec['load_average_end']:.1f} at the end\n")
    print(table(results, a, hw.dtype))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": rec, "results": results}, indent=2) + "\n")
    return 0


def table(results: dict, a, dtype: str) -> str:
    fmt = lambda v, d=2: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    hf, vl = results.get("rollout-hf", {}), results.get("rollout-vllm", {})
    lines = [f"Rollouts: model {a.model}, {dtype}, {a.prompts} prompts x 1 rollout, T 1.1 / top-p 0.95 / top-k 20, "
             f"{a.threads} torch threads",
             "", "| max_new_tokens | HF tokens/s | vLLM tokens/s | vLLM / HF | HF s (mean len, capped) "
             "| vLLM s (mean len, capped) |", "|---|---|---|---|---|---|"]
    for cap in a.lengths.split(","):
        h, v = hf.get("lengths", {}).get(cap), vl.get("lengths", {}).get(cap)
        rate = lambda r: r["tokens"] / r["wall_s"] if r else None  # noqa: E731
        ratio = rate(v) / rate(h) if h and v else None
        cell = lambda r: "failed" if not r else f"{r['wall_s']:.1f} ({r['mean_len']:.0f}, {r['truncated']:.0%})"  # noqa: E731
        lines.append(f"| {cap} | {fmt(rate(h), 1)} | {fmt(rate(v), 1)} | {fmt(ratio)}x | {cell(h)} | {cell(v)} |")
    lines += ["", f"Start-up: HF backend {fmt(hf.get('start_s'))} s; vLLM engine {fmt(vl.get('start_s'))} s + "
              f"first weight load {fmt(vl.get('load_s'))} s."]
    for name in ("rollout-hf", "rollout-vllm"):
        if results.get(name, {}).get("error"):
            lines.append(f"{name} failed: {results[name]['error']}")
    if a.step_steps:
        lines += ["", f"Steps: selfdistill-opsd of benchmarks/step.py (8 prompts x 128 tokens, LoRA r 64, micro-batches "
                  f"of 1), {a.step_steps} steps, first dropped, medians", "",
                  "| rollout.backend | step s | rollout s | score s | loss s | step / hf |", "|---|---|---|---|---|---|"]
        base = None
        for backend in BACKENDS:
            data = results.get(f"step-{backend}", {})
            if data.get("error"):
                lines.append(f"| {backend} | failed: {data['error'][-200:]} | | | | |")
                continue
            rows = data.get("rows", [])[1:]
            med = {k: statistics.median(r[k] for r in rows) if rows else None
                   for k in ("step_s", "rollout_s", "score_s", "loss_s")}
            base = base or med["step_s"]
            ratio = med["step_s"] / base if base and med["step_s"] else None
            lines.append(f"| {backend} | {fmt(med['step_s'])} | {fmt(med['rollout_s'])} | {fmt(med['score_s'])} "
                         f"| {fmt(med['loss_s'])} | {fmt(ratio)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
