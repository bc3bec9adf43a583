"""Runtimes that answer questions the same way: greedy, one prompt of token ids in, new token ids out,
with the time to the first new token and the total time.

A runner is registered per format (`torch`, `onnx`, `gguf`) with `@register_runner`; `open_runner`
builds the right one. Every runner exposes an HF-like `tokenizer` (callable returning `input_ids`,
`decode(ids, skip_special_tokens=True)`) so prompts are built by `data.tokenize.encode_for_generation`
for every runtime, each with its own tokenizer.

Generation is fixed-length by default (`stop_at_answer=False`): exactly `max_new_tokens` tokens, EOS
not suppressed but ignored, so every model does the same work and decode speed compares cleanly. The
answer is still cut where a stopping run would have stopped (first EOS, then first line), so accuracy
is the same either way. `stop_at_answer=True` stops at EOS or a newline, as a deployed model would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import distill2edge.bench.genai  # noqa: F401  (registers `onnx-genai`)
import distill2edge.bench.llamacpp  # noqa: F401  (registers `gguf`)
from distill2edge.bench.roofline import ModelFacts
from distill2edge.bench.runner_base import RUNNERS, Generation, Runner, register_runner

__all__ = ["RUNNERS", "Generation", "OnnxRunner", "Runner", "TorchRunner", "open_runner", "register_runner"]


def open_runner(fmt: str, path: Path, threads: int, context: int = 1024) -> Runner:
    """Load `path` in the runner registered for `fmt`, for prompts + answers up to `context` tokens."""
    if fmt not in RUNNERS:
        raise ValueError(f"no runner for format {fmt!r}; registered: {', '.join(RUNNERS)}")
    return RUNNERS[fmt](path, threads, context)


class _FirstTokenClock:
    """A `generate(streamer=...)` hook that notes when the first new token arrives.

    transformers calls `put` once with the prompt, then once per generated step (batch of one).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


class _HFGenerateRunner(Runner):
    """Shared by torch and optimum's ORTModelForCausalLM: both generate through transformers."""

    model: Any

    def _load_tokenizer(self) -> None:
        from transformers import AutoTokenizer

        from distill2edge.data.tokenize import pad_token_id

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        eos = self.tokenizer.eos_token_id
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = {eos} if eos is not None else set()
        ids |= set(gen_eos) if isinstance(gen_eos, list) else ({gen_eos} if gen_eos is not None else set())
        self.eos_ids = frozenset(ids)
        self.pad_id = pad_token_id(self.tokenizer)

    def _generate(self, batch: dict[str, Any], max_new_tokens: int, stop_at_answer: bool, **kw: Any) -> Any:
        import torch

        stop: dict[str, Any] = (
            {"stop_strings": ["\n"], "tokenizer": self.tokenizer}
            if stop_at_answer
            else {"eos_token_id": None}  # None: ignore EOS instead of suppressing it (min_new_tokens would)
        )
        with torch.inference_mode():
            return self.model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                pad_token_id=self.pad_id, **stop, **kw,
            )

    def generate(self, ids: list[int], max_new_tokens: int, stop_at_answer: bool = False) -> Generation:
        import torch

        x = torch.tensor([ids], dtype=torch.long)
        clock = _FirstTokenClock()
        t0 = time.perf_counter()
        out = self._generate(
            {"input_ids": x, "attention_mask": torch.ones_like(x)}, max_new_tokens, stop_at_answer, streamer=clock
        )
        t1 = time.perf_counter()
        return Generation(out[0, len(ids):].tolist(), (clock.first or t1) - t0, t1 - t0)

    def generate_batch(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[list[int]] | None:
        from distill2edge.data.tokenize import collate

        batch = collate([{"input_ids": list(p)} for p in prompts], self.pad_id, padding_side="left")
        out = self._generate(batch, max_new_tokens, stop_at_answer=False)
        return out[:, batch["input_ids"].shape[1]:].tolist()


@register_runner("torch")
class TorchRunner(_HFGenerateRunner):
    """A Hugging Face folder in torch (the dtype it was saved in, on CPU)."""

    def __init__(self, path: Path, threads: int, context: int = 1024) -> None:
        super().__init__(path, threads, context)
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype="auto").eval()
        self.runtime = f"torch {torch.__version__}"
        self._load_tokenizer()

    def facts(self) -> ModelFacts:
        from distill2edge.bench.roofline import torch_facts

        return torch_facts(self.model, self.path)


@register_runner("onnx")
class OnnxRunner(_HFGenerateRunner):
    """An optimum ONNX folder (`distill2edge export onnx`) in onnxruntime's CPU provider.

    With `io_binding` (the default) optimum binds the inputs, the KV cache included, and preallocated torch
    output buffers to the session (`run_with_iobinding`) instead of converting them to and from numpy on
    every step. optimum turns it on by itself only for the CUDA provider (`use_io_binding=None` means
    False on CPU), so it is asked for explicitly; `runtime` says whether it is on. The environment variable
    `DISTILL2EDGE_ONNX_IO_BINDING=0` turns it off (spawned benchmark processes inherit it), to compare.
    """

    io_binding: ClassVar[bool] = os.environ.get("DISTILL2EDGE_ONNX_IO_BINDING", "1") != "0"

    def __init__(self, path: Path, threads: int, context: int = 1024) -> None:
        super().__init__(path, threads, context)
        import torch

        from distill2edge.runtimes.onnx import open_ort_lm, runtime_name

        torch.set_num_threads(threads)  # logits processing in generate() runs in torch
        self.model = open_ort_lm(self.path, threads=threads, io_binding=self.io_binding)
        self.runtime = runtime_name(self.model)
        self._load_tokenizer()

    def facts(self) -> ModelFacts:
        from distill2edge.bench.roofline import onnx_facts

        return onnx_facts(self.path)
