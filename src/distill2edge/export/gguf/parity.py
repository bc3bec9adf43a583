"""Run a GGUF in llama.cpp and compare its logits with torch on the same token ids."""

from __future__ import annotations

from pathlib import Path

from distill2edge.export.common import ParityReport, TorchReference
from distill2edge.logit_compare import compare_logits
from distill2edge.runtimes import llamacpp


def gguf_parity(path: Path, ref: TorchReference, threads: int) -> ParityReport:
    """Metrics of the GGUF at `path` against torch's logits on every gate text, and whether llama.cpp's
    greedy continuations of the sample prompts equal torch's (None when none were asked for)."""
    n_new = max((len(g) for g in ref.greedy), default=0)
    n_ctx = max(64, max(len(s) for s in ref.ids) + n_new)
    llm = llamacpp.open_gguf(path, n_ctx=n_ctx, threads=threads, exact=True)
    try:
        got = [llamacpp.all_logits(llm, s) for s in ref.ids]
        greedy = [llamacpp.greedy(llm, s, len(g)) for s, g in zip(ref.ids, ref.greedy)] if n_new else None
    finally:
        llm.close()
    return ParityReport(
        runtime=llamacpp.runtime_name(),
        n_prompts=len(ref.ids),
        n_positions=sum(len(s) for s in ref.ids),
        greedy_identical=None if greedy is None else greedy == ref.greedy,
        **compare_logits(ref.logits, got).metrics(),
    )
