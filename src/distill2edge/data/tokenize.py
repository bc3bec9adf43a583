"""Turn QA examples into token ids for training (prompt + answer, loss on the answer only) and for
generation (prompt only), and pad them into batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from distill2edge.data.examples import TextExample
from distill2edge.data.qa import QAExample
from distill2edge.data.qa_checks import answer_cut
from distill2edge.schema.data import ContextWindow

IGNORE_INDEX = -100


def pad_token_id(tok: PreTrainedTokenizerBase) -> int:
    """The id that pads a batch of `tok`'s sequences: its pad token, else its EOS, else 0.

    Padded positions are masked out of attention and of every loss, so any valid id would do; one rule
    keeps training, evaluation, exports and benchmarks padding alike.
    """
    for tid in (tok.pad_token_id, tok.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def render_prompt(template: str, ex: QAExample, context: str | None = None) -> str:
    return template.format(context=ex.context if context is None else context, question=ex.question, title=ex.title)


def _answer_tokens(tok: PreTrainedTokenizerBase, ex: QAExample, ctx_ids: list[int]) -> tuple[int, int] | None:
    """Token span [a, b) of `ex`'s first reference answer found in its context (exactly, else ignoring
    case), or None. Fast tokenizers map characters to tokens by their offsets; others count the tokens
    of the context before the answer, which can be off by one token at the boundary."""
    low = ex.context.lower()
    for answer in ex.answers:
        start = ex.context.find(answer)
        start = low.find(answer.lower()) if start < 0 else start
        if answer and start >= 0:
            break
    else:
        return None
    end = start + len(answer)
    if tok.is_fast:
        offsets = tok(ex.context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
        if inside:
            return inside[0], inside[-1] + 1
    a = len(tok(ex.context[:start], add_special_tokens=False)["input_ids"])
    b = len(tok(ex.context[:end], add_special_tokens=False)["input_ids"])
    return max(0, a - 1), min(len(ctx_ids), b + 1)


def _window_start(ex: QAExample, n: int, keep: int, span: tuple[int, int] | None) -> int:
    """First context token of a `keep`-token window over `n` tokens. The head when it holds the answer
    (or there is none); else a window holding the answer at an offset drawn from the example's id, so
    the answer does not always sit at the window's end and the draw is the same on every run."""
    if span is None or span[1] <= keep:
        return 0
    a, b = span
    lo, hi = max(0, b - keep), min(a, n - keep)
    if hi <= lo:
        return max(0, min(a, n - keep))
    draw = int(hashlib.sha1(ex.id.encode("utf-8")).hexdigest()[:8], 16)
    return lo + draw % (hi - lo + 1)


def window_reads(tok: PreTrainedTokenizerBase, ex: QAExample, template: str) -> list[list[int]]:
    """The tokenizations that place an answer window besides the row it yields: the whole prompt and the
    whole context (`_prompt_ids`, `_answer_tokens`). Text outside the window moves it when it tokenizes
    differently, so a vocabulary trim keeps these tokens too, or the trimmed tokenizer would place the
    window elsewhere."""
    return [tok(render_prompt(template, ex), add_special_tokens=True)["input_ids"],
            tok(ex.context, add_special_tokens=False)["input_ids"]]


def _prompt_ids(
    tok: PreTrainedTokenizerBase, template: str, ex: QAExample, budget: int, window: ContextWindow = "head",
) -> list[int]:
    """Prompt token ids (with the tokenizer's own BOS convention) in at most `budget` tokens.

    When too long, the context is cut to a window of its tokens (`window`: its head, or one holding the
    answer); the question and the template always survive. Cutting works on context tokens, then
    re-renders, because a decoded-then-re-encoded text can tokenize differently; a few passes converge.
    """
    ids = tok(render_prompt(template, ex), add_special_tokens=True)["input_ids"]
    if len(ids) <= budget:
        return ids
    ctx_ids = tok(ex.context, add_special_tokens=False)["input_ids"]
    span = _answer_tokens(tok, ex, ctx_ids) if window == "answer" else None
    keep = len(ctx_ids) - (len(ids) - budget)
    for _ in range(8):
        if keep <= 0:
            raise ValueError(
                f"example {ex.id}: the prompt without its context needs more than {budget} tokens; "
                "raise data.max_length"
            )
        start = _window_start(ex, len(ctx_ids), keep, span)
        context = tok.decode(ctx_ids[start:start + keep], skip_special_tokens=True)
        ids = tok(render_prompt(template, ex, context), add_special_tokens=True)["input_ids"]
        if len(ids) <= budget:
            return ids
        keep -= len(ids) - budget
    raise ValueError(f"example {ex.id}: could not fit the prompt into {budget} tokens")


