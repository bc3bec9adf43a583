"""Student ONNX variants against student torch, side by side in one run: ms per answer and decode tok/s.

Exports MODEL_DIR once per variant (each through `export_onnx`, so each passes its parity gate; an
export that fails its gate is recorded and not timed), then times torch and every variant on the same
questions with the same settings (`distill2edge.bench`: greedy, fixed-length answers, warm-up, each
model in its own spawned process, 2 threads by default), and writes OUT/onnx_variants.json:

    python bench/onnx_variants.py runs/<run>/stages/distill/model --out out/onnx-variants
    python bench/onnx_variants.py STUDENT --out OUT --variants fp32,optimize,int4 --limit 40 --rounds 3

Variants (comma-separated; default: all of them):
    fp32-nobind     fp32 export, bench runner without IO binding (the runner before issue 19)
    fp32            fp32 export, IO binding on
    optimize        fp32 + onnxruntime's transformer optimizer (fused RMSNorm, Skip-RMSNorm, rotary)
    int8            int8 weight-only MatMulNBits (accuracy_level 4)
    int8-level0     int8 weight-only at accuracy_level 0 (the de-quantizing fallback: the old int8 speed)
    int4            int4 weight-only MatMulNBits, blocks of 32 (embedding and tied head int8)
    optimize+int8, optimize+int4
    genai           onnxruntime-genai's builder (GroupQueryAttention, shared KV cache) run by onnxruntime-genai
    genai+int8, genai+int4   the same with MatMulNBits weights (the builder's quantizer, round to nearest)
    genai+int4-kq   int4 with the builder's k_quant_mixed: k-quant scales, the head and the most sensitive
                    layers (llama.cpp's Q4_K_M choice) int8

Exports are kept in OUT/exports/<variant> and reused by a later run. `--rounds N` times every model N
times, in rotated order, and reports the median round. The JSON's `steps` says what each step bought:
the ratio of ms per answer between a variant and the one it adds a step to, and every variant's ratio
to torch (the goal: <= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

#: variant -> (export_onnx keyword arguments, profile overrides, IO binding in the runner)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], bool]] = {
    "fp32-nobind": ({}, {}, False),
    "fp32": ({}, {}, True),
    "optimize": ({"optimize": True}, {}, True),
    "int8": ({"int8": True}, {}, True),
    "int8-level0": ({"int8": True}, {"accuracy_level": 0}, True),
    "int4": ({"int4": True}, {}, True),
    "optimize+int8": ({"optimize": True, "int8": True}, {}, True),
    "optimize+int4": ({"optimize": True, "int4": True}, {}, True),
    "genai": ({"genai": True}, {}, True),
    "genai+int8": ({"genai": True, "int8": True}, {}, True),
    "genai+int4": ({"genai": True, "int4": True}, {}, True),
    "genai+int4-kq": ({"genai": True, "int4": True}, {"genai_options": {"algo_config": "k_quant_mixed"}}, True),
}
#: (variant, the variant it adds one step to): what each step bought
STEPS = (
    ("fp32", "fp32-nobind", "IO binding"),
    ("optimize", "fp32", "transformer optimizer"),
    ("int8", "int8-level0", "int8 kernel at accuracy_level 4 instead of the de-quantizing fallback"),
    ("int8", "fp32", "int8 weights"),
    ("int4", "fp32", "int4 weights"),
    ("optimize+int8", "int8", "optimizer on int8"),
    ("optimize+int4", "int4", "optimizer on int4"),
    ("genai", "fp32", "onnxruntime-genai's graph and generation loop"),
    ("genai+int8", "genai", "int8 weights in onnxruntime-genai"),
    ("genai+int4", "genai", "int4 weights in onnxruntime-genai"),
    ("genai+int4-kq", "genai+int4", "k_quant_mixed instead of round-to-nearest int4"),
)


def export_variant(model_dir: Path, exports: Path, variant: str) -> tuple[Path | None, dict[str, Any]]:
    """Export (or reuse) one variant; returns (folder or None when its gate failed, summary)."""
    from distill2edge.export.common import ParityError
    from distill2edge.export.onnx import export_onnx
    from distill2edge.export.profiles import Profile

    kwargs, overrides, _ = VARIANTS[variant]
    folder = exports / ("fp32" if variant == "fp32-nobind" else variant)
    if (folder / "parity.json").is_file():
        return folder, _summary(json.loads((folder / "parity.json").read_text()), reused=True)
    prof = Profile(name=f"bench-{variant}", format="onnx")
    prof = prof.model_copy(update={"onnx": prof.onnx.model_copy(update=overrides)})
    t0 = time.perf_counter()
    try:
        record = export_onnx(model_dir, folder, profile=prof, **kwargs)
    except ParityError as exc:
        return None, {**_summary(exc.record), "error": str(exc)}
    return folder, {**_summary(record), "export_s": time.perf_counter() - t0}


def _summary(record: dict[str, Any], reused: bool = False) -> dict[str, Any]:
    keep = ("mean_kld", "same_top_token", "max_abs_logit_diff", "greedy_identical", "passed", "failures")
    return {
        "variant": record.get("variant"), "dtype": record.get("dtype"), "file_bytes": record.get("file_bytes"),
        "optimization": record.get("optimization"), "reused": reused,
        "gates": {k: {x: g.get(x) for x in keep} for k, g in record.get("gates", {}).items()},
    }  # fmt: skip


def time_models(models: list[tuple[str, Path, bool]], examples: list[Any], settings: Any, rounds: int) -> dict:
    """Bench every (name, path, io_binding) `rounds` times in rotated order; per name, every round's record."""
    from distill2edge.bench.measure import bench_any
    from distill2edge.bench.spec import BenchModel

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in models}
    for r in range(rounds):
        order = models[r % len(models):] + models[: r % len(models)]
        for name, path, binding in order:
            os.environ["DISTILL2EDGE_ONNX_IO_BINDING"] = "1" if binding else "0"  # read by the spawned runner
            rec = bench_any(BenchModel(path, "student", name=name).resolved(), examples, settings)
            rec.pop("predictions", None)
            runs[name].append(rec)
            print(f"[round {r + 1}] {name:14s} {rec['answer_ms']['mean']:8.1f} ms/answer  "
                  f"decode {rec['decode_tokens_per_s'] or 0:6.1f} tok/s  ({rec['runtime']})", flush=True)
    os.environ.pop("DISTILL2EDGE_ONNX_IO_BINDING", None)
    return runs


