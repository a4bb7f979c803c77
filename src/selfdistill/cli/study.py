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
    # NAME and key=value pairs in one REMAINDER list, so that the options may also come after
    # them (argparse alone refuses positionals after an option); run() takes the options out
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="NAME [key=value ...]",
                   help="study name, then study settings (scale=gpu, steps=4, cells=a,b, ...) or "
                        "train overrides; omit NAME with --list to list the studies")
    p.add_argument("--output-dir", default=None, help="default: runs/study-NAME")
    p.add_argument("--list", action="store_true",
                   help="list the studies, or with NAME its settings and cells, without running")
    return p


def run(args: argparse.Namespace) -> int:
    from selfdistill.studies import STUDIES, StudyError, resolve_settings, run_study, select_cells

    words = list(args.words)
    if "--list" in words:
        words.remove("--list")
        args.list = True
    for i, w in enumerate(words):
        if w == "--output-dir" and i + 1 < len(words):
            args.output_dir = words[i + 1]
            del words[i:i + 2]
            break
        if w.startswith("--output-dir="):
            args.output_dir = w.split("=", 1)[1]
            del words[i]
            break
    bad = [w for w in words if w.startswith("-")]
    if bad:
        print(f"selfdistill study: unknown option {bad[0]} (options: --list, --output-dir D)",
              file=sys.stderr)
        return 2
    name, pairs = (words[0], words[1:]) if words else (None, [])
    if name is None:
        if not args.list:
            print("selfdistill study: give a study name (or --list)", file=sys.stderr)
            return 2
        for study in STUDIES.values():
            print(f"{study.name:18s} {study.question}")
        return 0
    study = STUDIES.get(name)
    if study is None:
        print(f"selfdistill study: unknown study {name!r}; choose one of "
              f"{', '.join(STUDIES)}", file=sys.stderr)
        return 2
    try:
        settings, extra = resolve_settings(study, list(pairs))
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
    from selfdistill.train.resume_guard import OutputDirError

    try:
        run_study(study, settings, extra, args.output_dir or f"runs/study-{study.name}")
    except StudyError as err:
        print(f"selfdistill study {study.name}: {err}", file=sys.stderr)
        return 2
    except OutputDirError as err:  # a cell's unfinished run was started with other settings
        print(f"selfdistill study {study.name}: {err}\nA study resumes its unfinished cells with the "
              "settings they started with: rerun with those, or use another --output-dir.", file=sys.stderr)
        return 2
    return 0
