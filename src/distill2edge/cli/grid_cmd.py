"""`distill2edge grid RECIPE [--quick] --out DIR`: the telecom paper's 16-cell KD study (see `grid.py`)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

_HELP = """Run the 16-cell study of the telecom-qa paper from a recipe: teacher with the student's vocabulary or
another x teacher base/SFT x student base/SFT x vanilla KD/DSKD (vanilla KD across vocabularies runs as
ULD, logit distillation on sorted probabilities). SFT stages run once and are shared; a killed grid run
again with the same --out reuses finished cells. Writes table3.md/.json (paired one-sided Wilcoxon
tests of H-Train, H-SFT, H-Algo), heatmap.png, group_means.png, report.md (findings for RQ1-RQ3) and
metrics.json into the run folder."""
_EPILOG = """examples:
  distill2edge grid telecom-qa --quick --out runs/grid-quick
  distill2edge grid telecom-qa --out runs/grid --metrics qa,paper --judge hf:embedded:gemma-3-270m --correction holm
  distill2edge grid my-recipe.yaml --same-teacher llama --different-teacher mistral --out runs/grid
"""


def add_grid_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `grid` on the top-level subparsers."""
    p = subparsers.add_parser("grid", help="the telecom paper's 16-cell KD study with its statistics",
                              description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    p.add_argument("recipe", help="recipe name or YAML file giving teachers, student, data, SFT and KD settings")
    p.add_argument("--quick", action="store_true", help="the recipe's `quick` overrides (a smoke run on CPU)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<recipe>-grid-<time>); an existing one is resumed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the base recipe (repeatable), e.g. --set distill.*.train.max_steps=5")
    p.add_argument("--same-teacher", help="teacher sharing the student's vocabulary (default: detected)")
    p.add_argument("--different-teacher", help="teacher with another vocabulary (default: detected)")
    p.add_argument("--metrics", action="append", default=None,
                   help="metric or group names, comma-separated or repeated (default: qa,ngram,embedding with "
                        "--quick, else qa,paper: the paper's 14 including the Oracle-LLM ones)")
    p.add_argument("--judge", help="judge of the Oracle-LLM metrics (default: $DISTILL2EDGE_JUDGE, the recipe's "
                                   "evaluate.judge, or hf:embedded:gemma-3-270m)")
    p.add_argument("--correction", choices=["none", "holm"], default="none",
                   help="multiple-testing correction over the metrics of each Table 3 cell (paper: none)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--references", action="store_true", help="also evaluate the teachers and students themselves")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_grid_cmd(args: argparse.Namespace) -> int:
    """Run the parsed `grid` command; 0 when the report is written (errors propagate to main's handler)."""
    from distill2edge.cli.options import judge_option
    from distill2edge.config import load_recipe
    from distill2edge.grid import run_grid

    base = load_recipe(args.recipe, args.overrides, quick=args.quick)
    out = args.out or Path("runs") / f"{base.name}-grid{'-quick' if args.quick else ''}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    metrics = [n.strip() for arg in args.metrics for n in arg.split(",") if n.strip()] if args.metrics else None
    print(f"run folder: {out}")
    grid = run_grid(
        base, out, same_teacher=args.same_teacher, different_teacher=args.different_teacher, metrics=metrics,
        judge=judge_option(args.judge), quick=args.quick, correction=args.correction, alpha=args.alpha, references=args.references,
        progress=not args.no_progress,
    )
    print()
    print((out / "table3.md").read_text(encoding="utf-8"))
    print(f"report: {out / 'report.md'}  ({grid['wall_time_s']} s this invocation)")
    return 0
