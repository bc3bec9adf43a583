import copy
import dataclasses

import pytest
from transformers import AutoTokenizer

from distill2edge.data.qa import QAExample
from distill2edge.data.tokenize import IGNORE_INDEX, collate, encode_for_generation, encode_for_training

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
EX = QAExample("1", "c", "the gnb sends the ssb burst every twenty ms " * 20, "what does the gnb send?", ("the ssb burst",))


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_labels_cover_answer_and_eos_only(tok):
    enc = encode_for_training(tok, EX, TEMPLATE, 1000)
    answer = tok(" " + EX.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n = len(answer)
    assert enc["labels"][-n:] == answer == enc["input_ids"][-n:]
    assert all(x == IGNORE_INDEX for x in enc["labels"][:-n])


def test_long_context_is_cut_but_question_and_answer_kept(tok):
    enc = encode_for_training(tok, EX, TEMPLATE, 64)
    assert len(enc["input_ids"]) <= 64
    text = tok.decode(enc["input_ids"])
    assert "Question: what does the gnb send?" in text.replace("  ", " ") or "what does the gnb send" in text
    assert tok.decode([t for t in enc["labels"] if t != IGNORE_INDEX], skip_special_tokens=True).strip() == EX.answer
    gen = encode_for_generation(tok, EX, TEMPLATE, 64, 16)
    assert len(gen) <= 48 and tok.decode(gen).rstrip().endswith("Answer:")


def test_prompt_that_cannot_fit_is_an_error(tok):
    with pytest.raises(ValueError, match="max_length"):
        encode_for_training(tok, EX, TEMPLATE, 12)


def test_collate_pads_both_sides():
    feats = [{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    right = collate(feats, pad_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    left = collate([{"input_ids": [5, 6]}, {"input_ids": [8]}], pad_id=0, padding_side="left")
    assert left["input_ids"].tolist() == [[5, 6], [0, 8]] and "labels" not in left


def test_pad_token_id_falls_back_to_eos_then_zero(tok):
    from distill2edge.data.tokenize import pad_token_id

    assert tok.pad_token_id is not None and pad_token_id(tok) == tok.pad_token_id
    tok = copy.deepcopy(tok)
    tok.pad_token = None
    assert tok.pad_token_id is None and pad_token_id(tok) == tok.eos_token_id != 0
    tok.eos_token = None
    assert tok.eos_token_id is None and pad_token_id(tok) == 0


FILLER = "the gnb sends the ssb burst every twenty ms. "
LATE = QAExample("late-1", "c2", FILLER * 12 + "the ue answers with the random access preamble. " + FILLER * 12,
                 "what does the ue answer with?", ("the random access preamble",))


def _prompt_text(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab == IGNORE_INDEX],
                      skip_special_tokens=True)


def _context_of(tok, enc) -> str:
    return _prompt_text(tok, enc).split("Context: ", 1)[1].split("\nQuestion:", 1)[0]


def test_answer_window_keeps_the_answer_the_head_cuts(tok):
    head = encode_for_training(tok, LATE, TEMPLATE, 96)
    window = encode_for_training(tok, LATE, TEMPLATE, 96, "answer")
    assert len(head["input_ids"]) <= 96 and len(window["input_ids"]) <= 96
    assert "random access preamble" not in _context_of(tok, head)
    assert "random access preamble" in _context_of(tok, window)
    assert "what does the ue answer with?" in _prompt_text(tok, window)
    assert [t for t in window["labels"] if t != IGNORE_INDEX] == [t for t in head["labels"] if t != IGNORE_INDEX]


def test_answer_window_is_the_head_when_the_head_holds_the_answer(tok):
    early = dataclasses.replace(LATE, id="early-1", context="the ue answers with the random access preamble. " + FILLER * 24)
    assert encode_for_training(tok, early, TEMPLATE, 96, "answer") == encode_for_training(tok, early, TEMPLATE, 96)
    # An answer missing from its context leaves the head too.
    absent = dataclasses.replace(LATE, id="absent-1", answers=("a paging message",))
    assert encode_for_training(tok, absent, TEMPLATE, 96, "answer") == encode_for_training(tok, absent, TEMPLATE, 96)


def test_answer_window_places_the_answer_by_the_example_id_the_same_on_every_run(tok):
    where = []
    for i in range(12):
        ex = dataclasses.replace(LATE, id=f"q{i}")
        first = encode_for_training(tok, ex, TEMPLATE, 96, "answer")
        assert first == encode_for_training(tok, ex, TEMPLATE, 96, "answer")
        context = _context_of(tok, first)
        assert "random access preamble" in context
        where.append(context.index("random access preamble") / len(context))
    assert max(where) - min(where) > 0.3  # not always at the window's end


def test_answer_window_is_chosen_by_the_recipe_and_left_out_of_default_keys(tok):
    from distill2edge.config import DataConfig
    from distill2edge.tasks import get_task

    assert "context_window" not in DataConfig().model_dump()
    data = DataConfig(max_length=96, context_window="answer", prompt_template=TEMPLATE)
    assert data.model_dump()["context_window"] == "answer"
    (row,) = get_task("qa").encode(tok, [LATE], data)
    assert row == encode_for_training(tok, LATE, TEMPLATE, 96, "answer")
    with pytest.raises(ValueError, match="context_window"):
        DataConfig(context_window="tail")
