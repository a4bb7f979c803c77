"""`selfdistill eval`: sample k responses per problem on named benchmarks and report avg@k,
pass@k, maj@k, truncation, lengths and epistemic markers. See docs/eval.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selfdistill.cli.help import DefaultsFormatter
from selfdistill.rewards.extract import ANSWER_FORMATS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="evaluate a model on math benchmarks", description=__doc__,
                              formatter_class=DefaultsFormatter)
    p.add_argument("--model", required=True,
                   help="hub id, local save_pretrained folder, alias (tiny-random, smollm2-135m), a "
                        "training run's output dir (its final/ model, else its newest complete "
                        "checkpoint) or one of its checkpoints (RUN/checkpoints/step-000012)")
    p.add_argument("--benchmarks", required=True,
                   help="comma list: aime24,aime25,hmmt25,amc23,math500,gsm8k, offline sets "
                        "(gsm8k-100, champ, rg:<task>) or local data files")
    p.add_argument("--k", type=int, default=4, help="samples per problem")
    p.add_argument("--pass-k", default="1", help="comma list of k for pass@k (each <= --k)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass")
    p.add_argument("--top-k", type=int, default=20, help="sample among the top-k tokens; 0 = off")
    p.add_argument("--greedy", action="store_true", help="greedy decoding (needs --k 1)")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="response limit in tokens")
    p.add_argument("--answer-format", choices=ANSWER_FORMATS, default="boxed",
                   help="how a response's final answer is read: the last \\boxed{} (papers), or "
                        "boxed_or_last_number (the last number when nothing is boxed; for small models "
                        "that never box, as the demo and rewards.answer_format in training)")
    p.add_argument("--thinking", choices=["on", "off"], default=None,
                   help="chat-template enable_thinking switch (Qwen3-style); default: the template's")
    p.add_argument("--columns", default="",
                   help="field=column mapping of the benchmark files, as `selfdistill data check --columns`: "
                        "e.g. problem=question,answer=gold")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark (default: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (chunk i of problems uses seed + i)")
    p.add_argument("--problems-per-batch", type=int, default=8, help="problems per generate call")
    add_hardware_args(p)
    p.add_argument("--max-length", type=int, default=None,
                   help="prompt token limit (default: the tokenizer's model_max_length, else the "
                        "model's max_position_embeddings)")
    p.add_argument("--reward-timeout", type=float, default=5.0, help="seconds per math-verify check")
    p.add_argument("--output-dir", required=True, help="samples.jsonl, summary.json, summary.md go here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from selfdistill.analysis.tables import markdown_table
    from selfdistill.contexts import ContextConfig, Renderer, RoleOptions
    from selfdistill.data import DataError
    from selfdistill.data.columns import parse_columns
    from selfdistill.eval.benchmarks import benchmark_label, check_benchmark_name, load_benchmark, parse_benchmarks
    from selfdistill.eval.runner import SUMMARY_COLUMNS, evaluate, no_answer_warning, summary_rows, write_summary
    from selfdistill.models import ModelLoadError
    from selfdistill.rewards import RewardScorer
    from selfdistill.rollout import SamplingParams

    try:
        names = parse_benchmarks(args.benchmarks)
        pass_ks = sorted({int(x) for x in args.pass_k.split(",") if x.strip()})
    except ValueError as err:
        print(f"selfdistill eval: {err}", file=sys.stderr)
        return 2
    if args.greedy and args.k != 1:
        print("selfdistill eval: --greedy gives identical samples; use --k 1", file=sys.stderr)
        return 2
    bad = [k for k in pass_ks if not 1 <= k <= args.k]
    if bad:
        print(f"selfdistill eval: --pass-k {bad} must be between 1 and --k {args.k}", file=sys.stderr)
        return 2
    try:  # names and mapping before anything loads
        for name in names:
            check_benchmark_name(name)
        columns = parse_columns(args.columns)
    except ValueError as err:
        print(f"selfdistill eval: {err}", file=sys.stderr)
        return 2
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            max_new_tokens=args.max_new_tokens, seed=args.seed, do_sample=not args.greedy)
    try:  # every benchmark loads before the model: a bad file or an unreachable hub fails in seconds
        benchmarks = {name: load_benchmark(name, limit=args.limit, seed=args.seed, columns=columns, syntax="data")
                      for name in names}
    except DataError as err:
        for error in err.errors:
            print(f"selfdistill eval: {error.format()}", file=sys.stderr)
        return 1
    try:
        hardware = start_hardware(args, "eval")
        model, tokenizer = load_any_model(args.model, hardware)
    except (ValueError, ModelLoadError) as err:  # no such device / path / hub model, a bad run folder
        print(f"selfdistill eval: {err}", file=sys.stderr)
        return 2
    roles = {} if args.thinking is None else {"student": RoleOptions(enable_thinking=args.thinking == "on")}
    renderer = Renderer(tokenizer, ContextConfig(roles=roles, max_length=context_limit(model, tokenizer,
                                                                                   args.max_length)))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    samples_path.write_text("")  # one eval run per output dir: the summary matches the file
    summaries: dict[str, dict] = {}
    with RewardScorer(timeout_s=args.reward_timeout, workers=1, answer_format=args.answer_format) as scorer, \
            open(samples_path, "a", encoding="utf-8") as sink:
        def append(row: dict) -> None:
            sink.write(json.dumps(row) + "\n")
            sink.flush()

        for name, examples in benchmarks.items():
            label = benchmark_label(name)
            summary, _ = evaluate(model, tokenizer, examples, k=args.k, params=params, renderer=renderer,
                                  pass_ks=pass_ks, benchmark=label, model_name=str(args.model),
                                  scorer=scorer, problems_per_batch=args.problems_per_batch,
                                  on_sample=append, progress=not args.no_progress)
            summaries[label] = summary
    write_summary(summaries, out, hardware=hardware.describe())
    print(markdown_table(summary_rows(summaries), SUMMARY_COLUMNS))
    print(f"sampling: {json.dumps(next(iter(summaries.values()))['sampling'])}; answers read with "
          f"--answer-format {args.answer_format}")
    for label, summary in summaries.items():
        warning = no_answer_warning(label, summary, args.answer_format)
        if warning:
            print(f"selfdistill eval: warning: {warning}", file=sys.stderr)
    print(f"wrote {samples_path}, {out / 'summary.json'}, {out / 'summary.md'}")
    return 0


def context_limit(model, tokenizer, requested: int | None) -> int | None:
    """``requested``, else None when the tokenizer knows a real limit (the renderer uses it),
    else the model config's ``max_position_embeddings``."""
    if requested is not None:
        return requested
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**7:
        return None
    return getattr(model.config, "max_position_embeddings", None)


