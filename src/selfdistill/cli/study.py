"""`selfdistill study NAME [key=value ...]`: run a paper experiment as a grid of training cells,
evaluate every cell and the base model on the same problems, and write one combined report
(markdown + CSV table, training curves, eval bar charts) to OUTPUT_DIR/report.

`scale=gpu` selects the paper-sized configuration. Other keys set the study's settings (see
--list); keys a study does not know are passed to every training cell as `selfdistill train`
overrides. A rerun skips finished cells (COMPLETE marker) and resumes a killed one."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("study", help="run a paper experiment (a grid of cells) with one report",
                              description=__doc__)
    p.add_argument("name", nargs="?", help="study name (omit with --list to list the studies)")
    p.add_argument("settings", nargs="*", metavar="key=value",
                   help="study settings (scale=gpu, steps=4, cells=a,b, ...) or train overrides")
    p.add_argument("--output-dir", default=None, help="default: runs/study-NAME")
    p.add_argument("--list", action="store_true",
                   help="list the studies, or with NAME its settings and cells, without running")
    return p


def run(args: argparse.Namespace) -> int:
    from selfdistill.studies import STUDIES, StudyError, resolve_settings, run_study, select_cells

    if args.name is None:
        if not args.list:
            print("selfdistill study: give a study name (or --list)", file=sys.stderr)
            return 2
        for study in STUDIES.values():
            print(f"{study.name:18s} {study.question}")
        return 0
    study = STUDIES.get(args.name)
    if study is None:
        print(f"selfdistill study: unknown study {args.name!r}; choose one of "
              f"{', '.join(STUDIES)}", file=sys.stderr)
        return 2
    try:
        settings, extra = resolve_settings(study, list(args.settings))
        cells = select_cells(study, settings)
    except (StudyError, ValueError) as err:
        print(f"selfdistill study {study.name}: {err}", file=sys.stderr)
        return 2
    if args.list:
        print(f"{study.name}: {study.question}\nsource: {study.source}\n")
        print("settings:\n" + json.dumps(settings, indent=1))
        if extra:
            print("train overrides for every cell: " + " ".join(extra))
        print(f"\ncells ({len(cells)}):")
        for c in cells:
            what = f"sft ({c.sft_guide} generation)" if c.kind == "sft" else f"train {c.recipe}"
            budget = f", budget {c.budget_s:g} s" if c.budget_s else ""
            print(f"  {c.name:28s} {what}{budget} {' '.join(c.overrides)}")
        return 0
    run_study(study, settings, extra, args.output_dir or f"runs/study-{study.name}")
    return 0
