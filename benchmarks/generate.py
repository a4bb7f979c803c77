"""Generation speed: LoRA adapter unmerged vs merged (exact restore) vs disabled, HF generate.

    .venv/bin/python benchmarks/generate.py --model smollm2-135m [--dtype auto] \
        --prompts 8 --new-tokens 128 --repeats 2

Weights in the hardware's dtype (auto): bfloat16 only where this CPU computes it natively, else
float32 (``--dtype`` forces one). Greedy decoding with eos disabled, so every run produces exactly prompts x new-tokens tokens.
Prints wall seconds and process CPU seconds per configuration (best of --repeats). On a busy
machine the wall time is meaningless; with --threads 1 the CPU time stays a fair comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from machine import add_dtype_option, header, machine, record  # benchmarks/ is the script's directory
from selfdistill.models import LoraSettings, apply_lora, load_model
from selfdistill.rollout import HFGenerate, SamplingParams

QUESTIONS = [
    "What is 17 times 23?",
    "A train travels 60 km in 45 minutes. What is its speed in km/h?",
    "Solve for x: 3x + 7 = 25.",
    "How many prime numbers are below 30?",
    "If a shirt costs $25 after a 20% discount, what was the original price?",
    "What is the sum of the interior angles of a hexagon?",
    "Simplify (x^2 - 9) / (x - 3).",
    "A rectangle has perimeter 30 and width 5. What is its area?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    add_dtype_option(parser)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    hw = machine(args.dtype)
    torch.set_num_threads(args.threads)
    print(header(record(hw, args.dtype)) + "\n", flush=True)

    model, tokenizer = load_model(args.model, dtype=hw.dtype)
    lora = apply_lora(model, LoraSettings())
    with torch.no_grad():  # a trained-looking adapter (B = 0 would make merging a no-op)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-3)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], add_generation_prompt=True
        )["input_ids"]
        for i in range(args.prompts)
    ]
    params = SamplingParams(do_sample=False, max_new_tokens=args.new_tokens)
    configs = {  # label -> (merge_lora, adapter disabled)
        "unmerged adapter": (False, False),
        "merged adapter": (True, False),
        "adapter disabled": (False, True),
    }
    best = {label: (float("inf"), float("inf")) for label in configs}
    for _ in range(args.repeats):  # interleaved, so a neighbour's load hits every config alike
        for label, (merge, disabled) in configs.items():
            backend = HFGenerate(lora, _NeverStops(tokenizer), merge_lora=merge)
            start, start_cpu = time.perf_counter(), time.process_time()
            with lora.disable_adapter() if disabled else contextlib.nullcontext():
                samples = backend.generate(prompts, params)
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            best[label] = (min(best[label][0], wall), min(best[label][1], cpu))
            print(f"  {label}: wall {wall:.2f} s, cpu {cpu:.2f} s", flush=True)
            assert sum(s.num_tokens for s in samples) == args.prompts * args.new_tokens
    tokens = args.prompts * args.new_tokens
    print(f"{tokens} tokens per run, {hw.dtype}, {args.threads} threads, best of {args.repeats}")
    for label, (wall, cpu) in best.items():
        print(f"{label:18s} wall {wall:7.2f} s ({tokens / wall:6.1f} tok/s)  cpu {cpu:7.2f} s")


class _NeverStops:
    """The tokenizer with an eos id outside the vocabulary, so generation runs to the cap."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.eos_token_id = len(tokenizer) + 10
        self.pad_token_id = tokenizer.pad_token_id

    def decode(self, ids, **kwargs):
        return self._tokenizer.decode(ids, **kwargs)


if __name__ == "__main__":
    main()
