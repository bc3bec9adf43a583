"""`distill2edge export onnx|gguf MODEL --out PATH`: export a HF folder for an edge runtime, gated on parity.

Exit status: 0 only when the export passed every parity gate and was written; 1 when a gate failed
(nothing written, numbers printed); 2 for usage or input errors (`error: ...`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

_GGUF_HELP = """Convert a Hugging Face causal LM folder to GGUF for llama.cpp / Ollama.

The model is written as F32/F16/BF16 by distill2edge's own writer and, for the quantized types, quantized
by llama.cpp (Q4_0/Q4_1/IQ4_NL/Q5_0/Q5_1 fit any width divisible by 32; K-quants need 256). The file is then run in llama.cpp (F32 KV cache) on sample prompts and compared with torch:
max |dlogit| for F32, mean KL divergence and same-top-token rate for every type, with thresholds from the
profile. Only a passing export is written, with its sidecars named after it (out/student.q8_0.gguf gets
student.q8_0.parity.json, the model card student.q8_0.md and an Ollama student.q8_0.Modelfile); a file of
that name the user wrote is never overwritten. The effective bits per weight are reported: K-quants need rows divisible by 256, and
llama.cpp falls back to other types (with a warning here) when they are not.
"""
_ONNX_HELP = """Convert a Hugging Face causal LM folder to ONNX with optimum (text generation with past key
values); the folder loads with optimum.onnxruntime.ORTModelForCausalLM. The ONNX logits must match torch
within the profile's tolerance (relative to the logit scale) and greedy generations must be identical;
with --int8 (or --int4) the MatMul weights are quantized by onnxruntime and gated on mean KLD and
same-top-token rate; --optimize fuses the graph first (onnxruntime's transformer optimizer) and gates the
fused graph like the exported one. --genai builds the folder with onnxruntime-genai's model builder
instead (GroupQueryAttention with a KV cache shared between steps, fused norms; fp32, or MatMulNBits with
--int8/--int4) for onnxruntime-genai's generation loop, the fastest way to run it on a CPU; that folder
is gated in onnxruntime-genai (logits at every position, greedy text) and also generates with
ORTModelForCausalLM. Needs the `onnx`
extra: pip install 'distill2edge[onnx]'.
"""
_EPILOG = """examples:
  distill2edge export gguf runs/x/student --out out/student.q4_k_m.gguf --quant q4_k_m
  distill2edge export gguf runs/x/student --out out/pi5/student.gguf --profile raspberry-pi-5
  distill2edge export gguf runs/x/student --out out/student.q4_0.gguf --quant q4_0 --embedding-type q4_0
  distill2edge export gguf-table runs/x/student
  distill2edge export onnx runs/x/student --out out/student-onnx --int8
  distill2edge export onnx runs/x/student --out out/student-onnx-q4 --optimize --int4
  distill2edge export onnx runs/x/student --out out/student-genai-q4 --genai --int4   # onnxruntime-genai
  distill2edge export onnx runs/x/student --out out/orin --profile jetson-orin
profiles shipped: cpu-laptop, raspberry-pi-5, jetson-orin, android-onnx-int8, cpu-onnx-genai (or a YAML file)
"""


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `export` with its `onnx` and `gguf` subcommands on the top-level subparsers."""
    p = subparsers.add_parser(
        "export",
        help="export a model to GGUF or ONNX, gated on parity with torch",
        description="Export a model for an edge device; see `export gguf --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    sub = p.add_subparsers(dest="export_format", required=True)
    from distill2edge.export.gguf import GGUF_TYPES
    from distill2edge.export.gguf.quantize import EMBEDDING_TYPES

    g = sub.add_parser(
        "gguf",
        help="GGUF for llama.cpp / Ollama",
        description=_GGUF_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    g.add_argument("model", type=Path, help="Hugging Face model folder (config.json, weights, tokenizer)")
    g.add_argument("--out", type=Path, required=True, help="GGUF file to write (sidecars named after it go beside it)")
    g.add_argument("--quant", choices=GGUF_TYPES, help="tensor type (default: the profile's, else q8_0)")
    g.add_argument("--threads", type=int, help="llama.cpp threads (default: the profile's)")
    g.add_argument(
        "--embedding-type",
        choices=["auto", *EMBEDDING_TYPES],
        help="type of the token embedding / tied output head (default: the profile's, else auto = "
        "llama.cpp's choice, Q8_0 at SmolLM2's width); a 4-bit one is what makes a 4-bit file ~4.5 bpw",
    )
    g.add_argument("--profile", help="device profile: a shipped name or a YAML file")

    t = sub.add_parser(
        "gguf-table",
        help="size / quality table of GGUF types for one model (nothing exported)",
        description="Quantize the model to each GGUF type (and each 4-bit type with a 4-bit embedding), run "
        "every file in llama.cpp against torch and print bits per weight (file and tensors), mean KLD, "
        "same-top-token rate and whether the gate passes.",
    )
    t.add_argument("model", type=Path, help="Hugging Face model folder")
    t.add_argument("--rows", help="comma-separated TYPE[:EMBEDDING] (default: q8_0 ... iq4_nl:iq4_nl)")
    t.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    t.add_argument("--profile", help="device profile whose gates apply (default: the size class's)")
    t.add_argument("--json", type=Path, help="also write the rows to this JSON file")

    _add_onnx_parser(sub)


def _add_onnx_parser(sub: argparse._SubParsersAction) -> None:
    """`export onnx` and its options."""
    o = sub.add_parser(
        "onnx",
        help="ONNX for onnxruntime (optimum, or onnxruntime-genai with --genai)",
        description=_ONNX_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    o.add_argument("model", type=Path, help="Hugging Face model folder (config.json, weights, tokenizer)")
    o.add_argument("--out", type=Path, required=True, help="folder to create (must not exist)")
    o.add_argument("--int8", action="store_true", default=None, help="int8 weights (onnxruntime), gated on mean KLD and same top token")
    o.add_argument(
        "--int8-method",
        choices=["weight_only", "dynamic"],
        help="weight_only (default: int8 MatMul weights, float activations) or dynamic (onnxruntime "
        "quantize_dynamic, activations quantized too: much less accurate on SmolLM2)",
    )
    o.add_argument(
        "--int4",
        action="store_true",
        default=None,
        help="4-bit MatMul weights (MatMulNBits, symmetric blocks of 32; embedding and tied head int8), gated on "
        "mean KLD and same top token (default thresholds: GGUF q4_0's for the model's size class)",
    )
    o.add_argument(
        "--optimize",
        action="store_true",
        default=None,
        help="fuse the graph with onnxruntime's transformer optimizer (RMSNorm, residual + RMSNorm, rotary "
        "embedding); the fused graph is gated like the exported one and the fusions are recorded",
    )
    o.add_argument(
        "--genai",
        action="store_true",
        default=None,
        help="build with onnxruntime-genai's model builder (GroupQueryAttention with a shared KV cache, fused "
        "norms; fp32, or with --int8/--int4 MatMulNBits) for onnxruntime-genai's generation loop; gated in "
        "onnxruntime-genai (needs onnxruntime-genai 0.15)",
    )
    o.add_argument("--profile", help="device profile: a shipped name or a YAML file")


def _summary(record: dict) -> str:
    lines = []
    for name, g in record.get("gates", {}).items():
        lines.append(
            f"  {name:7s} max|dlogit| {g['max_abs_logit_diff']:.3g}  mean KLD {g['mean_kld']:.3g}  "
            f"same top {g['same_top_token']:.3f}  {'PASS' if g['passed'] else 'FAIL: ' + '; '.join(g['failures'])}"
        )
    if "effective_bpw" in record:
        lines.append(
            f"  size {record['file_bytes'] / 1e6:.1f} MB, {record['file_bpw']:.2f} bits per weight in the file "
            f"({record['effective_bpw']:.2f} in tensors), embedding {record['embedding_type']}, "
            f"tensor types {record['tensor_types']}"
        )
    return "\n".join(lines)


def run_export(args: argparse.Namespace) -> int:
    """Run the parsed `export` command; returns the exit status (0 pass, 1 gate failed, 2 error)."""
    from distill2edge.export import ExportError, ParityError

    if args.export_format == "gguf-table":
        return _run_table(args)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.export_format == "gguf":
                from distill2edge.export.gguf import export_gguf

                record = export_gguf(
                    args.model,
                    args.out,
                    quant=args.quant,
                    profile=args.profile,
                    threads=args.threads,
                    embedding_type=args.embedding_type,
                )
            else:
                from distill2edge.export.onnx import export_onnx

                record = export_onnx(
                    args.model, args.out, int8=args.int8, profile=args.profile, int8_method=args.int8_method,
                    optimize=args.optimize, int4=args.int4, genai=args.genai,
                )  # fmt: skip
    except ParityError as exc:
        print(f"error: {exc}\n{_summary(exc.record)}\nnothing was written", file=sys.stderr)
        return 1
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in caught:
        if issubclass(w.category, UserWarning) and "distill2edge" in (w.filename or ""):
            print(f"warning: {w.message}", file=sys.stderr)
    print(f"wrote {args.out}\n{_summary(record)}")
    return 0


def _run_table(args: argparse.Namespace) -> int:
    """`export gguf-table`: print (and optionally save) the size / quality table."""
    import json

    from distill2edge.export import ExportError
    from distill2edge.export.gguf.table import DEFAULT_ROWS, quant_table, table_markdown

    rows = DEFAULT_ROWS
    if args.rows:
        rows = tuple((r.split(":")[0], (r.split(":") + ["auto"])[1]) for r in args.rows.split(","))
    try:
        table = quant_table(args.model, rows, profile=args.profile, threads=args.threads)
    except (ExportError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    print(table_markdown(table, str(args.model)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (the lead wires `add_export_parser` into cli/main.py)."""
    parser = argparse.ArgumentParser(prog="distill2edge")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    return run_export(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
