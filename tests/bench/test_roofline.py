"""Bytes per decoded token, parameters and sizes agree across the torch, GGUF and ONNX views of one model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from distill2edge.bench import ModelFacts, measure_bandwidth, roofline
from distill2edge.bench.roofline import gguf_facts, kv_bytes_per_position, onnx_facts, torch_facts


def test_kv_bytes_formula() -> None:
    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3)
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
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                      intermediate_size=64, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(cfg)
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
    assert roofline(facts, 0.0, None, 4.0)["fraction"] is None


def test_bandwidth_measurement_restores_threads() -> None:
    before = torch.get_num_threads()
    bw = measure_bandwidth(threads=1, mib=16, repeats=2)
    assert bw["read_gb_s"] > 0 and bw["copy_gb_s"] > 0
    assert bw["threads"] == 1 and torch.get_num_threads() == before
