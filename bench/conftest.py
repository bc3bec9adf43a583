"""Fixtures of the benchmark suites: a model zoo built on demand, runners kept open, and the timings
that the CI gates compare.

Not collected by the normal `pytest` run (testpaths = tests); CI runs
`.venv/bin/python -m pytest bench --benchmark-json=.benchmarks/ci/bench.json` after the tests.

Models (built once per session in a temporary folder, only when a selected benchmark needs them):
- `tiny-{torch,onnx,gguf}`: a random 2-layer llama (hidden 64) with SmolLM2's tokenizer, in torch, as
  an fp32 ONNX export and as an F32 GGUF export.
- `teacher-torch`: SmolLM2-135M-Instruct (the embedded teacher), fp32.
- `student-torch`, `student-onnx`, `student-gguf`: the 8-layer student cut from it (untrained), in torch,
  fp32 ONNX and F16 GGUF. F16 because the untrained student's Q8_0 and Q4_K_M exports fail the export
  parity gate (mean KLD 0.044 and 0.77 against 0.03 and 0.2): its logits are nearly flat.
Every export goes through `distill2edge.export` and so passes its parity gate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

THREADS = int(os.environ.get("D2E_BENCH_THREADS", "2"))
"""Threads for every runtime (torch, onnxruntime, llama.cpp)."""

TIMINGS: dict[str, dict[str, float]] = {}
"""Seconds per round (`min`, `median`) of each benchmark run in this session, by `<suite>/<model>`."""
GATES: dict[str, dict[str, Any]] = {}
"""Gate results of this session; written into the benchmark JSON by `pytest_benchmark_update_json`."""


def pytest_benchmark_update_json(config: Any, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """Add the threads and the gate ratios (measured in this same run) to the --benchmark-json file."""
    output_json["distill2edge"] = {"threads": THREADS, "gates": GATES, "timings_s": TIMINGS}


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """Gates last: they compare timings recorded by the benchmarks of this same session."""
    items.sort(key=lambda item: item.path.name == "test_gate.py")


class Zoo:
    """Builds the benchmark models on first request and keeps their paths for the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[str, tuple[str, Path]] = {}
        self._builders: dict[str, Callable[[], tuple[str, Path]]] = {
            "tiny-torch": lambda: ("torch", self._tiny()),
            "tiny-onnx": lambda: ("onnx", self._onnx(self._tiny(), "tiny-onnx")),
            "tiny-gguf": lambda: ("gguf", self._gguf(self._tiny(), "tiny.f32.gguf", "f32")),
            "teacher-torch": lambda: ("torch", self._teacher()),
            "student-torch": lambda: ("torch", self._student()),
            "student-onnx": lambda: ("onnx", self._onnx(self._student(), "student-onnx")),
            "student-gguf": lambda: ("gguf", self._gguf(self._student(), "student.f16.gguf", "f16")),
        }

    def get(self, name: str) -> tuple[str, Path]:
        """(format, path) of model `name`, building it (and what it derives from) if needed."""
        if name not in self._paths:
            self._paths[name] = self._builders[name]()
        return self._paths[name]

    def _once(self, key: str, build: Callable[[Path], Path]) -> Path:
        out = self.root / key
        return out if out.exists() else build(out)

    def _teacher(self) -> Path:
        from distill2edge.models.embedded import ensure_embedded

        return ensure_embedded("smollm2-135m-instruct", progress=False)

    def _student(self) -> Path:
        from distill2edge.models import init_student_from_teacher

        return self._once("student", lambda out: init_student_from_teacher(
            "embedded:smollm2-135m-instruct", out, num_layers=8))

    def _tiny(self) -> Path:
        def build(out: Path) -> Path:
            import torch
            from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

            tok = AutoTokenizer.from_pretrained(self._teacher())
            cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                              tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
            torch.manual_seed(0)
            LlamaForCausalLM(cfg).save_pretrained(out)
            tok.save_pretrained(out)
            return out

        return self._once("tiny", build)

    def _onnx(self, src: Path, key: str) -> Path:
        from distill2edge.export.onnx import export_onnx

        return self._once(key, lambda out: (export_onnx(src, out), out)[1])

    def _gguf(self, src: Path, key: str, quant: str) -> Path:
        from distill2edge.export.gguf import export_gguf

        return self._once(key, lambda out: (export_gguf(src, out, quant=quant, threads=THREADS), out)[1])


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("bench-zoo"))


@pytest.fixture(scope="session")
def runner_for(zoo: Zoo) -> Iterator[Callable[[str], Any]]:
    """`runner_for(name)`: the model loaded in its runtime with THREADS threads, kept for the session."""
    from distill2edge.bench.runners import open_runner

    open_: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in open_:
            fmt, path = zoo.get(name)
            open_[name] = open_runner(fmt, path, THREADS)
        return open_[name]

    yield get
    for r in open_.values():
        r.close()


@pytest.fixture(scope="session")
def timings() -> dict[str, dict[str, float]]:
    return TIMINGS


@pytest.fixture(scope="session")
def gates() -> dict[str, dict[str, Any]]:
    return GATES
