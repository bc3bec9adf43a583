"""Run a GGUF in llama.cpp and compare its logits with torch on the same token ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from distill2edge.export.common import ParityReport, TorchReference
from distill2edge.logit_compare import compare_logits
from distill2edge.models.llama_parity import llama_greedy, quiet_stderr


def llama_runtime() -> str:
    """The runtime, named as what it is: the llama-cpp-python binding's version and the llama.cpp library
    it loaded (`llama_version()`, when the binding exposes it)."""
    name = f"llama-cpp-python {llama_cpp.__version__}"
    try:
        lib = llama_cpp.llama_cpp.llama_version()
        return f"{name} (llama.cpp {lib.decode() if isinstance(lib, bytes) else lib})"
    except (AttributeError, OSError):
        return name


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


def gguf_parity(path: Path, ref: TorchReference, threads: int) -> ParityReport:
    """Metrics of the GGUF at `path` against torch's logits on every gate text, and whether llama.cpp's
    greedy continuations of the sample prompts equal torch's (None when none were asked for)."""
    n_new = max((len(g) for g in ref.greedy), default=0)
    n_ctx = max(64, max(len(s) for s in ref.ids) + n_new)
    llm = load_llama(path, n_ctx=n_ctx, threads=threads)
    try:
        got = llama_logits(llm, ref.ids)
        greedy = [llama_greedy(llm, s, len(g)) for s, g in zip(ref.ids, ref.greedy)] if n_new else None
    finally:
        llm.close()
    return ParityReport(
        runtime=llama_runtime(),
        n_prompts=len(ref.ids),
        n_positions=sum(len(s) for s in ref.ids),
        greedy_identical=None if greedy is None else greedy == ref.greedy,
        **compare_logits(ref.logits, got).metrics(),
    )
