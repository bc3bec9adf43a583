"""Command-line options shared by the commands that load a recipe and run its stages."""

from __future__ import annotations

import argparse


def add_recipe_run_options(p: argparse.ArgumentParser, *, set_example: str) -> None:
    """`--set KEY=VALUE` (repeatable, into `args.overrides`), `--quick` and `--no-progress`, as
    `load_recipe(args.recipe, args.overrides, quick=args.quick)` and the pipeline's `progress` expect.
    `set_example` is a dotted override that makes sense for the command, shown in its help."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a recipe field (repeatable; values parse as YAML), e.g. --set {set_example}")
    p.add_argument("--quick", action="store_true", help="the recipe's `quick` overrides (a smoke run on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
