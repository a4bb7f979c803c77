"""The `selfdistill` command line.

Each sub-command lives in its own module of this package and exposes two functions:

    add_parser(subparsers) -> argparse.ArgumentParser   # registers the sub-command
    run(args: argparse.Namespace) -> int                 # exit code

Modules are imported lazily by name so `selfdistill --help` stays fast and a broken optional
dependency of one command cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module in selfdistill.cli
COMMANDS: dict[str, str] = {
    "train": "train",
    "eval": "evaluate",
    "analyze": "analyze",
    "report": "report",
    "demo": "demo",
    "data": "data",
    "study": "study",
}


def _load(module: str):
    try:
        return importlib.import_module(f"selfdistill.cli.{module}")
    except ModuleNotFoundError as err:
        if err.name == f"selfdistill.cli.{module}":
            return None  # not built yet
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfdistill",
        description="On-policy self-distillation of reasoning language models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = _load(module)
        if mod is not None:
            p = mod.add_parser(sub)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
