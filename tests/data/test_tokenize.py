import copy

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
