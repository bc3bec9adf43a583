"""The `onnx-genai` runner: a folder built by `distill2edge export onnx --genai`, run by onnxruntime-genai.

onnxruntime-genai runs the decode loop in C++ with a KV cache that the graph's GroupQueryAttention reads and
writes in place, so a step costs one session run and no cache copy. The runner feeds the prompt, then one
token per step, choosing greedily from the returned logits itself (`export.onnx_genai.GenAIDecoder`: the
runtime's own search would end at EOS, and fixed-length answers must go on past it as in the other runners).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from distill2edge.bench.roofline import ModelFacts
from distill2edge.bench.runner_base import Generation, Runner, register_runner


@register_runner("onnx-genai")
class GenAIRunner(Runner):
    """An onnxruntime-genai folder (genai_config.json + model.onnx) on the CPU, `threads` intra-op threads."""

    def __init__(self, path: Path, threads: int, context: int = 1024) -> None:
        super().__init__(path, threads, context)
        try:
            import onnxruntime
            import onnxruntime_genai as og
        except ImportError as exc:
            raise ImportError(f"benchmarking a --genai folder needs onnxruntime-genai 0.15 ({exc})") from exc
        from transformers import AutoTokenizer

        from distill2edge.export.onnx_genai import GenAIDecoder, open_genai

        self.decoder = GenAIDecoder(open_genai(self.path, threads))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        eos = json.loads((self.path / "genai_config.json").read_text())["model"].get("eos_token_id")
        ids = set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = frozenset(ids)
        self.runtime = f"onnxruntime-genai {og.__version__} (onnxruntime {onnxruntime.__version__})"

    def generate(self, ids: list[int], max_new_tokens: int, stop_at_answer: bool = False) -> Generation:
        t0 = time.perf_counter()
        self.decoder.start(len(ids) + max_new_tokens + 1)
        logits, new, first = self.decoder.feed(ids), [], None
        for i in range(max_new_tokens):
            new.append(int(np.argmax(logits)))
            first = first or time.perf_counter()
            if stop_at_answer and (new[-1] in self.eos_ids or "\n" in self.tokenizer.decode(new[-1:])):
                break
            if i + 1 < max_new_tokens:
                logits = self.decoder.feed(new[-1:])
        t1 = time.perf_counter()
        return Generation(new, (first or t1) - t0, t1 - t0)

    def facts(self) -> ModelFacts:
        from distill2edge.bench.roofline import onnx_facts

        return onnx_facts(self.path)
