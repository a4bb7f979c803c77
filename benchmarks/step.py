"""Seconds per training step by phase and peak memory: selfdistill OPSD, Purified OPSD, and the
same OPSD configuration in TRL's experimental SDFTTrainer, side by side.

    .venv/bin/python benchmarks/step.py [--steps 4] [--warmup 1] [--model smollm2-135m] [--dtype auto]

Setup (all rows): SmolLM2-135M-Instruct (offline alias), the hardware's dtype (auto): bfloat16
only where this CPU computes it natively, else float32 (``--dtype`` forces one), resolved once by
``selfdistill.hardware.resolve`` and used by every row, TRL's included; both tools on the CPU.
LoRA r 64 alpha 128 on every projection, 8 prompts x 1 rollout x 128 new tokens per step,
sampling T 1.1 / top-p 0.95 / top-k 20, forward KL (beta 0), fixed teacher (adapter off), lr
5e-6, max grad norm 0.1. Two memory settings, each run by both tools:

  CPU settings   (first five rows) micro-batches of 1 rollout (8 accumulated), no gradient
                 checkpointing: no left padding and the least activation memory per backward.
                 The ``-unpadded`` row is OPSD with ``model.length_multiple=1`` (passes not
                 right-padded to a multiple of 32 columns, so every sequence length is a new
                 shape); the ``-unshared`` row is Purified OPSD with ``runtime.share_prefixes=false``
                 (each no-grad pass runs its whole prompt).
  TRL defaults   (last three rows) one micro-batch of 8, gradient checkpointing on.

Each configuration runs in its own process (peak memory = that process's max RSS, model loading
included); the first ``--warmup`` steps are dropped and the median of the rest is reported. The
children inherit the environment (so ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` caps apply
to them too) and get the resolved dtype by name; a child whose machine record differs from the
parent's is reported as failed rather than mixed into the table. The table is headed by the
machine record (processor, ISA, native bf16, dtype and why, threads, torch, date, command), and
``--json PATH`` saves the results with that record.

Differences that cannot be removed: TRL's teacher prompt is ``{prompt}\\n\\n{privileged_context}``
(ours is the rendered OPSD teacher template), TRL has no per-token clip (ours uses the recipe's
0.05), and TRL computes full ``[B, T, V]`` logits (ours runs the chunked objective).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import add_dtype_option, header, machine, record  # benchmarks/ is the script's directory

# name -> (recipe, micro-batch size, gradient checkpointing, extra selfdistill overrides); the
# trl rows run TRL's SDFTTrainer with the opsd recipe's settings
CONFIGS = {
    "selfdistill-opsd": ("opsd", 1, False, ()),
    "selfdistill-opsd-unpadded": ("opsd", 1, False, ("model.length_multiple=1",)),
    "selfdistill-purified-opsd": ("purified-opsd", 1, False, ()),
    "selfdistill-purified-opsd-unshared": ("purified-opsd", 1, False, ("runtime.share_prefixes=false",)),
    "trl-sdft-opsd": ("opsd", 1, False, ()),
    "selfdistill-opsd-trl-defaults": ("opsd", 8, True, ()),
    "selfdistill-purified-opsd-trl-defaults": ("purified-opsd", 8, True, ()),
    "trl-sdft-opsd-trl-defaults": ("opsd", 8, True, ()),
}
# the dtype is not here: each run adds model.dtype=<the resolved dtype>; device=cpu because TRL's
# rows run with use_cpu=True, so both tools are measured on the same processor
COMMON = ["prompts_per_step=8", "max_new_tokens=128", "lora.r=64", "lora.alpha=128",
          "device=cpu", "logging.tensorboard=false", "logging.progress=false",
          "rewards.for_all=false", "checkpoint.every=100000"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_selfdistill(recipe: str, model: str, steps: int, out: Path, micro: int, checkpointing: bool,
                    dtype: str, extra: tuple = ()) -> list[dict]:
    from selfdistill.train import load_config
    from selfdistill.train.loop import Trainer

    cfg = load_config(recipe, COMMON + [f"model={model}", f"model.dtype={dtype}", f"max_steps={steps}",
                                        f"output_dir={out}",
                                        "objective.beta=0", f"micro_batch_size={micro}",
                                        f"model.gradient_checkpointing={str(checkpointing).lower()}", *extra])
    trainer = Trainer(cfg)
    rows = []
    for step in range(1, steps + 1):
        cpu = time.process_time()
        r = trainer.train_step(step)
        rows.append({"step_s": r["time/step_s"], "cpu_s": time.process_time() - cpu,
                     "rollout_s": r["time/rollout_s"], "score_s": r["time/score_s"], "loss_s": r["time/loss_s"]})
    trainer.close()
    return rows


def run_trl(model: str, steps: int, out: Path, micro: int, checkpointing: bool, dtype: str) -> list[dict]:
    import torch
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    from selfdistill.data import load_examples
    from selfdistill.models import alias_path

    path = str(alias_path(model)) if model in ("smollm2-135m", "tiny-random") else model
    examples = load_examples("gsm8k-100")
    instruction = "Please reason step by step, and put your final answer within \\boxed{}."
    data = Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"Problem: {e.problem}\n\n{instruction}"}],
         "privileged_context": f"Here is a reference solution to this problem:\n{e.solution}"}
        for e in examples
    ])
    # time generation by wrapping GenerationMixin.generate (TRL calls it on the unwrapped model)
    gen_time = {"s": 0.0}
    real_generate = transformers.GenerationMixin.generate

    def timed_generate(self, *a, **k):
        t = time.perf_counter()
        try:
            return real_generate(self, *a, **k)
        finally:
            gen_time["s"] += time.perf_counter() - t

    transformers.GenerationMixin.generate = timed_generate
    rows: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.c0, gen_time["s"] = time.perf_counter(), time.process_time(), 0.0

        def on_step_end(self, args, state, control, **kw):
            total = time.perf_counter() - self.t0
            rows.append({"step_s": total, "cpu_s": time.process_time() - self.c0, "rollout_s": gen_time["s"],
                         "score_s": None, "loss_s": total - gen_time["s"]})

    # TRL's bf16 defaults to True when fp16 is unset, so both flags are given explicitly: the
    # weights are loaded in the resolved dtype and mixed precision runs only in that same dtype
    args = SDFTConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=micro, gradient_accumulation_steps=8 // micro,
        num_generations=1, max_completion_length=128, temperature=1.1, top_p=0.95, top_k=20,
        learning_rate=5e-6, max_grad_norm=0.1, lr_scheduler_type="constant", warmup_steps=0,
        distillation_mode="full_logits", distillation_alpha=0.0, teacher_model_kind="base",
        distillation_is_clip=None, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=True, bf16=dtype == "bfloat16", fp16=dtype == "float16",
        model_init_kwargs={"dtype": getattr(torch, dtype)}, seed=0,
        gradient_checkpointing=checkpointing,
        max_prompt_length=1024, dataloader_num_workers=0,
    )
    peft = LoraConfig(r=64, lora_alpha=128, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                            "gate_proj", "up_proj", "down_proj"],
                      task_type="CAUSAL_LM")
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    trainer = SDFTTrainer(model=path, args=args, train_dataset=data, processing_class=tokenizer,
                          peft_config=peft, callbacks=[Timer()])
    trainer.train()
    return rows


def one(name: str, model: str, steps: int, result: Path, threads: int, dtype: str) -> None:
    import torch

    from selfdistill.hardware import resolve

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # the parent resolved the dtype and passes it by name; the parent already warned if it is
    # emulated here. This record lets the parent check the child saw the same machine.
    hardware = resolve(dtype, "cpu", warn=False).describe()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        error = None
        try:
            recipe, micro, checkpointing, extra = CONFIGS[name]
            if name.startswith("trl-"):
                rows = run_trl(model, steps, out, micro, checkpointing, dtype)
            else:
                rows = run_selfdistill(recipe, model, steps, out, micro, checkpointing, dtype, extra)
        except Exception as exc:  # noqa: BLE001 - reported in the table, not hidden
            rows, error = [], f"{type(exc).__name__}: {str(exc)[:400]}"
    result.write_text(json.dumps({"rows": rows, "peak_rss_mb": peak_rss_mb(), "error": error,
                                  "hardware": hardware}))


# what parent and child must agree on for a row to belong to the table
SAME_MACHINE = ("dtype", "cpu_capability", "native_bf16", "threads", "torch")


def _mismatch(parent: dict, child: dict | None) -> str | None:
    if not child:
        return None
    diff = [f"{k} {child.get(k)} (parent {parent[k]})" for k in SAME_MACHINE if child.get(k) != parent[k]]
    return "child process saw another machine: " + ", ".join(diff) if diff else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    add_dtype_option(p)
    p.add_argument("--json", help="also write the results and the machine record to this file")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        one(a.one, a.model, a.steps, Path(a.result), a.threads, a.dtype)
        return 0
    import torch

    hw = machine(a.dtype)
    torch.set_num_threads(a.threads)  # the record names the thread count every child runs with
    rec = record(hw, a.dtype)
    print(f"step.py: {hw.line()}", file=sys.stderr)
    results = {}
    for name in a.configs.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            res = Path(f.name)
        start = time.perf_counter()
        # os.environ passed on purpose: ISA caps (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) must
        # reach the child, and --dtype carries the resolved name so the child cannot re-decide
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--result", str(res), "--steps",
                               str(a.steps), "--model", a.model, "--threads", str(a.threads),
                               "--dtype", hw.dtype],
                              capture_output=True, text=True, env=os.environ)
        data = json.loads(res.read_text()) if res.exists() and res.stat().st_size else {
            "rows": [], "peak_rss_mb": None, "error": proc.stderr[-400:]}
        data["error"] = data["error"] or _mismatch(rec, data.get("hardware"))
        data["wall_s"] = time.perf_counter() - start
        res.unlink(missing_ok=True)
        results[name] = data
        print(f"{name}: {'error ' + str(data['error']) if data['error'] else 'ok'}", file=sys.stderr)
    print(header(rec) + "\n")
    print(table(results, a, hw.dtype))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": rec, "steps": a.steps, "warmup": a.warmup,
                                            "model": a.model, "results": results}, indent=2) + "\n")
    return 0


def _median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def table(results: dict, a, dtype: str) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    base = results.get("selfdistill-opsd", {})
    base_step = _median(base.get("rows", [])[a.warmup:], "step_s")
    base_cpu = _median(base.get("rows", [])[a.warmup:], "cpu_s")
    lines = [f"model {a.model}, {dtype}, {a.threads} torch threads, load average at the end {os.getloadavg()[0]:.1f}; "
             f"{a.steps} steps, first {a.warmup} dropped, medians",
             "", "| configuration | step s | CPU s | rollout s | score s | loss s | peak RSS MB "
             "| step time / selfdistill-opsd | CPU time / selfdistill-opsd |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, data in results.items():
        rows = data.get("rows", [])[a.warmup:]
        if data.get("error"):
            lines.append(f"| {name} | failed: {data['error']} | | | | | | | |")
            continue
        step, cpu = _median(rows, "step_s"), _median(rows, "cpu_s")
        ratio = step / base_step if step and base_step else None
        cpu_ratio = cpu / base_cpu if cpu and base_cpu else None
        lines.append(f"| {name} | {fmt(step)} | {fmt(cpu)} | {fmt(_median(rows, 'rollout_s'))} "
                     f"| {fmt(_median(rows, 'score_s'))} | {fmt(_median(rows, 'loss_s'))} "
                     f"| {fmt(data.get('peak_rss_mb'))} | {fmt(ratio)} | {fmt(cpu_ratio)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
