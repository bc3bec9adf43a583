import pytest
import torch
from transformers import AutoTokenizer, PretrainedConfig

from distill2edge.models import VocabAlignment, VocabularyMismatchError, check_same_vocabulary, trim_logits
from tests.factory import tiny_config


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def tok_b(tiny_tokenizer_b_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_b_dir)


def cfg(rows: int) -> PretrainedConfig:
    """A tiny llama config with `rows` embedding rows (only the vocabulary size matters here)."""
    return tiny_config(vocab_size=rows)


def test_identical_vocabularies(tok):
    n = len(tok)
    assert check_same_vocabulary(tok, tok, cfg(n), cfg(n)) == VocabAlignment(n, n, n)


def test_padding_rows_are_trimmed_from_both_models(tok):
    n = len(tok)
    align = check_same_vocabulary(tok, tok, cfg(n + 64), cfg(n))
    assert align == VocabAlignment(shared_size=n, teacher_size=n + 64, student_size=n)
    teacher_logits, student_logits = torch.randn(2, 5, n + 64), torch.randn(2, 5, n)
    t, s = trim_logits(teacher_logits, align.shared_size), trim_logits(student_logits, align.shared_size)
    assert t.shape == s.shape == (2, 5, n)
    assert torch.equal(trim_logits(teacher_logits, n), teacher_logits[..., :n])


def test_tokenizer_with_extra_tokens_shares_the_common_prefix(tiny_tokenizer_dir, tok):
    bigger = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    bigger.add_tokens(["<extra_0>", "<extra_1>"])
    n = len(tok)
    align = check_same_vocabulary(bigger, tok, cfg(n + 2), cfg(n))
    assert align.shared_size == n


def test_different_vocabularies_are_refused_with_a_pointer_to_dskd(tok, tok_b):
    with pytest.raises(VocabularyMismatchError) as err:
        check_same_vocabulary(tok_b, tok, cfg(len(tok_b)), cfg(len(tok)))
    message = str(err.value)
    assert "DSKD" in message and "distill.algorithm: dskd" in message
    assert f"teacher: {len(tok_b)} tokens" in message and f"student: {len(tok)} tokens" in message
    assert isinstance(err.value, ValueError)


def test_student_tokens_the_teacher_cannot_embed_are_refused(tok):
    with pytest.raises(VocabularyMismatchError, match="cannot embed"):
        check_same_vocabulary(tok, tok, cfg(len(tok) - 8), cfg(len(tok)))


def test_trim_logits_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="width 10"):
        trim_logits(torch.zeros(2, 10), 11)
    with pytest.raises(ValueError):
        trim_logits(torch.zeros(2, 10), 0)
