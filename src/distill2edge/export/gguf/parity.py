"""Run a GGUF in llama.cpp and compare its logits with torch on the same token ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from distill2edge.export.common import ParityReport, compare_logits
from distill2edge.models.llama_parity import quiet_stderr


def load_llama(
    path: Path, *, n_ctx: int = 512, threads: int = 2, vocab_only: bool = False
) -> llama_cpp.Llama:
    """Open a GGUF for parity checks: every position's logits kept, K/V cache in F32 (no cache rounding)."""
    with quiet_stderr():
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=True,
            vocab_only=vocab_only,
            verbose=False,
            type_k=llama_cpp.GGML_TYPE_F32,
            type_v=llama_cpp.GGML_TYPE_F32,
        )


def llama_logits(llm: llama_cpp.Llama, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Logits `[seq, n_vocab]` per token-id list, each prompt from an empty cache."""
    out = []
    for seq in ids:
        llm.reset()
        llm.eval(list(seq))
        out.append(np.array(llm.scores[: len(seq)], dtype=np.float32))
    return out


def gguf_parity(
    path: Path, ids: Sequence[Sequence[int]], ref: Sequence[np.ndarray], threads: int
) -> ParityReport:
    """Metrics of the GGUF at `path` against the torch logits `ref` (one `[seq, vocab]` per prompt)."""
    n_ctx = max(64, max(len(s) for s in ids))
    llm = load_llama(path, n_ctx=n_ctx, threads=threads)
    try:
        got = llama_logits(llm, ids)
    finally:
        llm.close()
    m = compare_logits(ref, got)
    return ParityReport(
        runtime=f"llama.cpp {llama_cpp.__version__}",
        n_prompts=len(ids),
        n_positions=sum(len(s) for s in ids),
        **m,
    )
