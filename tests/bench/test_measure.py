"""Runners and `run_bench` on the tiny model in torch, llama.cpp (F32 GGUF) and onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distill2edge.bench import (
    BenchError,
    BenchModel,
    BenchSettings,
    latency_stats,
    markdown_tables,
    run_bench,
)
from distill2edge.bench.runners import open_runner
from distill2edge.data.qa import QAExample, load_jsonl
from distill2edge.data.tokenize import encode_for_generation

FAST = BenchSettings(max_length=96, max_new_tokens=5, warmup=1, batch_size=2, isolate=False)


@pytest.fixture
def questions(qa_jsonl: Path) -> list[QAExample]:
    return load_jsonl(qa_jsonl)[:3]


def test_latency_stats_in_ms() -> None:
    s = latency_stats([0.001, 0.002, 0.003, 0.004, 0.010])
    assert s["mean"] == pytest.approx(4.0)
    assert s["median"] == pytest.approx(3.0)
    assert s["p90"] == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))


@pytest.mark.parametrize("fmt", ["torch", "gguf", "onnx"])
def test_fixed_length_answer_equals_stopping_answer(
    fmt: str, tiny_llama_dir: Path, tiny_gguf: Path, tiny_onnx: Path, questions: list[QAExample]
) -> None:
    """Fixed-length runs generate exactly max_new_tokens, yet score the answer a stopping run gives."""
    path = {"torch": tiny_llama_dir, "gguf": tiny_gguf, "onnx": tiny_onnx}[fmt]
    runner = open_runner(fmt, path, threads=1)
    try:
        for ex in questions:
            ids = encode_for_generation(runner.tokenizer, ex, FAST.template, 96, 12)
            fixed = runner.generate(ids, 12)
            stopped = runner.generate(ids, 12, stop_at_answer=True)
            assert len(fixed.tokens) == 12
            assert 0 < fixed.ttft_s <= fixed.total_s
            assert fixed.tokens[: len(stopped.tokens)] == stopped.tokens
            assert runner.answer_text(fixed.tokens) == runner.answer_text(stopped.tokens)
    finally:
        runner.close()


def test_runtimes_give_the_same_answers(
    tmp_path: Path, tiny_llama_dir: Path, tiny_gguf: Path, tiny_onnx: Path, questions: list[QAExample]
) -> None:
    models = [BenchModel(tiny_llama_dir, "teacher"), BenchModel(tiny_gguf, "student"), BenchModel(tiny_onnx, "student")]
    result = run_bench(models, questions, tmp_path, settings=FAST, log=lambda _: None)
    recs = result["models"]
    assert [m["format"] for m in recs] == ["torch", "gguf", "onnx"]
    preds = [[json.loads(line)["prediction"] for line in (tmp_path / m["predictions_file"]).open()] for m in recs]
    assert preds[0] == preds[1] == preds[2]  # F32 everywhere: greedy answers must not depend on the runtime
    for m in recs:
        assert m["n_questions"] == 3 and m["new_tokens_mean"] == 5
        assert m["ttft_ms"]["median"] <= m["answer_ms"]["median"]
        assert m["decode_tokens_per_s"] > 0 and m["questions_per_s"] > 0
        assert m["threads"] == 2 and m["runtime"]
        assert set(m["accuracy"]) == {"exact_match", "token_f1", "rouge_l"}
        assert m["roofline"]["ceiling_tokens_per_s"] > 0 and m["roofline"]["fraction"] > 0
        assert m["roofline"]["ceiling"] == "working_set" and m["roofline"]["working_set_mib"] >= 1
        assert m["roofline"]["dram_read_gb_s"] == result["bandwidth"]["read_gb_s"]
        assert m["peak_rss_mb"] is None
    assert recs[1]["questions_per_s_batched"] is None  # llama.cpp: sequential only
    assert recs[0]["questions_per_s_batched"] > 0 and recs[0]["batched_same_answer"] == 1.0
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["machine"]["cpu"] and saved["machine"]["libraries"]["torch"]
    assert saved["bandwidth"]["read_gb_s"] > 0
    for name in ("bench.md", "accuracy_latency.png", "speedup.png"):
        assert (tmp_path / name).stat().st_size > 0
    table = markdown_tables(saved)
    assert "| Role | Model | Accuracy (EM) | F1 | ROUGE-L | ms / inference | Questions/s | Speed-up |" in table
    assert "| teacher | tiny-llama" in table and "1.00x" in table
    assert "| Roofline tok/s (working set) | % of roofline (working set) |" in table


def test_isolated_run_reports_peak_rss(tmp_path: Path, tiny_gguf: Path, questions: list[QAExample]) -> None:
    settings = BenchSettings(max_length=96, max_new_tokens=3, warmup=0, isolate=True)
    bw = {"read_gb_s": 10.0, "copy_gb_s": 10.0}
    result = run_bench([BenchModel(tiny_gguf)], questions[:1], tmp_path, settings=settings, bandwidth=bw,
                       log=lambda _: None)
    rec = result["models"][0]
    assert rec["peak_rss_mb"] > rec["model_rss_mb"] > 0
    assert "spawned" in rec["rss_measured"]


def test_failed_model_leaves_no_bench_json(tmp_path: Path, tiny_llama_dir: Path, questions: list[QAExample]) -> None:
    (tmp_path / "bench.json").write_text("{}")  # a stale result from an earlier run
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(BenchError, match="bad/model.safetensors: not a readable safetensors"):  # checked before measuring
        run_bench([BenchModel(tiny_llama_dir), BenchModel(bad)], questions, tmp_path, settings=FAST,
                  bandwidth={"read_gb_s": 1.0, "copy_gb_s": 1.0}, log=lambda _: None)
    assert not (tmp_path / "bench.json").exists()
