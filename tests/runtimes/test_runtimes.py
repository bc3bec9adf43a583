"""The runtime layer: llama.cpp and torch read the same tiny model the same way, and the readers agree
with each other and with transformers' own generate()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill2edge.export.gguf import export_gguf
from distill2edge.runtimes import llamacpp, torch_lm

PROMPT = "The gNB schedules uplink resources for the UE"


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runtimes") / "tiny.f32.gguf"
    export_gguf(tiny_llama_dir, out, quant="f32")
    return out


@pytest.fixture(scope="module")
def hf(tiny_llama_dir: Path) -> tuple[torch.nn.Module, AutoTokenizer]:
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_llamacpp_reads_the_logits_torch_reads(tiny_gguf: Path, hf) -> None:
    model, tok = hf
    llm = llamacpp.open_gguf(tiny_gguf, threads=1, exact=True)
    try:
        ids = llamacpp.tokenize(llm, PROMPT)
        assert ids == tok(PROMPT)["input_ids"]  # same BOS policy and merges as the HF tokenizer
        got = llamacpp.all_logits(llm, ids)
        gen = llamacpp.greedy(llm, ids, 6)
        # after greedy(), scores hold the prompt's rows and one row per generated id but the last
        chained = [int(np.argmax(row)) for row in llm.scores[len(ids) - 1 : llm.n_tokens]]
    finally:
        llm.close()
    ref = torch_lm.logits(model, ids)
    assert got.shape == ref.shape == (len(ids), model.config.vocab_size)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert gen == chained[: len(gen)]
    assert gen == torch_lm.greedy(model, ids, 6)


def test_last_logits_without_logits_all(tiny_gguf: Path, hf) -> None:
    model, tok = hf
    ids = tok(PROMPT)["input_ids"]
    llm = llamacpp.open_gguf(tiny_gguf, n_ctx=64, threads=1)  # a user's context: F16 cache, last row only
    try:
        last = llamacpp.last_logits(llm, ids)
        again = llamacpp.last_logits(llm, ids[:-2])  # each call starts from an empty cache
    finally:
        llm.close()
    ref = torch_lm.logits(model, ids)
    np.testing.assert_allclose(last, ref[-1], atol=5e-3)  # the F16 K/V cache rounds
    np.testing.assert_allclose(again, ref[-3], atol=5e-3)


def test_settings_reach_llama_cpp(tiny_gguf: Path) -> None:
    llm = llamacpp.open_gguf(tiny_gguf, n_ctx=512, threads=1, n_batch=32, n_threads_batch=2)
    try:  # explicit settings win over the ones open_gguf derives (n_batch = n_ctx, threads for both)
        assert llm.n_ctx() == 512 and llm.n_batch == 32
        assert llm.context_params.n_threads == 1 and llm.context_params.n_threads_batch == 2
    finally:
        llm.close()
    assert llamacpp.runtime_name().startswith("llama-cpp-python ")


def test_torch_greedy_equals_transformers_generate(hf) -> None:
    model, tok = hf
    x = torch.tensor([tok(PROMPT)["input_ids"]])
    want = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, min_new_tokens=8,
                          do_sample=False, pad_token_id=tok.pad_token_id)[0, x.shape[1]:].tolist()
    assert torch_lm.greedy(model, x[0].tolist(), 8) == want
