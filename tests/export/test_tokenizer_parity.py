"""llama.cpp must tokenize exactly as HF does, for byte-level BPE (gpt-2 and smollm pre-tokenizers) and
SentencePiece-style vocabularies, on >= 200 strings (unicode, code, numbers, whitespace, specials)."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest
from transformers import AutoTokenizer

from distill2edge.export.gguf import export_gguf
from distill2edge.models.vocab_trim import trim_vocabulary
from distill2edge.runtimes.llamacpp import open_gguf


@pytest.mark.parametrize(
    ("fixture", "model", "pre"),
    [
        ("tiny_llama", "gpt2", "gpt-2"),
        ("tiny_llama_digits", "gpt2", "smollm"),
        ("tiny_mistral", "llama", "default"),
    ],
)
def test_llama_cpp_tokenizes_like_hf(
    fixture: str,
    model: str,
    pre: str,
    test_strings: list[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    folder = request.getfixturevalue(fixture)
    path = tmp_path / "m.gguf"
    export_gguf(folder, path, quant="f32")
    fields = gguf.GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.model"].contents() == model
    assert fields["tokenizer.ggml.pre"].contents() == pre
    tok = AutoTokenizer.from_pretrained(folder)
    llm = open_gguf(path, vocab_only=True)
    assert len(test_strings) >= 200
    mismatches = [
        (s, tok(s)["input_ids"], ids)
        for s in test_strings
        if tok(s)["input_ids"] != (ids := llm.tokenize(s.encode(), add_bos=True, special=True))
    ]
    llm.close()
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"


@pytest.mark.parametrize("fixture", ["tiny_llama_digits", "tiny_mistral"])
def test_a_trimmed_vocabulary_tokenizes_and_runs_alike_in_llama_cpp(
    fixture: str, test_strings: list[str], request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """A student trimmed to the tokens of 20 strings (models.vocab_trim): llama.cpp reads the smaller
    vocabulary and merges, tokenizes every test string as the trimmed HF tokenizer does (text outside the
    kept tokens falls back to shorter pieces in both), and passes the F32 logit gate."""
    folder = request.getfixturevalue(fixture)
    trimmed = tmp_path / "trimmed"
    report = trim_vocabulary(folder, trimmed, lambda tok: [tok(s)["input_ids"] for s in test_strings[:20]], keep_first=0)
    assert report.kept < report.original_size
    path = tmp_path / "m.gguf"
    record = export_gguf(trimmed, path, quant="f32")
    assert record["passed"] and record["gates"]["f32"]["same_top_token"] == 1.0
    tok = AutoTokenizer.from_pretrained(trimmed)
    llm = open_gguf(path, vocab_only=True)
    assert llm.n_vocab() == report.kept
    mismatches = [(s, ids) for s in test_strings
                  if tok(s)["input_ids"] != (ids := llm.tokenize(s.encode(), add_bos=True, special=True))]
    llm.close()
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