def add_hardware_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` (both ``auto`` by default: ``selfdistill.hardware``)."""
    from selfdistill.hardware import DEVICE_HELP, DTYPE_CHOICES

    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                   help="weight dtype; auto = bfloat16 where the device computes it natively, "
                        "float16 on CUDA without bf16, float32 otherwise")


def start_hardware(args: argparse.Namespace, command: str):
    """Resolve ``--dtype``/``--device`` once and print the one start-up line (stderr).

    Raises:
        ValueError: an unknown dtype or a device that is not on this machine.
    """
    from selfdistill.hardware import resolve

    hardware = resolve(args.dtype, args.device)
    print(f"selfdistill {command}: {hardware.line()}", file=sys.stderr)
    return hardware


def load_any_model(name: str, hardware):
    """``(model, tokenizer)`` for ``--model``: a training run or one of its checkpoints
    (``selfdistill.train.run_checkpoint``, the folder used is printed), else ``load_model``;
    on ``hardware``'s device and dtype.

    Raises:
        ValueError: (RunCheckpointError) an incomplete checkpoint or an unusable run folder.
    """
    from selfdistill.models import load_model
    from selfdistill.train.run_checkpoint import find, load_run_checkpoint

    run = find(name)
    if run is None:
        return load_model(name, dtype=hardware.dtype, device=hardware.device)
    print(run.describe())
    return load_run_checkpoint(run, dtype=hardware.dtype, device=hardware.device)
