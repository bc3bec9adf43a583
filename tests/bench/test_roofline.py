"""Bytes per decoded token, parameters and sizes agree across the torch, GGUF and ONNX views of one model;
the working-set and DRAM ceilings, the working-set measurement per size, and the tables' roofline columns."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from distill2edge.bench import ModelFacts, markdown_tables, measure_bandwidth, model_roofline, roofline
from distill2edge.bench.roofline import (
    gguf_facts,
    kv_bytes_per_position,
    onnx_facts,
    torch_facts,
    working_set_bandwidth,
)
from tests.factory import tiny_config, tiny_model

roofline_module = importlib.import_module("distill2edge.bench.roofline")  # `bench.roofline` is the function


def test_kv_bytes_formula() -> None:
    cfg = tiny_config(num_hidden_layers=3)  # hidden 64, 4 heads, 2 kv heads
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 4, 2)
    # 2 (K, V) * 3 layers * 2 kv heads * head_dim 16 * 4 bytes
    assert kv_bytes_per_position(cfg, 4) == 2 * 3 * 2 * 16 * 4


def test_torch_facts_untied_reads_one_embedding_row(tiny_llama_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    facts = torch_facts(model, tiny_llama_dir)
    emb = model.get_input_embeddings().weight
    assert not model.config.tie_word_embeddings
    assert facts.params == model.num_parameters()
    all_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert facts.weight_bytes_per_token == all_bytes - (emb.shape[0] - 1) * emb.shape[1] * 4
    assert facts.file_bytes == (tiny_llama_dir / "model.safetensors").stat().st_size
    assert facts.dtype == "float32"


def test_torch_facts_tied_reads_the_table_as_lm_head(tmp_path: Path) -> None:
    model = tiny_model(vocab_size=100, tie_word_embeddings=True)
    model.save_pretrained(tmp_path)
    facts = torch_facts(model, tmp_path)
    assert facts.weight_bytes_per_token == sum(p.numel() * 4 for p in model.parameters())


def test_gguf_and_onnx_agree_with_torch(tiny_llama_dir: Path, tiny_gguf: Path, tiny_onnx: Path) -> None:
    ref = torch_facts(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tiny_llama_dir)
    g = gguf_facts(tiny_gguf)
    o = onnx_facts(tiny_onnx)
    assert g.params == ref.params == o.params
    assert g.weight_bytes_per_token == ref.weight_bytes_per_token  # F32 GGUF: the same tensors, same bytes
    assert o.weight_bytes_per_token == pytest.approx(ref.weight_bytes_per_token, rel=0.01)
    assert g.kv_bytes_per_position == ref.kv_bytes_per_position // 2  # llama.cpp caches K/V in F16
    assert o.kv_bytes_per_position == ref.kv_bytes_per_position
    assert g.file_bytes == tiny_gguf.stat().st_size
    assert o.file_bytes >= (tiny_onnx / "model.onnx").stat().st_size
    assert json.loads((tiny_onnx / "config.json").read_text())["num_hidden_layers"] == 4


def test_roofline_arithmetic() -> None:
    facts = ModelFacts(params=10, file_bytes=1000, weight_bytes_per_token=1000, kv_bytes_per_position=10,
                       dtype="float32")
    r = roofline(facts, mean_context=100.0, decode_tokens_per_s=1e6, read_gb_s=4.0)
    assert r["bytes_per_token"] == 2000
    assert r["ceiling_tokens_per_s"] == pytest.approx(4e9 / 2000)
    assert r["fraction"] == pytest.approx(1e6 / 2e6)
    assert r["ceiling"] == "dram" and r["dram_fraction"] == r["fraction"] and r["read_gb_s"] == 4.0
    assert roofline(facts, 0.0, None, 4.0)["fraction"] is None


def test_working_set_ceiling_is_the_headline_and_dram_is_kept() -> None:
    # 2000 bytes per token; DRAM 4 GB/s -> 2e6 tok/s, the working set (in cache) 10 GB/s -> 5e6 tok/s
    facts = ModelFacts(params=10, file_bytes=1000, weight_bytes_per_token=1000, kv_bytes_per_position=10,
                       dtype="float32")
    r = roofline(facts, mean_context=100.0, decode_tokens_per_s=3e6, read_gb_s=4.0, working_set_gb_s=10.0)
    assert r["ceiling"] == "working_set" and r["read_gb_s"] == 10.0 and r["dram_read_gb_s"] == 4.0
    assert r["ceiling_tokens_per_s"] == pytest.approx(5e6) and r["fraction"] == pytest.approx(0.6)
    assert r["dram_ceiling_tokens_per_s"] == pytest.approx(2e6) and r["dram_fraction"] == pytest.approx(1.5)
    assert roofline(facts, 100.0, None, 4.0, 10.0)["dram_fraction"] is None


@pytest.fixture
def fake_measure(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Replaces measure_bandwidth with one that records (threads, mib, repeats) and reads faster on smaller
    buffers (100 GB/s / MiB, like a cache); starts from an empty per-size cache."""
    calls: list[tuple[int, int, int]] = []

    def measure(threads: int, mib: int | None = None, repeats: int = 5) -> dict:
        assert mib is not None
        calls.append((threads, mib, repeats))
        return {"read_gb_s": 100.0 / mib, "copy_gb_s": 1.0, "buffer_mib": mib, "threads": threads}

    monkeypatch.setattr(roofline_module, "_WORKING_SETS", {})
    monkeypatch.setattr(roofline_module, "measure_bandwidth", measure)
    return calls


DRAM = {"read_gb_s": 2.0, "copy_gb_s": 2.0, "buffer_mib": 1024, "threads": 2}


