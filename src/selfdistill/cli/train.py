"""`selfdistill train RECIPE [key=value ...]`: run one of the on-policy methods.

RECIPE is a bundled recipe name (see --list-recipes) or a path to a YAML file. Overrides use
dotted keys (optimizer.lr=1e-5) or unique short names (max_steps=3, model=tiny-random).
See docs/training.md for every key.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train with opsd, purified-opsd, sdpo, grpo or srpo",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", nargs="?", help="bundled recipe name or path to a YAML recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit (no model is loaded)")
    p.add_argument("--list-recipes", action="store_true", help="list the bundled recipes and exit")
    p.add_argument("--list-keys", action="store_true", help="list every config key with its help and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from selfdistill.train.config import ConfigError, describe, load_config, recipe_names, to_yaml

    if args.list_recipes:
        print("\n".join(recipe_names()))
        return 0
    if args.list_keys:
        print(describe())
        return 0
    if not args.recipe:
        print("selfdistill train: give a RECIPE (one of: " + ", ".join(recipe_names()) + ") or a YAML path",
              file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.recipe, args.overrides)
    except ConfigError as err:
        print(f"selfdistill train: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from selfdistill.contexts import ContextError
    from selfdistill.data import DataError
    from selfdistill.models import ModelLoadError
    from selfdistill.train.checkpoint import CheckpointError
    from selfdistill.train.loop import NonFiniteError, OutputDirError, train

    try:
        out = train(cfg)
    except (ConfigError, OutputDirError, DataError, ModelLoadError, ContextError) as err:
        print(f"selfdistill train: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"selfdistill train: {err}", file=sys.stderr)
        return 3
    except (DataError, ModelLoadError, CheckpointError, OSError) as err:
        # bad rows (named like `selfdistill data check`), an unfetchable model, a failed
        # checkpoint write or an unwritable/full disk: a message, not a stack trace
        print(f"selfdistill train: {err}", file=sys.stderr)
        return 1
    print(f"done: {out}/metrics.jsonl, checkpoints in {out}/checkpoints, final weights in {out}/final")
    return 0
