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
import json
import re
import sys
from pathlib import Path
from typing import Any

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
    p.add_argument("--template", default=defaults.prompt_template, help="prompt template ({context}, {question})")
    p.add_argument("--max-length", type=int, default=defaults.max_length, help="prompt + answer tokens")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8, help="generation batch size")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _label(spec: str, taken: set[str]) -> tuple[str, str]:
    """(folder label, model reference) from `[LABEL=]REF`; labels are made unique and file-safe."""
    label, sep, ref = spec.partition("=")
    if not sep or "/" in label or not label:
        label, ref = Path(spec.rstrip("/")).name.removeprefix("embedded:") or "model", spec
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label)
    base, k = label, 2
    while label in taken:
        label, k = f"{base}-{k}", k + 1
    taken.add(label)
    return label, ref


def _summary_md(record: dict[str, Any]) -> str:
    metrics = record["metrics"]
    lines = [f"# Evaluation on {record['data']} ({record['split']} split, {record['n']} questions)", ""]
    if record.get("judge"):
        lines += [f"Oracle-LLM metrics judged by `{record['judge']}`.", ""]
    lines.append("| Model | " + " | ".join(metrics) + " | ms / answer |")
    lines.append("|---|" + "---|" * (len(metrics) + 1))
    for label, m in record["models"].items():
        lines.append(f"| {label} | " + " | ".join(f"{m[k]:.4f}" for k in metrics) + f" | {m['latency_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def _evaluate_all(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import torch

    from distill2edge.config import DataConfig
    from distill2edge.data.qa import load_examples, prepare_splits
    from distill2edge.evaluate.generate import evaluate_model
    from distill2edge.evaluate.registry import metric_group, resolve_metrics
    from distill2edge.models import DTYPES, load_model

    names = resolve_metrics([n.strip() for arg in (args.metrics or ["qa,ngram,embedding"])
                             for n in arg.split(",") if n.strip()])
    cfg = DataConfig(source=args.data, prompt_template=args.template, max_length=args.max_length)
    examples = prepare_splits(cfg)["test"] if args.split == "test" else load_examples(cfg)
    if args.max_questions:
        examples = examples[: args.max_questions]
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    judge = None
    if any(metric_group(n) == "llm" for n in names):
        from distill2edge.evaluate.judge import default_judge, make_judge

        judge = (make_judge(args.judge, device=device, api_key_env=args.judge_api_key_env) if args.judge
                 else default_judge(device=device))
        print(f"judge: {judge.name}")
    record: dict[str, Any] = {"data": args.data, "split": args.split, "n": len(examples), "metrics": names,
                              "judge": judge.name if judge else None, "models": {}}
    taken: set[str] = set()
    for spec in args.models:
        label, ref = _label(spec, taken)
        model, tok = load_model(ref, dtype=DTYPES[args.dtype], device=device)
        summary = evaluate_model(
            model, tok, examples, out / label, template=args.template, max_length=args.max_length,
            max_new_tokens=args.max_new_tokens, metrics=names, batch_size=args.batch_size, device=device,
            progress=not args.no_progress, desc=f"evaluate {label}", judge=judge,
        )
        summary.update(model=ref, dir=label)
        (out / label / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        record["models"][label] = summary
        print(f"{label}: " + "  ".join(f"{m} {summary[m]:.4f}" for m in names))
        del model
    return record


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the parsed `evaluate` command; returns the exit status (0 complete, 2 error)."""
    from distill2edge.evaluate.judge import JudgeError
    from distill2edge.evaluate.registry import MetricUnavailableError
    from distill2edge.models._fs import write_dir_atomically

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: --out {out} exists and is not an empty folder; choose a new one", file=sys.stderr)
        return 2
    holder: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        record = _evaluate_all(args, tmp)
        (tmp / "summary.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (tmp / "summary.md").write_text(_summary_md(record), encoding="utf-8")
        holder["record"] = record

    try:
        if out.exists():
            out.rmdir()  # empty: replaced by the complete folder
        write_dir_atomically(out, write)
    except (JudgeError, MetricUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'summary.json'} ({len(holder['record']['models'])} models)")
    return 0
