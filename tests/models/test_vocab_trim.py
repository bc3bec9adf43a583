"""Vocabulary trimming (`models.vocab_trim`) on the shared tiny llama: what it keeps, what it must not change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill2edge.models.vocab_trim import TRIM_RECORD, kept_ids, trim_vocabulary
from tests.factory import telecom_sentences

DOMAIN = telecom_sentences(4, seed=3)  # the tokens kept: a few sentences use a fraction of the 448


def _encoder(texts: list[str]):
    return lambda tok: [tok(t)["input_ids"] for t in texts]


@pytest.fixture(scope="module")
def trimmed(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trim") / "model"
    trim_vocabulary(tiny_llama_dir, out, _encoder(DOMAIN), keep_first=0)
    return out


def _kept(folder: Path, original: Path) -> list[int]:
    """Old ids of the trimmed tokens, in new-id order (read from the two tokenizer.json files)."""
    old = json.loads((original / "tokenizer.json").read_text())["model"]["vocab"]
    new = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    by_new = sorted(new.items(), key=lambda kv: kv[1])
    return [old[t] for t, _ in by_new]


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_teacher_b_dir"])  # tied llama; gemma3's scaled embedding
def test_logits_over_the_kept_tokens_are_the_untrimmed_models(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    tiny_llama_dir: Path = request.getfixturevalue(fixture)
    trimmed = tmp_path / "model"
    trim_vocabulary(tiny_llama_dir, trimmed, _encoder(DOMAIN), keep_first=0)
    before = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    after = AutoModelForCausalLM.from_pretrained(trimmed).eval()
    tok_before, tok_after = AutoTokenizer.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(trimmed)
    keep = _kept(trimmed, tiny_llama_dir)
    assert after.config.vocab_size == len(tok_after) < len(tok_before)
    old_to_new = {o: n for n, o in enumerate(keep)}
    for text in DOMAIN:
        ids = tok_before(text, return_tensors="pt")["input_ids"]
        new_ids = tok_after(text, return_tensors="pt")["input_ids"]
        assert new_ids[0].tolist() == [old_to_new[i] for i in ids[0].tolist()]
        with torch.no_grad():
            reference = before(ids).logits[..., torch.tensor(keep)]  # plain indexing of the full model
            got = after(new_ids).logits
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)


def test_other_text_still_round_trips_and_special_ids_stay(tiny_llama_dir: Path, trimmed: Path) -> None:
    tok_before, tok_after = AutoTokenizer.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(trimmed)
    others = telecom_sentences(20, seed=4)
    for text in ["Zebras graze 12,345 km north of Zürich.", "def f(x):\n\treturn x ** 2  # ✓", "naïve café", *others]:
        ids = tok_after(text, add_special_tokens=False)["input_ids"]
        assert tok_after.decode(ids) == text
        assert len(ids) >= len(tok_before(text, add_special_tokens=False)["input_ids"])  # shorter pieces
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(tok_after, name) == getattr(tok_before, name)
    config = json.loads((trimmed / "config.json").read_text())
    assert config["eos_token_id"] == tok_before.eos_token_id
    record = json.loads((trimmed / TRIM_RECORD).read_text())
    assert record["kept"] == config["vocab_size"] and record["sequences"] == len(DOMAIN)
    assert record["parameters_after"] < record["parameters_before"]


def test_every_kept_merge_result_can_still_be_built(tiny_llama_dir: Path, trimmed: Path) -> None:
    before = json.loads((tiny_llama_dir / "tokenizer.json").read_text())["model"]
    after = json.loads((trimmed / "tokenizer.json").read_text())["model"]
    assert 0 < len(after["merges"]) < len(before["merges"])
    vocab = after["vocab"]
    for merge in after["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        assert a in vocab and b in vocab and a + b in vocab
    produced = {"".join(m.split(" ", 1) if isinstance(m, str) else m) for m in after["merges"]}
    assert all(t in produced or t not in {"".join(m.split(" ", 1) if isinstance(m, str) else m)
                                          for m in before["merges"]} for t in vocab)


def test_keep_first_keeps_a_prefix_and_its_parents(tiny_llama_dir: Path) -> None:
    tj = json.loads((tiny_llama_dir / "tokenizer.json").read_text())
    none, _ = kept_ids(tj, [], keep_first=0)
    prefix, _ = kept_ids(tj, [], keep_first=300)
    everything, _ = kept_ids(tj, [], keep_first=10**6)
    assert set(none) < set(prefix) < set(everything) and set(range(300)) <= set(prefix)
    assert len(everything) == len(tj["model"]["vocab"])


def test_refuses_tokenizers_it_does_not_model() -> None:
    with pytest.raises(ValueError, match="BPE tokenizers only"):
        kept_ids({"model": {"type": "WordPiece", "vocab": {}}}, [], 0)
    with pytest.raises(ValueError, match="dropout"):
        kept_ids({"model": {"type": "BPE", "dropout": 0.1, "vocab": {}}}, [], 0)


def test_a_trim_that_changes_the_tokens_publishes_nothing(tiny_llama_dir: Path, tmp_path: Path) -> None:
    calls = iter([DOMAIN[:3], DOMAIN[3:6]])  # the second encoding (trimmed tokenizer) sees other text

    def encode(tok):
        return [tok(t)["input_ids"] for t in next(calls)]

    with pytest.raises(ValueError, match="tokenizes differently"):
        trim_vocabulary(tiny_llama_dir, tmp_path / "out", encode, keep_first=0)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
