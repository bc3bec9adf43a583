"""Vocabulary pre-flight for vanilla KD: teacher and student must share one tokenizer.

KL between teacher and student distributions compares logits id by id, so id i must mean the same
token in both. Models of one family often differ only by padding rows appended to the embedding (a
vocabulary of 32,000 real tokens stored in 32,064 rows, for matmul-friendly shapes): those rows are
trimmed from both models' logits. Anything else is a different vocabulary, which needs DSKD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase


class VocabularyMismatchError(ValueError):
    """Teacher and student tokenize differently: vanilla KD cannot compare their logits."""


@dataclass
class VocabAlignment:
    shared_size: int
    """Both models' logits are trimmed to this many entries [..., :shared_size] before the KD loss."""
    teacher_size: int
    """Width of the teacher's logits (its embedding rows)."""
    student_size: int
    """Width of the student's logits (its embedding rows)."""


def _rows(config: PretrainedConfig) -> int:
    return int(config.get_text_config().vocab_size)


def _dskd_hint() -> str:
    return ("vanilla KD needs one vocabulary; use the DSKD algorithm (distill.algorithm: dskd) for a teacher "
            "with a different vocabulary")


def check_same_vocabulary(
    teacher_tok: PreTrainedTokenizerBase, student_tok: PreTrainedTokenizerBase,
    teacher_config: PretrainedConfig, student_config: PretrainedConfig,
) -> VocabAlignment:
    """Same family when the token->id maps agree on every id below the smaller tokenizer's `len(tok)`.

    Returns the sizes to trim logits to; raises `VocabularyMismatchError` (naming both vocabulary sizes
    and DSKD) when the vocabularies differ, or when the student's tokens do not fit the teacher's rows.
    """
    t_len, s_len = len(teacher_tok), len(student_tok)
    t_rows, s_rows = _rows(teacher_config), _rows(student_config)
    sizes = (f"teacher: {t_len} tokens in {t_rows} embedding rows, "
             f"student: {s_len} tokens in {s_rows} embedding rows")
    n = min(t_len, s_len)
    t_ids = {tok: i for tok, i in teacher_tok.get_vocab().items() if i < n}
    s_ids = {tok: i for tok, i in student_tok.get_vocab().items() if i < n}
    if t_ids != s_ids:
        t_by_id = {i: tok for tok, i in t_ids.items()}
        s_by_id = {i: tok for tok, i in s_ids.items()}
        differ = [i for i in range(n) if t_by_id.get(i) != s_by_id.get(i)]
        first = differ[0] if differ else 0
        raise VocabularyMismatchError(
            f"teacher and student have different vocabularies ({sizes}; {len(differ)} of the first {n} "
            f"ids differ, e.g. id {first}: {t_by_id.get(first)!r} vs {s_by_id.get(first)!r}); {_dskd_hint()}"
        )
    if s_len > t_rows:
        raise VocabularyMismatchError(
            f"the student's tokenizer has tokens the teacher cannot embed ({sizes}); {_dskd_hint()}, "
            "or resize the teacher's embeddings"
        )
    return VocabAlignment(shared_size=min(n, t_rows, s_rows), teacher_size=t_rows, student_size=s_rows)


def trim_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """`logits[..., :size]`: drop padding rows' logits ([..., V] -> [..., size], a view)."""
    if not 0 < size <= logits.shape[-1]:
        raise ValueError(f"cannot trim logits of width {logits.shape[-1]} to {size}")
    return logits[..., :size]
