"""QA metrics against SQuAD examples and values worked out by hand."""

from __future__ import annotations

import pytest

from distill2edge.evaluate.metrics import (
    METRICS,
    exact_match,
    get_metric,
    normalize_answer,
    register_metric,
    rouge_l,
    score_predictions,
    summarize,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat sat.", "cat sat"),
        ("  An apple,  a pear\tand THE plum!  ", "apple pear and plum"),
        ("theatre another", "theatre another"),  # articles only as whole words
        ("5G-NR (Rel. 15)", "5gnr rel 15"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match() -> None:
    assert exact_match("The Cat sat.", "cat sat") == 1.0
    assert exact_match("a cat sat", "the cat  sat!") == 1.0
    assert exact_match("cat sat down", "cat sat") == 0.0
    assert exact_match("", "") == 1.0


def test_token_f1_partial_by_hand() -> None:
    # "cat sat on mat" vs "cat on mat": overlap 3, P = 3/4, R = 3/3, F1 = 2·(3/4)/(7/4) = 6/7.
    assert token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # Multiset overlap: "red red blue" vs "red green" share one "red": P = 1/3, R = 1/2, F1 = 0.4.
    assert token_f1("red red blue", "red green") == pytest.approx(0.4)
    assert token_f1("The Cat sat.", "cat sat") == 1.0
    assert token_f1("dog", "cat") == 0.0


def test_token_f1_empty_strings() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("the", "!!") == 1.0  # both normalise to nothing
    assert token_f1("cat", "") == 0.0
    assert token_f1("", "cat") == 0.0


def test_rouge_l() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS of (the cat sat on the mat) and (the cat lay on a mat) is "the cat on mat": P = R = 4/6.
    assert rouge_l("the cat sat on the mat", "the cat lay on a mat") == pytest.approx(2 / 3)
    # LCS "cat mat": P = 2/3, R = 2/4, F = 2PR/(P+R) = 4/7.
    assert rouge_l("cat sat mat", "cat on the mat") == pytest.approx(4 / 7)
    # Porter stemming: running -> run, dogs -> dog.
    assert rouge_l("running dogs", "run dog") == pytest.approx(1.0)
    assert rouge_l("", "cat") == 0.0


def test_registry() -> None:
    assert list(METRICS)[:3] == ["exact_match", "token_f1", "rouge_l"]
    assert get_metric("token_f1") is token_f1
    with pytest.raises(ValueError, match="unknown metric 'bleurt'.*exact_match, token_f1, rouge_l"):
        get_metric("bleurt")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("exact_match")(lambda p, r: 0.0)
    assert METRICS["exact_match"] is exact_match


def test_score_predictions_multi_reference_takes_max() -> None:
    predictions = ["cat sat", "the mat", "dog"]
    references = [["dog", "The cat sat."], "a red mat", ("cat", "bird")]
    scores = score_predictions(predictions, references)
    assert set(scores) == {"exact_match", "token_f1", "rouge_l"}
    assert scores["exact_match"] == [1.0, 0.0, 0.0]
    # "mat" vs "red mat": P = 1, R = 1/2, F1 = 2/3.
    assert scores["token_f1"] == pytest.approx([1.0, 2 / 3, 0.0])
    # rouge-score keeps articles. "cat sat" vs "the cat sat": P = 1, R = 2/3, F = 0.8 (vs "dog": 0).
    # "the mat" vs "a red mat", LCS "mat": P = 1/2, R = 1/3, F = 0.4.
    assert scores["rouge_l"] == pytest.approx([0.8, 0.4, 0.0])


def test_score_predictions_subset_and_errors() -> None:
    assert score_predictions(["x"], ["x"], metrics=["token_f1"]) == {"token_f1": [1.0]}
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score_predictions(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown metric"):
        score_predictions(["a"], ["a"], metrics=["exact_match", "nope"])
    with pytest.raises(ValueError, match="question 1 has no reference"):
        score_predictions(["a", "b"], ["a", []])


def test_summarize() -> None:
    scores = score_predictions(
        ["cat sat", "the mat"], [["The cat sat."], "a red mat"], metrics=["exact_match", "token_f1"]
    )
    assert summarize(scores) == pytest.approx({"exact_match": 0.5, "token_f1": (1.0 + 2 / 3) / 2})
    with pytest.raises(ValueError, match="'exact_match' has no scores"):
        summarize({"exact_match": []})
    with pytest.raises(ValueError, match="non-finite"):
        summarize({"token_f1": [0.5, float("nan")]})
