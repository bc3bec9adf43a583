"""The runner interface: `Runner` (one loaded model in one runtime), its `Generation`, and the registry of
runner classes by format (`register_runner`, `RUNNERS`).

The runtimes themselves live in `runners.py` (torch, onnxruntime) and `llamacpp.py` (llama.cpp); both
import this module, and `runners.open_runner` builds the one registered for a format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from distill2edge.bench.roofline import ModelFacts
from distill2edge.evaluate.generate import clean_answer

RUNNERS: dict[str, type[Runner]] = {}
"""Runner classes by format name."""


def register_runner(fmt: str) -> Callable[[type[Runner]], type[Runner]]:
    """Class decorator registering a Runner for `fmt`; a format can be registered only once."""

    def add(cls: type[Runner]) -> type[Runner]:
        if fmt in RUNNERS:
            raise ValueError(f"a runner for {fmt!r} is already registered")
        cls.fmt = fmt
        RUNNERS[fmt] = cls
        return cls

    return add


@dataclass
class Generation:
    """One greedy answer: new token ids (EOS kept if generated), seconds to the first one and in all."""

    tokens: list[int]
    ttft_s: float
    total_s: float


class Runner(ABC):
    """A loaded model in one runtime, with `threads` compute threads."""

    fmt: ClassVar[str] = ""
    runtime: str = ""
    """Runtime and version, e.g. `torch 2.13.0`."""
    tokenizer: Any
    eos_ids: frozenset[int] = frozenset()

    def __init__(self, path: Path, threads: int, context: int = 1024) -> None:
        self.path = Path(path)
        self.threads = threads
        self.context = context
        """Longest prompt + answer the runner must hold (sizes llama.cpp's KV cache)."""

    @abstractmethod
    def generate(self, ids: list[int], max_new_tokens: int, stop_at_answer: bool = False) -> Generation:
        """Greedy continuation of the prompt `ids` (batch of one)."""

    def generate_batch(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[list[int]] | None:
        """Fixed-length greedy continuations of several prompts at once, or None where the runtime
        has no batched generation."""
        return None

    @abstractmethod
    def facts(self) -> ModelFacts:
        """Parameters, file size and bytes read per decoded token (see roofline.py)."""

    def answer_text(self, tokens: Sequence[int]) -> str:
        """The answer a stopping run would give: tokens up to the first EOS, decoded, first line."""
        cut = list(tokens)
        for i, t in enumerate(cut):
            if t in self.eos_ids:
                cut = cut[:i]
                break
        return clean_answer(self.tokenizer.decode(cut, skip_special_tokens=True))

    def close(self) -> None:  # noqa: B027  (optional hook: a runner without resources keeps this no-op)
        """Release the model's runtime resources (llama.cpp contexts); the default has none."""
