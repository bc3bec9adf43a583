"""The onnx-genai runner: detected from genai_config.json, answers as torch does, reads its graph's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_genai")

from distill2edge.bench.runners import TorchRunner, open_runner
from distill2edge.bench.spec import detect_format


def test_genai_folder_runs_in_onnxruntime_genai(tiny_genai: Path, tiny_onnx: Path) -> None:
    assert detect_format(tiny_genai) == "onnx-genai" and detect_format(tiny_onnx) == "onnx"
    runner = open_runner("onnx-genai", tiny_genai, threads=1)
    assert runner.runtime.startswith("onnxruntime-genai 0.15")


def test_same_fixed_length_tokens_as_torch(tiny_genai: Path, tiny_llama_dir: Path) -> None:
    """Greedy, exactly max_new_tokens, EOS ignored rather than suppressed: the torch runner's semantics."""
    genai, torch_runner = open_runner("onnx-genai", tiny_genai, threads=1), TorchRunner(tiny_llama_dir, threads=1)
    for ids in ([1, 7, 42, 3, 99, 5], [1, 200, 13, 13, 64]):
        got, want = genai.generate(ids, 12), torch_runner.generate(ids, 12)
        assert got.tokens == want.tokens and len(got.tokens) == 12
        assert 0 < got.ttft_s <= got.total_s
    assert genai.eos_ids == torch_runner.eos_ids


def test_stop_at_answer_stops_at_eos(tiny_genai: Path) -> None:
    runner = open_runner("onnx-genai", tiny_genai, threads=1)
    full = runner.generate([1, 7, 42, 3], 40).tokens
    stopped = runner.generate([1, 7, 42, 3], 40, stop_at_answer=True).tokens
    cut = next((i + 1 for i, t in enumerate(full) if t in runner.eos_ids or "\n" in runner.tokenizer.decode([t])), 40)
    assert stopped == full[:cut]


def test_facts_count_the_graph_as_stored(tiny_genai: Path, tiny_onnx: Path) -> None:
    """fp32 builds of one model read the same weight bytes per token in both exporters' graphs, apart from
    the rotary tables the builder stores (cos/sin for every position) and norm weights optimum folds."""
    import onnx
    from onnx import numpy_helper

    genai, optimum = open_runner("onnx-genai", tiny_genai, 1).facts(), open_runner("onnx", tiny_onnx, 1).facts()
    assert genai.params == optimum.params and genai.kv_bytes_per_position == optimum.kv_bytes_per_position
    graph = onnx.load(str(tiny_genai / "model.onnx")).graph
    rotary = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer if t.name in ("cos_cache", "sin_cache"))
    assert rotary > 0
    assert genai.weight_bytes_per_token - rotary == pytest.approx(optimum.weight_bytes_per_token, rel=0.01)
