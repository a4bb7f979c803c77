"""`selfdistill data`: check a data file, show a few rows, list the offline sets.

    selfdistill data check PATH [--method M] [--columns problem=q,...] [--split S]
        every bad row as PATH:ROW: field: message, exit 1; or a summary, exit 0
    selfdistill data show SPEC [--limit N]     a few rows (materializes and caches offline sets)
    selfdistill data list [--rg]               the offline sets (and the reasoning-gym tasks)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from selfdistill.data import METHODS, DataError, LoadResult, load_with_report
from selfdistill.data.columns import parse_columns_flag
from selfdistill.data.offline import DESCRIPTIONS, rg_tasks
from selfdistill.data.validate import MAX_FIELD_CHARS


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="check, show and list data sets",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    check = sub.add_parser("check", help="validate a data file; exit 1 when any row is bad")
    check.add_argument("path", help="a .jsonl/.json/.csv/.parquet file, an offline set or a hub dataset")
    _common(check)
    check.add_argument("--need-answer", action="store_true", help="require answers whatever the method")
    check.add_argument("--max-chars", type=int, default=MAX_FIELD_CHARS,
                       help="longest allowed field in characters (default %(default)s)")

    show = sub.add_parser("show", help="print a few rows of a data set")
    show.add_argument("spec", help="a file, gsm8k-100, champ, rg:<task>?size=N&seed=S, or a hub dataset")
    _common(show)
    show.add_argument("--limit", type=int, default=3, help="rows to print (default %(default)s)")
    show.add_argument("--jsonl", action="store_true", help="print rows as JSON lines")

    listing = sub.add_parser("list", help="list the offline data sets")
    listing.add_argument("--rg", action="store_true", help="also list the installed reasoning-gym tasks")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHODS, help="the training method (decides required fields)")
    parser.add_argument("--columns", default="", help="field=column mapping, e.g. problem=q,solution=ref "
                        "(selfdistill train: data.columns=problem=q,solution=ref)")
    parser.add_argument("--split", help="hub dataset split (default: train, or the only split)")
    parser.add_argument("--seed", type=int, default=0, help="seed of rg: generators (default 0)")


def run(args: argparse.Namespace) -> int:
    try:
        columns = parse_columns_flag(getattr(args, "columns", "") or "")
    except ValueError as err:
        print(f"selfdistill data: --columns: {err}", file=sys.stderr)
        return 2
    try:
        if args.data_command == "check":
            return _check(args, columns)
        if args.data_command == "show":
            return _show(args, columns)
        return _list(args)
    except DataError as err:
        for error in err.errors:
            print(error.format())
        return 1


def _check(args: argparse.Namespace, columns: dict[str, str]) -> int:
    try:
        result = load_with_report(args.path, split=args.split, columns=columns or None, seed=args.seed,
                                  method=args.method, need_answer=True if args.need_answer else None,
                                  max_chars=args.max_chars, syntax="data")
    except DataError as err:
        for error in err.errors:
            print(error.format())
        n = len(err.errors)
        print(f"{args.path}: {_plural(n, 'error')}; fix {'it' if n == 1 else 'them'} and check again",
              file=sys.stderr)
        return 1
    _summary(result, args.method)
    return 0


def _summary(checked: LoadResult, method: str | None) -> None:
    examples = checked.examples
    n = len(examples)
    print(f"{checked.source}: {_plural(n, 'row')}, all good" + (f" for {method}" if method else ""))
    print(f"  columns found: {', '.join(checked.columns)}")
    used = ", ".join(f"{f} <- {c}" for f, c in checked.mapping.items() if c is not None)
    if checked.mapping.get("solution") is None and any(e.solution for e in examples):
        used += f", solution <- the steps before '####' in {checked.mapping['answer']}"
    print(f"  mapping: {used}" + ("" if checked.mapping.get("id") else "; ids from row numbers"))
    for name in ("solution", "answer"):
        print(f"  {name}s present: {sum(getattr(e, name) is not None for e in examples)}/{n}")
    for name in ("problem", "solution", "answer"):
        lengths = [len(getattr(e, name)) for e in examples if getattr(e, name) is not None]
        if lengths:
            print(f"  {name} chars: min {min(lengths)}, median {statistics.median(lengths):g}, "
                  f"max {max(lengths)}")
    for warning in checked.warnings:
        print(f"  warning: {warning}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _show(args: argparse.Namespace, columns: dict[str, str]) -> int:
    result = load_with_report(args.spec, split=args.split, columns=columns or None, seed=args.seed,
                              method=args.method, on_bad_rows="skip", syntax="data")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.jsonl:
        skipped = len({e.row for e in result.skipped})
        print(f"{result.source}: {_plural(len(result.examples), 'row')}" +
              (f" ({_plural(skipped, 'bad row')} skipped)" if skipped else ""))
    for example in result.examples[:args.limit]:
        if args.jsonl:
            print(json.dumps(vars(example), ensure_ascii=False))
            continue
        print(f"\n[{example.id}]  ({example.origin})")
        for name in ("problem", "solution", "answer"):
            value = getattr(example, name)
            text = "(none)" if value is None else value if len(value) <= 400 else value[:400] + " ..."
            print(f"{name}: {text}")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, description in DESCRIPTIONS.items():
        print(f"{name:<12} {description}")
    if args.rg:
        print("\nreasoning-gym tasks (use as rg:<task>):")
        print("  " + "\n  ".join(rg_tasks()))
    return 0