def encode_for_training(
    tok: PreTrainedTokenizerBase, ex: QAExample, template: str, max_length: int, window: ContextWindow = "head",
) -> dict[str, list[int]]:
    """`input_ids` = prompt + " " + answer + EOS; `labels` = IGNORE_INDEX on the prompt, ids on the answer.
    A context too long for `max_length` is cut to `window` (`schema.data.ContextWindow`: its head, or a window holding the answer)."""
    answer_ids = tok(" " + ex.answer, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        answer_ids = answer_ids + [tok.eos_token_id]
    answer_ids = answer_ids[: max_length // 2]
    prompt_ids = _prompt_ids(tok, template, ex, max_length - len(answer_ids), window)
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    }


def training_answers_cut(
    tok: PreTrainedTokenizerBase, examples: Sequence[QAExample], template: str, max_length: int,
) -> int:
    """How many of `examples`' training prompts (`encode_for_training`, the context's head) lost their
    reference answer when the context was cut to fit `max_length` (`data.qa_checks.answer_cut`)."""
    cut = 0
    for ex in examples:
        row = encode_for_training(tok, ex, template, max_length)
        prompt = [t for t, label in zip(row["input_ids"], row["labels"]) if label == IGNORE_INDEX]
        cut += answer_cut(ex, tok.decode(prompt, skip_special_tokens=True))
    return cut


def encode_text(tok: PreTrainedTokenizerBase, ex: TextExample, max_length: int) -> dict[str, list[int]]:
    """`input_ids` = the passage (with the tokenizer's BOS convention) + EOS, cut to `max_length`; `labels`
    all IGNORE_INDEX: a passage has no answer, so CE skips it and only full-sequence KD learns from it."""
    ids = tok(ex.text, add_special_tokens=True)["input_ids"]
    if tok.eos_token_id is not None:
        ids = ids + [tok.eos_token_id]
    ids = ids[:max_length]
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * len(ids)}


def encode_for_generation(
    tok: PreTrainedTokenizerBase, ex: QAExample, template: str, max_length: int, max_new_tokens: int
) -> list[int]:
    return _prompt_ids(tok, template, ex, max(8, max_length - max_new_tokens))


def collate(
    features: Sequence[dict[str, list[int]]], pad_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence. Returns input_ids, attention_mask and (if present) labels, all [B, T]."""
    width = max(len(f["input_ids"]) for f in features)
    left = padding_side == "left"

    def padded(seq: list[int], value: int) -> list[int]:
        pad = [value] * (width - len(seq))
        return pad + seq if left else seq + pad

    batch: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        n = len(f["input_ids"])
        batch["input_ids"].append(padded(f["input_ids"], pad_id))
        batch["attention_mask"].append(padded([1] * n, 0))
        if "labels" in f:
            batch["labels"].append(padded(f["labels"], IGNORE_INDEX))
    out = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items() if v}
    return out


TEACHER_PREFIX = "teacher_"
"""Feature keys of the teacher's own tokenization of a sample (DSKD across vocabularies)."""


def collate_pair(
    features: Sequence[dict[str, list[int]]], pad_id: int, teacher_pad_id: int
) -> dict[str, torch.Tensor]:
    """Collate samples tokenized twice: the student's keys as `collate`, the teacher's prefixed
    `teacher_` (teacher_input_ids, teacher_attention_mask, teacher_labels), each padded on its own."""
    return collate_multi(features, {"": pad_id, TEACHER_PREFIX: teacher_pad_id})


def teacher_prefix(name: str) -> str:
    """Feature-key prefix of teacher `name`'s own tokenization in a multi-teacher batch."""
    return f"teacher[{name}]_"


def collate_multi(features: Sequence[dict[str, list[int]]], pads: dict[str, int]) -> dict[str, torch.Tensor]:
    """Collate samples tokenized by several tokenizers. `pads` maps each key prefix to its pad id ("" is
    the student); a key belongs to the longest prefix it starts with, and each tokenization is padded
    on its own."""
    prefixes = sorted((p for p in pads if p), key=len, reverse=True)

    def owner(key: str) -> str:
        return next((p for p in prefixes if key.startswith(p)), "")

    out: dict[str, torch.Tensor] = {}
    for prefix, pad in pads.items():
        part = [{k[len(prefix):]: v for k, v in f.items() if owner(k) == prefix} for f in features]
        out.update({prefix + k: v for k, v in collate(part, pad).items()})
    return out
