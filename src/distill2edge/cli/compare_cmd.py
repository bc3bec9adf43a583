"""`distill2edge compare SCORES... --reference LABEL`: how much of the teacher's score each model keeps,
with paired intervals over the questions both answered."""

from __future__ import annotations

import argparse
from pathlib import Path

_HELP = """Compare models evaluated on the same questions (the scores.csv that `distill2edge evaluate` and a
recipe's evaluation stages write): each model's mean, the fraction of the reference model's mean it keeps,
and its difference from the reference, each with a paired bootstrap interval (question i resampled for both
models at once; 10,000 resamples, fixed seed, so the figures reproduce to the digit) and a two-sided paired
Wilcoxon signed-rank test. With several models besides the reference, each is also compared with the one
listed before it. Question ids must match across models."""
_EPILOG = """examples:
  distill2edge compare out/eval --reference teacher
  distill2edge compare teacher=out/eval_t/teacher student=out/eval_s/student healed=out/eval_h/healed
  distill2edge compare runs/telecom-qa-20261206 --reference teacher_sft.smollm2 --metric rouge_l --json kept.json
  distill2edge compare eval_t/teacher eval_s/student --by-length 256 512
paths: a scores.csv, a folder holding one, an `evaluate --out` folder (one model per sub-folder), or a recipe
run folder (its stages/evaluate_ROLE/, labelled by ROLE). Exit status: 0; 2 for missing or mismatched scores.
"""


def add_compare_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `compare` on the top-level subparsers."""
    p = subparsers.add_parser("compare", help="accuracy kept against a teacher, with paired intervals",
                              description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG)
    p.add_argument("scores", nargs="+", metavar="[LABEL=]PATH", help="evaluated models (see paths below)")
    p.add_argument("--reference", help="label of the model the others are measured against (default: the first)")
    p.add_argument("--metric", help="per-question metric (default: token_f1, else correct (classification), rouge_l)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--by-length", type=int, nargs="+", metavar="TOKENS",
                   help="also the fraction kept per bucket of prompt length, split at these token counts (the "
                        "reference's prompts, from the predictions.jsonl beside its scores), e.g. 256 512")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def run_compare_cmd(args: argparse.Namespace) -> int:
    """Run the parsed `compare` command: the Markdown table on stdout."""
    from distill2edge.atomic import write_json_atomic
    from distill2edge.stats.compare import compare_markdown, compare_scores, find_scores

    if not 0 < args.level < 1:
        raise ValueError(f"--level must lie strictly between 0 and 1, got {args.level}")
    result = compare_scores(find_scores(args.scores), args.reference, args.metric, level=args.level,
                            by_length=args.by_length or ())
    print(compare_markdown(result), end="")
    if args.json:
        write_json_atomic(args.json, result)
    return 0
