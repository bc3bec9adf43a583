"""N-gram metrics of the telecom-qa paper: BLEU, chrF, ROUGE-1, ROUGE-2 (ROUGE-L is in metrics.py)
and METEOR, each per question and scaled to [0, 1].

- BLEU: sacrebleu's sentence BLEU (13a tokenisation, exponential smoothing, effective order, so a
  short answer with no 4-gram is not zeroed), divided by 100.
- chrF: sacrebleu's chrF (character 6-grams, beta 2, no word n-grams), divided by 100.
- ROUGE-1/2: `rouge-score` F-measure with the Porter stemmer, like ROUGE-L.
- METEOR: nltk's `meteor_score` (exact, stem and WordNet-synonym matches; alpha 0.9, beta 3, gamma
  0.5) on lowercased word tokens. WordNet comes from nltk's own data when present, else from
  Debian's WordNet 3.0 files (see `wordnet.py`).

Everything is computed by the well-kept libraries; only the scaling and tokenisation glue is here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from distill2edge.evaluate.pairwise import register_metric

_WORD = re.compile(r"\w+(?:['-]\w+)*|[^\w\s]")


@lru_cache(maxsize=1)
def _bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)


@lru_cache(maxsize=1)
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rouge1", "rouge2"], use_stemmer=True)


@register_metric("bleu", group="ngram")
def bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU in [0, 1]; an empty prediction scores 0."""
    if not prediction.strip():
        return 0.0
    return _bleu().sentence_score(prediction, [reference]).score / 100.0


@register_metric("chrf", group="ngram")
def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF in [0, 1]; an empty prediction scores 0."""
    if not prediction.strip():
        return 0.0
    return _chrf().sentence_score(prediction, [reference]).score / 100.0


@register_metric("rouge_1", group="ngram")
def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F-measure (unigrams of stemmed, lowercased alphanumeric tokens)."""
    return float(_rouge().score(reference, prediction)["rouge1"].fmeasure)


@register_metric("rouge_2", group="ngram")
def rouge_2(prediction: str, reference: str) -> float:
    """ROUGE-2 F-measure (bigrams of stemmed, lowercased alphanumeric tokens)."""
    return float(_rouge().score(reference, prediction)["rouge2"].fmeasure)


def word_tokens(text: str) -> list[str]:
    """Lowercased words (keeping "don't", "5G-NR") and punctuation marks, for METEOR.

    nltk's `word_tokenize` would need the punkt data, which cannot be downloaded here; for matching
    words against references this regex does the same job.
    """
    return _WORD.findall(text.lower())


@register_metric("meteor", group="ngram")
def meteor(prediction: str, reference: str) -> float:
    """METEOR in [0, 1] (nltk). Raises `MetricUnavailableError` when no WordNet can be found."""
    from nltk.translate.meteor_score import single_meteor_score

    from distill2edge.evaluate.wordnet import wordnet_reader

    hyp, ref = word_tokens(prediction), word_tokens(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return float(single_meteor_score(ref, hyp, wordnet=wordnet_reader()))