def test_working_set_is_measured_once_per_size(fake_measure: list[tuple[int, int, int]]) -> None:
    a = working_set_bandwidth(2, 60.4 * 2**20, DRAM)
    assert a["buffer_mib"] == 60 and a["read_gb_s"] == pytest.approx(100 / 60)
    assert working_set_bandwidth(2, 59.6 * 2**20, DRAM) is a  # the same MiB: not measured again
    working_set_bandwidth(1, 60 * 2**20, DRAM)  # other threads: measured
    working_set_bandwidth(2, 1000, DRAM)  # under a MiB: a 1 MiB buffer
    assert fake_measure == [(2, 60, 1024 // 60), (1, 60, 1024 // 60), (2, 1, 50)]  # repeats: 5 to 50
    # as large as the DRAM buffer or larger: the DRAM figure, nothing measured
    assert working_set_bandwidth(2, 1024 * 2**20, DRAM) == DRAM
    assert working_set_bandwidth(2, 14e9, DRAM) == DRAM
    assert len(fake_measure) == 3
    working_set_bandwidth(2, 900 * 2**20, DRAM)
    assert fake_measure[-1] == (2, 900, 5)  # big buffers: at least 5 repeats


def test_model_roofline_uses_the_working_set_of_its_bytes_per_token(fake_measure: list[tuple[int, int, int]]) -> None:
    # 8 MiB of weights + 1 MiB of KV per token (1 KiB x 1024 positions): a 9 MiB working set
    facts = ModelFacts(params=0, file_bytes=0, weight_bytes_per_token=8 * 2**20, kv_bytes_per_position=2**10,
                       dtype="Q8_0")
    r = model_roofline(facts, 1024.0, 1000.0, DRAM, threads=2)
    assert fake_measure == [(2, 9, 50)]  # 1024 // 9 repeats, capped at 50
    assert r["working_set_mib"] == r["working_set_buffer_mib"] == 9
    assert r["ceiling"] == "working_set" and r["read_gb_s"] == pytest.approx(100 / 9)
    assert r["ceiling_tokens_per_s"] == pytest.approx(100 / 9 * 1e9 / (9 * 2**20))
    assert r["dram_ceiling_tokens_per_s"] == pytest.approx(2e9 / (9 * 2**20))
    assert r["fraction"] == pytest.approx(1000.0 / r["ceiling_tokens_per_s"])
    assert r["dram_fraction"] > 1 > r["fraction"]  # a cache-sized model passes the DRAM ceiling, not its own
    big = ModelFacts(params=0, file_bytes=0, weight_bytes_per_token=2 * 2**30, kv_bytes_per_position=0, dtype="F16")
    r = model_roofline(big, 10.0, 0.5, DRAM, threads=2)
    assert len(fake_measure) == 1 and r["working_set_mib"] == 2048 and r["working_set_buffer_mib"] == 1024
    assert r["fraction"] == r["dram_fraction"] == pytest.approx(0.5 / (2e9 / 2**31))


def test_bandwidth_measurement_restores_threads() -> None:
    before = torch.get_num_threads()
    bw = measure_bandwidth(threads=1, mib=16, repeats=2)
    assert bw["read_gb_s"] > 0 and bw["copy_gb_s"] > 0
    assert bw["threads"] == 1 and torch.get_num_threads() == before


def test_working_set_measurement_reads_a_buffer_of_that_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roofline_module, "_WORKING_SETS", {})
    bw = working_set_bandwidth(1, 3 * 2**20, DRAM)
    assert bw["buffer_mib"] == 3 and bw["threads"] == 1 and bw["read_gb_s"] > 0
    assert bw["repeats"] == 50


def _result(rooflines: list[dict]) -> dict:
    """A bench.json with one model per roofline record, every other field a fixed dummy."""
    model = {"role": "student", "accuracy": {}, "answer_ms": {"mean": 10.0, "median": 10.0, "p90": 12.0},
             "questions_per_s": 1.0, "runtime": "llama.cpp", "dtype": "Q8_0", "params": 1e6, "file_bytes": 1e6,
             "ttft_ms": {"median": 1.0}, "decode_tokens_per_s": 50.0, "questions_per_s_batched": None,
             "peak_rss_mb": None}
    return {"settings": {"max_new_tokens": 4, "stop_at_answer": False, "threads": 2, "warmup": 0},
            "machine": {"cpu": "cpu", "usable_cores": 2}, "bandwidth": {"read_gb_s": 15.0}, "n_questions": 1,
            "models": [{**model, "name": f"m{i}", "roofline": r} for i, r in enumerate(rooflines)]}


def test_tables_show_the_working_set_ceiling() -> None:
    facts = ModelFacts(params=0, file_bytes=0, weight_bytes_per_token=10**8, kv_bytes_per_position=0, dtype="Q8_0")
    table = markdown_tables(_result([roofline(facts, 0.0, 50.0, 15.0, working_set_gb_s=50.0)]))
    assert "| Read GB/s (working set) | Roofline tok/s (working set) | % of roofline (working set) |" in table
    assert "DRAM read bandwidth 15.0 GB/s" in table
    assert "| 50.0 | 50.0 | 500 | 10 |" in table  # 50 GB/s / 100 MB = 500 tok/s; 50 of them = 10%
    # results written before the working-set ceiling: their ceiling is the DRAM one, and labelled so
    old = {"bytes_per_token": 10**8, "ceiling_tokens_per_s": 150.0, "fraction": 1 / 3}
    table = markdown_tables(_result([old]))
    assert "| Read GB/s (DRAM) | Roofline tok/s (DRAM) | % of roofline (DRAM) |" in table
    assert "| 50.0 | 15.0 | 150 | 33 |" in table
