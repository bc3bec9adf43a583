"""The llama.cpp runner (llama-cpp-python): a GGUF file, greedy, its own tokenizer.

llama-cpp-python's `Llama` decodes one sequence at a time, so there is no batched questions/s here.
The KV cache is llama.cpp's default (F16); `reset()` before every answer, so no prompt prefix is reused
from the previous question (that would flatter the time to first token).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distill2edge.bench.roofline import ModelFacts, gguf_facts
from distill2edge.bench.runner_base import Generation, Runner, register_runner
from distill2edge.runtimes import llamacpp


class LlamaTokenizer:
    """The HF-tokenizer calls `encode_for_generation` makes, answered by llama.cpp's own tokenizer."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": llamacpp.tokenize(self._llm, text, add_bos=add_special_tokens)}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._llm.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", errors="replace")


@register_runner("gguf")
class LlamaCppRunner(Runner):
    """A GGUF file in llama.cpp with `threads` threads for prompt and decode. `llama_settings` override
    the `llama_cpp.Llama` arguments (e.g. `n_ubatch`, `n_threads_batch`; bench/llamacpp_settings.py tries
    some); the ones used are kept in `self.settings`."""

    def __init__(self, path: Path, threads: int, context: int = 1024, **llama_settings: Any) -> None:
        super().__init__(path, threads, context)
        self.settings = {"n_ctx": context, "n_batch": context, "n_threads": threads, "n_threads_batch": threads,
                         **llama_settings}
        self.llm = llamacpp.open_gguf(self.path, **self.settings)
        self.runtime = llamacpp.runtime_name()
        self.tokenizer = LlamaTokenizer(self.llm)
        self.eos_ids = frozenset({self.llm.token_eos()})

    def generate(self, ids: list[int], max_new_tokens: int, stop_at_answer: bool = False) -> Generation:
        if len(ids) + max_new_tokens > self.context:
            raise ValueError(
                f"{self.path.name}: prompt of {len(ids)} + {max_new_tokens} new tokens exceeds the context of "
                f"{self.context} tokens it was opened with"
            )
        self.llm.reset()
        out: list[int] = []
        first: float | None = None
        t0 = time.perf_counter()
        for tok in self.llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if first is None:
                first = time.perf_counter()
            out.append(tok)
            if len(out) >= max_new_tokens:
                break
            if stop_at_answer and (tok in self.eos_ids or "\n" in self.tokenizer.decode([tok])):
                break
        t1 = time.perf_counter()
        return Generation(out, (first or t1) - t0, t1 - t0)

    def facts(self) -> ModelFacts:
        return gguf_facts(self.path)

    def close(self) -> None:
        self.llm.close()
