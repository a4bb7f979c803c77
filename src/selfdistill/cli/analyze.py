"""`selfdistill analyze {markers,richness,token-kl,judge}`: each writes markdown + CSV tables and
PNG plots into --output-dir. See docs/analysis.md for what each measures."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("analyze", help="epistemic-marker and distillation analyses",
                              description=__doc__)
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    m = sub.add_parser("markers", help="marker counts/rates per samples file and word-frequency shift")
    m.add_argument("files", nargs="+", help="samples JSONL files (e.g. eval samples.jsonl); with two or "
                   "more, the frequency shift compares the last file against the first")
    m.add_argument("--text-field", default="response", help="JSON field holding the response text")
    m.add_argument("--tokenizer", default=None, help="model/tokenizer to count tokens of rows "
                   "without num_tokens")
    m.add_argument("--alpha", type=float, default=0.5, help="add-alpha smoothing of word frequencies")
    m.add_argument("--min-count", type=int, default=3, help="words seen fewer times are left out")
    m.add_argument("--group-by", default=None, help="split each file's rows by this field "
                   "(e.g. setting in richness_samples.jsonl)")
    m.add_argument("--compare", default=None, metavar="A,B",
                   help="frequency shift of group B against group A (default: first and last group)")
    _output(m)
    m.set_defaults(_analysis=_run_markers)

    r = sub.add_parser("richness", help="generation under four conditioning contexts (Kim et al. Table 1)")
    _model_data(r)
    r.add_argument("--settings", default="unguided,full,no_think,regenerated",
                   help="comma list from unguided,full,no_think,regenerated")
    r.add_argument("--k", type=int, default=1, help="samples per problem and setting")
    _output(r)
    r.set_defaults(_analysis=_run_richness)

    t = sub.add_parser("token-kl", help="per-token student-teacher KL, per marker variant, PMI diagnostics")
    _model_data(t)
    t.add_argument("--samples", default=None, help="samples JSONL (response, problem_id) to score; "
                   "default: generate one response per problem with the student prompt")
    t.add_argument("--controls", action="store_true",
                   help="also run the controls: each problem with ANOTHER problem's reference (seeded "
                        "derangement) and a no-context baseline; see docs/diagnostics.md")
    t.add_argument("--controls-seed", type=int, default=0, help="seed of the wrong-reference pairing")
    _output(t)
    t.set_defaults(_analysis=_run_token_kl)

    j = sub.add_parser("judge", help="LLM-judge count of uncertainty expressions (OpenAI-compatible API)")
    j.add_argument("file", help="samples JSONL (response field)")
    j.add_argument("--base-url", required=True, help="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    j.add_argument("--judge-model", required=True, help="model name sent to the endpoint")
    j.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never printed); unset: no auth header")
    j.add_argument("--limit", type=int, default=20, help="judge at most this many responses")
    j.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    j.add_argument("--retries", type=int, default=2, help="extra attempts per response")
    j.add_argument("--text-field", default="response")
    _output(j)
    j.set_defaults(_analysis=_run_judge)
    return p


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", required=True, help="folder for tables (.md, .csv) and PNGs")


def _model_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model id, local dir, alias, a training run's output "
                   "dir or one of its checkpoints (RUN/checkpoints/step-000012)")
    p.add_argument("--data", required=True, help="data spec (offline name, local file, hub id)")
    p.add_argument("--columns", default="", help="field=column mapping of --data, as `selfdistill data check "
                   "--columns`: e.g. problem=q,solution=completion,answer=gold")
    p.add_argument("--split", default=None)
    p.add_argument("--limit", type=int, default=4, help="number of problems")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    from selfdistill.cli.evaluate import add_hardware_args

    add_hardware_args(p)
    p.add_argument("--thinking", choices=["on", "off"], default="off",
                   help="chat-template thinking switch for models that have one")


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.output_dir, exist_ok=True)
    from selfdistill.data import DataError

    try:
        return int(args._analysis(args) or 0)
    except _ModelError as err:  # a device that is not here, an unusable run or checkpoint
        print(f"selfdistill analyze: {err}", file=sys.stderr)
        return 2
    except DataError as err:  # bad rows or columns of --data: named like `selfdistill data check`
        for error in err.errors:
            print(f"selfdistill analyze: {error.format()}", file=sys.stderr)
        return 1


class _ModelError(Exception):
    """--device, --model or --columns cannot be used; the message says why (exit 2, no traceback)."""


def _run_markers(args: argparse.Namespace) -> int:
    from selfdistill.analysis.marker_files import analyze_marker_files
    from selfdistill.analysis.tables import markdown_table

    count_tokens = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        from selfdistill.models import ALIASES, alias_path

        name = args.tokenizer
        tok = AutoTokenizer.from_pretrained(str(alias_path(name)) if name in ALIASES else name)
        count_tokens = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    compare = None
    if args.compare:
        compare = tuple(part.strip() for part in args.compare.split(","))
        if len(compare) != 2:
            raise ValueError(f"--compare {args.compare!r}: give two group names, A,B")
    result = analyze_marker_files(args.files, args.output_dir, text_field=args.text_field,
                                  alpha=args.alpha, min_count=args.min_count, count_tokens=count_tokens,
                                  group_by=args.group_by, compare=compare)
    print(markdown_table(result["rows"], ["group", "mode", "responses", "tokens", "E_per_response",
                                          "total_per_1k"]))
    if result["shift_summary"]:
        s = result["shift_summary"]
        print(f"frequency shift: markers mean log2 ratio "
              f"{s['marker_mean_log2_ratio']:.3f}, other words {s['other_mean_log2_ratio']:.3f}")
    print(f"wrote tables and plots to {args.output_dir}")
    return 0


def _setup(args: argparse.Namespace):
    """(model, tokenizer, renderer, examples with solution and answer, sampling params).

    Prints the hardware line once and writes ``hardware.json`` (``Hardware.describe()``) into
    --output-dir; the model goes to --device in --dtype."""
    import json
    from pathlib import Path

    from selfdistill.cli.evaluate import context_limit, load_any_model, start_hardware
    from selfdistill.contexts import ContextConfig, Renderer, RoleOptions
    from selfdistill.data import load_examples
    from selfdistill.rollout import SamplingParams

    from selfdistill.data.columns import parse_columns
    from selfdistill.models import ModelLoadError

    try:
        columns = parse_columns(args.columns)
    except ValueError as err:
        raise _ModelError(f"--columns: {err}") from None
    examples = load_examples(args.data, split=args.split, limit=args.limit, seed=args.seed, columns=columns or None,
                             method="opsd", need_answer=True, syntax="data")
    try:
        hardware = start_hardware(args, f"analyze {args.analysis}")
        model, tokenizer = load_any_model(args.model, hardware)
    except (ValueError, ModelLoadError) as err:
        raise _ModelError(str(err)) from None
    (Path(args.output_dir) / "hardware.json").write_text(json.dumps(hardware.describe(), indent=2) + "\n")
    thinking = RoleOptions(enable_thinking=args.thinking == "on")
    config = ContextConfig(roles={r: thinking for r in ("student", "teacher", "refonly")},
                           max_length=context_limit(model, tokenizer, None))
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
    return model, tokenizer, Renderer(tokenizer, config), examples, params


def _run_richness(args: argparse.Namespace) -> int:
    from selfdistill.analysis.richness import COLUMNS, parse_settings, richness
    from selfdistill.analysis.tables import markdown_table

    settings = parse_settings(args.settings)
    model, tokenizer, renderer, examples, params = _setup(args)
    table, _ = richness(model, tokenizer, examples, renderer=renderer, params=params, k=args.k,
                        settings=settings, output_dir=args.output_dir)
    print(markdown_table(table, COLUMNS))
    print(f"wrote richness tables, samples and plot to {args.output_dir}")
    return 0


def _run_token_kl(args: argparse.Namespace) -> int:
    from selfdistill.analysis.tables import markdown_table
    from selfdistill.analysis.token_kl import responses_for, score_tokens, write_token_kl

    model, tokenizer, renderer, examples, params = _setup(args)
    rows, response_ids = responses_for(model, tokenizer, renderer, examples, params,
                                       samples_path=args.samples)
    scores = score_tokens(model, tokenizer, renderer, rows, response_ids)
    source = f"; responses from {args.samples}" if args.samples else "; responses sampled by the student"
    result = write_token_kl(scores, args.output_dir, title_note=f"; model {args.model}{source}")
    print(f"corpus mean KL(student || teacher): {result['corpus_mean_kl']:.4f} nats "
          f"over {scores.kl_N.numel()} tokens")
    print(markdown_table(result["variants"][:15], ["marker", "variant", "count", "mean_kl", "ratio_to_mean"]))
    print(markdown_table(result["diagnostics"], ["tokens", "quantity", "n", "mean", "median"]))
    if args.controls:
        from selfdistill.analysis.controls import score_controls, write_controls

        controls = write_controls(score_controls(model, renderer, rows, response_ids, seed=args.controls_seed),
                                  args.output_dir, title_note=f"; model {args.model}{source}")
        print(markdown_table(controls["side_by_side"], ["condition", "quantity", "n", "mean", "median",
                                                        "frac_above_1"]))
        print(markdown_table(controls["content_effect"], list(controls["content_effect"][0])))
        print(markdown_table(controls["blank"], ["quantity", "n", "mean", "median"]))
    print(f"wrote token-kl tables and plots to {args.output_dir}")
    return 0


def _run_judge(args: argparse.Namespace) -> int:
    from selfdistill.analysis.judge import JudgeClient, JudgeError, judge_samples
    from selfdistill.analysis.tables import markdown_table

    key = os.environ.get(args.api_key_env) or None
    if key is None:
        print(f"note: ${args.api_key_env} is not set; sending requests without an Authorization header")
    client = JudgeClient(args.base_url, args.judge_model, key, timeout_s=args.timeout,
                         max_retries=args.retries)
    try:
        summary = judge_samples(args.file, client, args.output_dir, limit=args.limit,
                                text_field=args.text_field)
    except JudgeError as err:
        print(f"selfdistill analyze judge: {err}", file=sys.stderr)
        return 1
    print(markdown_table([summary], list(summary)))
    print(f"wrote judge.jsonl, judge_summary and judge_vs_markers.png to {args.output_dir}")
    return 0
