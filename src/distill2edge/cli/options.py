"""Command-line options shared by several commands: running a recipe's stages, and the judge."""

from __future__ import annotations

import argparse
import os

JUDGE_ENV = "DISTILL2EDGE_JUDGE"
"""Environment variable naming the judge of the `evaluate` and `grid` commands when `--judge` is not given."""


def add_recipe_run_options(p: argparse.ArgumentParser, *, set_example: str) -> None:
    """`--set KEY=VALUE` (repeatable, into `args.overrides`), `--quick` and `--no-progress`, as
    `load_recipe(args.recipe, args.overrides, quick=args.quick)` and the pipeline's `progress` expect.
    `set_example` is a dotted override that makes sense for the command, shown in its help."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a recipe field (repeatable; values parse as YAML), e.g. --set {set_example}")
    p.add_argument("--quick", action="store_true", help="the recipe's `quick` overrides (a smoke run on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def judge_option(value: str | None) -> str | None:
    """The judge spec of `--judge`, else `$DISTILL2EDGE_JUDGE` (the user override `evaluate --help` and
    `grid --help` document), else None (the default judge). The one place the variable is read: below
    the commands the judge is passed explicitly (`evaluate_models(judge=...)`, a recipe's `evaluate.judge`)."""
    return value or os.environ.get(JUDGE_ENV) or None
