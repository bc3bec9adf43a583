"""The size / quality trade-off of GGUF types for one model, in one table.

    quant_table("student/", [("q8_0", "auto"), ("q4_0", "q4_0"), ("iq4_nl", "auto")])

The model is written once as F32, each (type, embedding type) is quantized from it by llama.cpp and run
on the gate texts against torch. A row gives the bits per weight achieved (the whole file and the tensors
alone), the embedding's actual type, mean KLD, same-top-token rate, and whether the gate for that type
(profile or size class, as `export gguf` applies it) passes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill2edge.export.common import SAMPLE_PROMPTS, check_model_dir, gate, load_torch, torch_reference
from distill2edge.export.gguf.parity import gguf_parity
from distill2edge.export.gguf.quantize import inspect_gguf, quantize
from distill2edge.export.gguf.writer import write_float_gguf
from distill2edge.export.lineage import lineage
from distill2edge.export.profiles import Profile, load_profile

#: The default rows: the 8-bit reference, the K-quant that falls back at width 576, the 4/5-bit types
#: with 32-value blocks, each 4-bit one also with a 4-bit embedding.
DEFAULT_ROWS: tuple[tuple[str, str], ...] = (
    ("q8_0", "auto"),
    ("q5_0", "auto"),
    ("q4_k_m", "auto"),
    ("q4_1", "auto"),
    ("q4_0", "auto"),
    ("iq4_nl", "auto"),
    ("q4_1", "q4_1"),
    ("q4_0", "q4_0"),
    ("iq4_nl", "iq4_nl"),
)


def quant_table(
    model_dir: str | os.PathLike[str],
    rows: Sequence[tuple[str, str]] = DEFAULT_ROWS,
    profile: Profile | str | None = None,
    threads: int = 2,
) -> list[dict[str, Any]]:
    """One row per (type, embedding type): bits per weight (file, tensors), KLD, same top token, gate."""
    src = check_model_dir(model_dir)
    prof = profile if isinstance(profile, Profile) else load_profile(profile, "gguf")
    model, tok = load_torch(src)
    ref = torch_reference(model, tok, SAMPLE_PROMPTS, 0)
    n_params = sum(p.numel() for p in model.parameters())
    out = []
    with tempfile.TemporaryDirectory(prefix=".quant_table-") as tmp:
        f32 = Path(tmp) / "model.f32.gguf"
        write_float_gguf(model, tok, src, f32, "f32", lineage(src))
        del model
        for quant, emb in rows:
            path = Path(tmp) / f"{quant}.{emb}.gguf"
            quantize(f32, path, quant, threads, emb)
            info = inspect_gguf(path, quant)
            g, source = prof.gguf.gate_for(quant, n_params)
            rep = gate(gguf_parity(path, ref, threads), max_kld=g.max_kld, min_same_top=g.min_same_top)
            out.append({
                "quant": quant, "embedding": emb, "embedding_type": info["embedding_type"],
                "file_bpw": info["file_bpw"], "tensor_bpw": info["effective_bpw"],
                "file_mb": info["file_bytes"] / 1e6,  # type: ignore[operator]
                "mean_kld": rep.mean_kld, "same_top_token": rep.same_top_token,
                "n_positions": rep.n_positions, "gate": source, "thresholds": rep.thresholds,
                "passed": rep.passed,
            })  # fmt: skip
            path.unlink()
    return out


def table_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    """The rows as a Markdown table (what `distill2edge export gguf-table` prints)."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| type | embedding | file bpw | tensor bpw | MB | mean KLD | same top | gate (KLD, same top) | pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        th = r["thresholds"]
        lines.append(
            f"| {r['quant']} | {r['embedding_type']} ({r['embedding']}) | {r['file_bpw']:.2f} | "
            f"{r['tensor_bpw']:.2f} | {r['file_mb']:.1f} | {r['mean_kld']:.4f} | {r['same_top_token']:.3f} | "
            f"{th.get('mean_kld', '-')}, {th.get('same_top_token', '-')} | {'yes' if r['passed'] else 'no'} |"
        )
    n = rows[0]["n_positions"] if rows else 0
    return "\n".join([*lines, "", f"{n} positions per row; gate: {rows[0]['gate'] if rows else '-'}", ""])
