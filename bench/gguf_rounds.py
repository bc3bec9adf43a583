"""GGUF files side by side over several rounds: decode tok/s and ms per answer, median round, ratios.

One bench pass (`distill2edge bench`) times each model once, in its own process, one after the other; on
a shared 2-core VM a model's figure moves by up to ~15% between passes (the teacher's Q8_0 decode read
55-69 tok/s in four passes of 2026-12-05), which is as large as the effects compared here. This script
times every model `--rounds` times in rotated order with the same machinery (`distill2edge.bench`: greedy,
fixed-length answers, warm-up, each model in its own spawned process) and reports each model's median
round and its ratio to the first model:

    python bench/gguf_rounds.py teacher=T.q8_0.gguf full=S.q8_0.gguf trimmed=S-trim.q8_0.gguf \
        --out bench/results/vocab-trim-2026-12-05.json --limit 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from onnx_variants import time_models  # type: ignore[import-not-found]  # the sibling script's round loop


def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round (by decode tok/s) and every round's figures."""
    decode = [r["decode_tokens_per_s"] or 0.0 for r in recs]
    best = recs[decode.index(statistics.median_low(decode))]
    return {
        "decode_tokens_per_s": best["decode_tokens_per_s"], "ms_per_answer": best["answer_ms"]["mean"],
        "ttft_ms": best["ttft_ms"]["mean"], "decode_rounds": decode,
        "ms_per_answer_rounds": [r["answer_ms"]["mean"] for r in recs], "file_bytes": best.get("file_bytes"),
        "runtime": best["runtime"], "accuracy": best.get("accuracy"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=PATH.gguf; ratios are taken against the first")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--data", default="embedded:telecom-qa", help="questions (as `distill2edge bench --data`)")
    ap.add_argument("--limit", type=int, default=20, help="questions timed per model and round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    from distill2edge.bench.api import load_questions
    from distill2edge.bench.measure import BenchSettings
    from distill2edge.bench.system import machine_info

    models = []
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"{spec!r}: expected NAME=PATH to an existing .gguf file")
        models.append((name, Path(path), True))
    examples = load_questions(args.data, "test", args.limit)
    settings = BenchSettings(threads=args.threads, max_new_tokens=args.max_new_tokens, batch_size=0)
    results = {name: summary(recs) for name, recs in time_models(models, examples, settings, args.rounds).items()}
    ref = results[models[0][0]]
    for res in results.values():
        res["decode_ratio"] = (res["decode_tokens_per_s"] or 0) / (ref["decode_tokens_per_s"] or 1)
        res["answer_ratio"] = ref["ms_per_answer"] / res["ms_per_answer"]
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "settings": {**settings.to_dict(), "rounds": args.rounds, "n_questions": len(examples), "data": args.data},
        "models": {name: str(path) for name, path, _ in models}, "results": results,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for name, res in results.items():
        print(f"{name:16s} decode {res['decode_tokens_per_s']:6.1f} tok/s x{res['decode_ratio']:.2f}   "
              f"{res['ms_per_answer']:7.1f} ms/answer x{res['answer_ratio']:.2f}   rounds "
              + " ".join(f"{d:.0f}" for d in res["decode_rounds"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
