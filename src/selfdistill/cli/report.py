"""`selfdistill report RUN_DIR`: PNG curves and report.md from a run's metrics.jsonl."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="plot a training run's metrics.jsonl and summarize it",
        description="Reads RUN_DIR/metrics.jsonl (and config.yaml, hardware.json, resumes.jsonl when "
                    "present) and writes report.md: the run's settings, data and machine, resumes, the "
                    "latest eval/* numbers, metrics that never changed, one PNG per group (loss, accuracy, "
                    "eval, length, markers, diagnostics, time) with a line on how to read it, and "
                    "first/last/min/max of every metric.")
    p.add_argument("run_dir", help="training run directory holding metrics.jsonl")
    p.add_argument("--output-dir", default=None, help="where to write (default RUN_DIR/report)")
    return p


def run(args: argparse.Namespace) -> int:
    from selfdistill.analysis.run_report import write_run_report

    try:
        report = write_run_report(args.run_dir, args.output_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"selfdistill report: {err}", file=sys.stderr)
        return 2
    print(report.read_text(encoding="utf-8").split("\n## ")[0])
    print(f"wrote {report} and its PNGs")
    return 0