def _median_round(recs: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [r["answer_ms"]["mean"] for r in recs]
    best = recs[ms.index(statistics.median_low(ms))]
    return {
        "ms_per_answer": best["answer_ms"]["mean"], "ms_per_answer_median": best["answer_ms"]["median"],
        "ttft_ms": best["ttft_ms"]["mean"], "decode_tokens_per_s": best["decode_tokens_per_s"],
        "ms_per_answer_rounds": ms, "runtime": best["runtime"], "file_bytes": best.get("file_bytes"),
        "peak_rss_mb": best.get("peak_rss_mb"), "accuracy": best.get("accuracy"),
    }  # fmt: skip


def steps(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step's ms-per-answer ratio (after / before; < 1 is faster) and each variant's ratio to torch."""
    out = []
    for after, before, what in STEPS:
        if after in results and before in results:
            ratio = results[after]["ms_per_answer"] / results[before]["ms_per_answer"]
            out.append({"step": what, "from": before, "to": after, "ms_ratio": ratio})
    torch_ms = results["torch"]["ms_per_answer"]
    for name, res in results.items():
        if name != "torch":
            out.append({"step": "against torch", "from": "torch", "to": name, "ms_ratio": res["ms_per_answer"] / torch_ms,
                        "goal_met": res["ms_per_answer"] <= 0.5 * torch_ms})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="student Hugging Face folder (timed in torch too)")
    ap.add_argument("--out", type=Path, required=True, help="folder: exports/ and onnx_variants.json")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--data", default="embedded:telecom-qa", help="questions (as `distill2edge bench --data`)")
    ap.add_argument("--limit", type=int, default=40, help="questions timed per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    from distill2edge.bench.api import load_questions
    from distill2edge.bench.measure import BenchSettings
    from distill2edge.bench.system import machine_info

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    exports = args.out / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    export_info, models = {}, [("torch", args.model, True)]
    for v in variants:
        print(f"[export] {v}", flush=True)
        folder, export_info[v] = export_variant(args.model, exports, v)
        if folder is None:
            print(f"[export] {v}: gate failed, not timed: {export_info[v]['error']}", flush=True)
        else:
            models.append((v, folder, VARIANTS[v][2]))
    examples = load_questions(args.data, "test", args.limit)
    settings = BenchSettings(threads=args.threads, max_new_tokens=args.max_new_tokens, batch_size=0)
    runs = time_models(models, examples, settings, args.rounds)
    results = {name: _median_round(recs) for name, recs in runs.items()}
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(), "model": str(args.model),
        "settings": {**settings.to_dict(), "rounds": args.rounds, "n_questions": len(examples), "data": args.data},
        "results": results, "steps": steps(results), "exports": export_info,
    }  # fmt: skip
    out = args.out / "onnx_variants.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    for s in report["steps"]:
        print(f"{s['step']:70s} {s['from']:>14s} -> {s['to']:14s} x{s['ms_ratio']:.2f} ms/answer")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
