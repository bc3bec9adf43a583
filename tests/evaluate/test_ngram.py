"""N-gram metrics against values worked out by hand and nltk's documented METEOR example."""

from __future__ import annotations

import math

import pytest

from distill2edge.evaluate.ngram import bleu, chrf, meteor, rouge_1, rouge_2, word_tokens
from distill2edge.evaluate.registry import MetricUnavailableError

SENTENCE = "The UE sends a random access preamble on the PRACH."


@pytest.mark.parametrize("fn", [bleu, chrf, rouge_1, rouge_2, meteor])
def test_identical_strings_score_the_maximum(fn) -> None:
    # METEOR's fragmentation penalty keeps even a perfect match just under 1: 0.5 * (1 chunk / 11 matches)^3.
    expected = 1 - 0.5 * (1 / 11) ** 3 if fn is meteor else 1.0
    assert fn(SENTENCE, SENTENCE) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("fn", [bleu, chrf, rouge_1, rouge_2, meteor])
def test_empty_or_disjoint_prediction_scores_zero(fn) -> None:
    assert fn("", SENTENCE) == 0.0
    assert fn("zzz qqq", "alpha beta gamma") == 0.0


def test_sentence_bleu_by_hand() -> None:
    # 6 tokens each: unigram 5/6, bigram 3/5, trigram 2/4, 4-gram 1/3; same length so no brevity penalty.
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(expected, abs=1e-4)


def test_sentence_bleu_brevity_penalty_by_hand() -> None:
    # "the cat sat" against "the cat sat down": precisions 1 (effective order 3), BP = exp(1 - 4/3).
    assert bleu("the cat sat", "the cat sat down") == pytest.approx(math.exp(1 - 4 / 3), abs=1e-4)


def test_rouge_by_hand() -> None:
    # Unigrams: P = 3/3, R = 3/6 -> F = 2/3. Bigrams: P = 2/2, R = 2/5 -> F = 4/7.
    assert rouge_1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert rouge_2("the cat sat", "the cat sat on the mat") == pytest.approx(4 / 7)


def test_chrf_is_order_sensitive_within_words_only() -> None:
    # chrF looks at character n-grams inside the sentence: reordering words keeps most of them.
    assert 0.5 < chrf("preamble random access", "random access preamble") < 1.0


def test_meteor_matches_nltk_documented_example() -> None:
    # nltk's meteor_score docstring: this pair scores 0.6944 (exact, stem and WordNet synonym matches).
    hyp = ("It is a guide to action which ensures that the military always obeys the commands of the party")
    ref = "It is a guide to action that ensures that the military will forever heed Party commands"
    assert round(meteor(hyp, ref), 4) == 0.6944


def test_meteor_uses_wordnet_synonyms() -> None:
    # "car" and "auto" share a WordNet synset, so they match. (nltk compares synonyms with the Porter stems
    # of the words left after stem matching, so "automobile" -> "automobil" would not match.)
    assert meteor("a red car", "a red auto") == pytest.approx(meteor("a red car", "a red car"))
    assert meteor("a red car", "a red boat") < meteor("a red car", "a red auto")


def test_word_tokens() -> None:
    assert word_tokens("5G-NR doesn't use the PRACH.") == ["5g-nr", "doesn't", "use", "the", "prach", "."]


def test_missing_wordnet_is_a_clear_error(tmp_path, monkeypatch) -> None:
    from distill2edge.evaluate import wordnet

    monkeypatch.setenv("DISTILL2EDGE_WORDNET_DIR", str(tmp_path))
    with pytest.raises(MetricUnavailableError, match="wordnet-base wordnet-sense-index"):
        wordnet.wordnet_dir()


def test_lexnames_file_shape() -> None:
    from distill2edge.evaluate.wordnet import lexnames_text

    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"
