"""`distill2edge bench MODEL... --out DIR`: the same questions through torch, onnxruntime and llama.cpp.

Exit status: 0 when bench.json was written; 2 for usage or input errors (`error: ...`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HELP = """Benchmark models side by side on the same questions: greedy answers with a fixed number of new
tokens, after warm-up, with the thread count set and recorded. Per model: time to first token,
ms per answer (mean, median, p90), decode tokens/s and its fraction of the memory-bandwidth roofline,
questions/s (sequential, and batched for torch and ONNX), peak RSS (each model in its own process),
file size, parameters, and exact match / token F1 / ROUGE-L.

MODEL is a Hugging Face folder (torch), an ONNX folder from `distill2edge export onnx` (onnxruntime),
a .gguf file (llama.cpp), or embedded:NAME; prefix ROLE= to label it (teacher=..., student=...).
Writes bench.json, bench.md (tables), accuracy_latency.png, speedup.png and per-model predictions.
"""
_EPILOG = """examples:
  distill2edge bench teacher=embedded:smollm2-135m-instruct student=runs/x/stages/distill/model \\
      student=out/student.q8_0.gguf student=out/student-onnx --out out/bench --limit 40
  distill2edge bench runs/x/teacher runs/x/student --role teacher --role student --data TeleQuAD.json --split test
"""


def add_bench_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `bench` on the top-level subparsers."""
    from distill2edge.bench.measure import DEFAULT_TEMPLATE

    p = subparsers.add_parser(
        "bench",
        help="latency, throughput, memory and accuracy of models side by side (torch, ONNX, GGUF)",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="[ROLE=]PATH: HF folder, ONNX folder, .gguf, embedded:NAME")
    p.add_argument("--out", type=Path, required=True, help="folder for bench.json and the tables/plots")
    p.add_argument("--role", action="append", default=[],
                   help="role of each MODEL without ROLE=, in order (repeatable; default `model`)")
    p.add_argument("--data", default="embedded:telecom-qa",
                   help="embedded:telecom-qa (default), a TeleQuAD/SQuAD JSON, a JSONL file, or hf:NAME")
    p.add_argument("--split", choices=["all", "train", "validation", "test"], default="test",
                   help="which split of the data (the recipe's split by context; default test)")
    p.add_argument("--limit", type=int, help="first N questions of the split")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="prompt template with {context} and {question}; \\n is a newline (default: the recipe's)")
    p.add_argument("--max-length", type=int, default=256, help="prompt + answer tokens (default 256)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="new tokens per answer (default 24)")
    p.add_argument("--threads", type=int, default=2, help="compute threads for every runtime (default 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed answers per model first (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="batch for batched questions/s; 0 skips (default 8)")
    p.add_argument("--stop-at-answer", action="store_true",
                   help="stop at EOS or newline instead of always generating --max-new-tokens")
    p.add_argument("--reference", help="name of the model speed-ups are taken against (default: first teacher)")
    p.add_argument("--same-bits", action="store_true",
                   help="export each torch teacher to the students' GGUF types and time it too, for speed-ups "
                        "at equal bits (same runtime, same quantization)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run every model in this process (faster start; no peak RSS)")


def run_bench_cmd(args: argparse.Namespace) -> int:
    """Run the parsed `bench` command (`bench.api.run_bench_specs`); returns the exit status."""
    from distill2edge.bench import BenchError
    from distill2edge.bench.api import run_bench_specs
    from distill2edge.bench.tables import markdown_tables
    from distill2edge.data.qa import DataError

    try:
        result = run_bench_specs(
            args.models, args.out, roles=args.role, data=args.data, split=args.split, limit=args.limit,
            template=args.template, max_length=args.max_length, max_new_tokens=args.max_new_tokens,
            threads=args.threads, warmup=args.warmup, batch_size=args.batch_size,
            stop_at_answer=args.stop_at_answer, isolate=not args.no_isolate, reference=args.reference,
            same_bits=args.same_bits,
        )
    except (BenchError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_tables(result))
    print(f"wrote {args.out / 'bench.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (cli/main.py registers `add_bench_parser` too)."""
    parser = argparse.ArgumentParser(prog="distill2edge")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return run_bench_cmd(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
