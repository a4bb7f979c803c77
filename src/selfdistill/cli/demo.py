"""`selfdistill demo`: the whole story on a laptop CPU. Evaluates the base model, trains standard
OPSD and Purified OPSD for the same short budget from the same start (logging the Purified
diagnostics for both), evaluates both, and writes a report with a side-by-side table and plots.
A rerun reuses finished phases and resumes an interrupted training; --fresh starts over."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    from selfdistill.demo.pipeline import DemoSettings
    from selfdistill.hardware import DEVICE_HELP, DTYPE_CHOICES

    d = DemoSettings()
    p = subparsers.add_parser("demo", help="base vs OPSD vs Purified OPSD, end to end on the CPU",
                              description=__doc__)
    p.add_argument("--model", default=d.model, help="alias, local folder or hub id")
    p.add_argument("--train-data", default=d.train_data, help="training problems (with solutions)")
    p.add_argument("--eval-data", default=d.eval_data, help="held-out problems (with answers)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps per method")
    p.add_argument("--prompts-per-step", type=int, default=d.prompts_per_step)
    p.add_argument("--problems", type=int, default=d.problems, help="evaluation problems")
    p.add_argument("--samples", type=int, default=d.samples, help="samples per evaluation problem")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lora-r", type=int, default=d.lora_r)
    p.add_argument("--answer-format", default=d.answer_format,
                   choices=["boxed", "boxed_or_last_number"])
    p.add_argument("--dtype", default=d.dtype, choices=list(DTYPE_CHOICES),
                   help="auto: bfloat16 where the hardware computes it natively, else float32 "
                        "(float16 on GPUs without bf16)")
    p.add_argument("--device", default=d.device, help=DEVICE_HELP)
    p.add_argument("--rollout-backend", default=d.rollout_backend, choices=["auto", "hf", "vllm"],
                   help="rollout generator of both trainings; auto times HF generate and vLLM (when "
                        "installed) on 4 training prompts x 16 tokens and takes the faster")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--output-dir", default=d.output_dir)
    p.add_argument("--fresh", action="store_true", help="delete output-dir and start over")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="extra `selfdistill train` overrides applied to both methods")
    return p


def run(args: argparse.Namespace) -> int:
    from selfdistill.demo.pipeline import DemoSettings, run_demo

    for name, value in (("--steps", args.steps), ("--problems", args.problems),
                        ("--samples", args.samples), ("--prompts-per-step", args.prompts_per_step),
                        ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            print(f"selfdistill demo: {name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    settings = DemoSettings(
        model=args.model, train_data=args.train_data, eval_data=args.eval_data, steps=args.steps,
        prompts_per_step=args.prompts_per_step, problems=args.problems, samples=args.samples,
        max_new_tokens=args.max_new_tokens, lr=args.lr, lora_r=args.lora_r,
        answer_format=args.answer_format, dtype=args.dtype, device=args.device, seed=args.seed,
        output_dir=args.output_dir, fresh=args.fresh, progress=not args.no_progress,
        overrides=list(args.overrides), rollout_backend=args.rollout_backend,
    )
    from selfdistill.train.resume_guard import OutputDirError

    try:
        run_demo(settings)
    except OutputDirError as err:  # an unfinished training phase was started with other settings
        print(f"selfdistill demo: {err}\nThe demo resumes an unfinished phase with the settings it started "
              "with: rerun with those, or add --fresh to start over with these.", file=sys.stderr)
        return 2
    return 0
