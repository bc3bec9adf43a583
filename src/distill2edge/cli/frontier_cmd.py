"""`distill2edge frontier RECIPE --layers 8 12 16 --out DIR`: accuracy against edge speed, one student per size."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from distill2edge.cli.options import add_recipe_run_options

_HELP = """Train one student per layer count from a recipe (the student cut from `student.init_from`), and
report for each its test accuracy, size, and decode speed in llama.cpp at one quantization, timed beside
the teacher's GGUF at the same quantization: what each layer costs and buys. The teacher is fine-tuned once
(with the first size) and shared. Each size runs in its own run folder <out>/L<n>/, so a killed frontier run
again with the same --out reuses every finished stage. Writes frontier.json, frontier.md and frontier.png."""
_EPILOG = """examples:
  distill2edge frontier telecom-qa --layers 10 12 14 16 --out runs/frontier
  distill2edge frontier telecom-qa --layers 12 14 --quant f16 --set distill.fullseq.train.epochs=1 --out runs/f1
"""


def add_frontier_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `frontier` on the top-level subparsers."""
    p = subparsers.add_parser("frontier", help="accuracy-latency frontier: students of several sizes",
                              description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    p.add_argument("recipe", help="recipe name or YAML file (its student must be cut from student.init_from)")
    p.add_argument("--layers", type=int, nargs="+", required=True, metavar="N", help="student layer counts to train")
    p.add_argument("--quant", default="q8_0", help="GGUF type every model is exported and timed at (default q8_0)")
    p.add_argument("--questions", type=int, default=20, help="test questions the llama.cpp timing runs (default 20)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    p.add_argument("--out", type=Path, help="folder (default runs/<recipe>-frontier-<time>); an existing one is resumed")
    add_recipe_run_options(p, set_example="distill.fullseq.train.epochs=1")


def run_frontier_cmd(args: argparse.Namespace) -> int:
    """Run the parsed `frontier` command; 0 when frontier.md is written."""
    from distill2edge.config import load_recipe
    from distill2edge.frontier import run_frontier

    base = load_recipe(args.recipe, args.overrides, quick=args.quick)
    out = args.out or Path("runs") / f"{base.name}-frontier-{dt.datetime.now():%Y%m%d-%H%M%S}"
    print(f"frontier folder: {out}")
    result = run_frontier(base, args.layers, out, quant=args.quant, max_questions=args.questions,
                          threads=args.threads, progress=not args.no_progress)
    print()
    print((out / "frontier.md").read_text(encoding="utf-8"))
    print(f"frontier: {out / 'frontier.md'}  ({result['wall_time_s']} s)")
    return 0
