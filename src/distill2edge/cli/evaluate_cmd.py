"""`distill2edge evaluate MODEL... --data SRC --out DIR`: answer a QA set with each model and score
every answer with the chosen metrics (the paper's 14, plus exact match and token F1).

Writes, only when every model is done (the folder appears complete or not at all):

    DIR/summary.json           data, metrics, judge, and per model: metric means, latency, folder
    DIR/summary.md             the same as a Markdown table
    DIR/<label>/predictions.jsonl   id, prompt, question, reference(s), prediction, latency per question
    DIR/<label>/scores.csv          question x metric
    DIR/<label>/summary.json

Exit status: 0 complete; 2 for usage, data, model, judge or metric-data errors (`error: ...`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HELP = """Answer the questions of a QA set with each MODEL (greedy decoding, the recipe's prompt template) and
score every answer per question. Metric groups: qa (exact_match, token_f1), ngram (bleu, chrf, rouge_1,
rouge_2, rouge_l, meteor), embedding (embedding_cosine, bertscore_precision/recall/f1 on all-MiniLM-L6-v2),
llm (answer_correctness, answer_relevance, faithfulness, factual_correctness, scored by --judge),
paper (the 14 metrics of the telecom-qa paper) and all. Oracle-LLM metrics are slow on CPU: ask for them
with --metrics llm / paper / all. Every score is in [0, 1] (embedding cosine in [-1, 1]), higher is better.
"""
_EPILOG = """examples:
  distill2edge evaluate embedded:smollm2-135m-instruct --data embedded:telecom-qa --out out/eval
  distill2edge evaluate teacher=embedded:smollm2-135m-instruct student=runs/x/stages/distill/model \\
      --data TeleQuAD.json --metrics paper --judge gguf:embedded:gemma-3-270m --out out/eval
  distill2edge evaluate runs/x/student --data qa.jsonl --metrics all \\
      --judge openai:gpt-4o-mini@https://api.openai.com/v1 --out out/eval
judges: hf:REF (default hf:embedded:gemma-3-270m, or $DISTILL2EDGE_JUDGE), gguf:PATH, gguf:embedded:NAME,
        openai:MODEL@URL (key from the variable named by --judge-api-key-env)
"""


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate` on the top-level subparsers."""
    from distill2edge.config import DataConfig

    defaults = DataConfig()
    p = subparsers.add_parser(
        "evaluate", help="answer a QA set with models and score the answers (14 metrics + EM/F1)",
        description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
    )
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="[LABEL=]REF: embedded:NAME, a Hugging Face folder or a hub id")
    p.add_argument("--data", default=defaults.source, help="embedded:telecom-qa, a TeleQuAD/SQuAD JSON or a JSONL file")
    p.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    p.add_argument("--metrics", action="append", default=None,
                   help="metric or group names, comma-separated or repeated (default: qa,ngram,embedding)")
    p.add_argument("--judge", help="judge for the llm metrics (default: $DISTILL2EDGE_JUDGE or hf:embedded:gemma-3-270m)")
    p.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="variable holding an openai: judge's API key")
    p.add_argument("--split", choices=["test", "all"], default="test",
                   help="test: the held-out split a recipe with default split settings uses; all: every question")
    p.add_argument("--max-questions", type=int, help="score only the first N questions of the split")
    p.add_argument("--template", help="prompt template ({context}, {question}); default: the template of the "
                   f"recipe run that trained the models, else {defaults.prompt_template!r}")
    p.add_argument("--max-length", type=int, help="prompt + answer tokens, contexts cut to fit; default: the "
                   f"max_length of the recipe run that trained the models, else {defaults.max_length}")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8, help="generation batch size")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the parsed `evaluate` command (`evaluate.run.evaluate_models`); returns the exit status
    (0 complete, 2 error)."""
    from distill2edge.cli.options import judge_option
    from distill2edge.evaluate.judge import JudgeError
    from distill2edge.evaluate.registry import MetricUnavailableError
    from distill2edge.evaluate.run import OutputExistsError, PromptSettingsError, evaluate_models

    try:
        record = evaluate_models(
            args.models, args.out, data=args.data, metrics=args.metrics, judge=judge_option(args.judge),
            judge_api_key_env=args.judge_api_key_env, split=args.split, max_questions=args.max_questions,
            template=args.template, max_length=args.max_length, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, dtype=args.dtype, device=args.device, progress=not args.no_progress,
        )
    except (JudgeError, MetricUnavailableError, OutputExistsError, PromptSettingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'summary.json'} ({len(record['models'])} models)")
    return 0
