"""Pairwise metrics: SQuAD exact match and token F1, and ROUGE-L, in a registry keyed by name.

A pairwise metric maps one (prediction, reference) pair of strings to a float in [0, 1]. EM and F1
compare answers after SQuAD normalisation (lowercase, no punctuation, no articles, single spaces), so
"The Cat sat." and "cat sat" match. Metrics live in a registry keyed by name, with a group ("qa",
"ngram", ...), so that a recipe lists them by string (`evaluate.metrics`). Batch metrics and the
scoring of a whole set live in `registry.py` and `metrics.py`, which both import this module;
`distill2edge.evaluate.metrics` re-exports every name here.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

MetricFn = Callable[[str, str], float]
"""`(prediction, reference) -> score in [0, 1]`."""

METRICS: dict[str, MetricFn] = {}
"""Registered pairwise metrics by name, in registration order."""

METRIC_GROUPS: dict[str, str] = {}
"""Group of each pairwise metric ("qa", "ngram", or "custom" when not given)."""

DEFAULT_METRICS: tuple[str, ...] = ("exact_match", "token_f1", "rouge_l")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def register_metric(name: str, group: str = "custom") -> Callable[[MetricFn], MetricFn]:
    """Decorator adding a metric to `METRICS` under `name` (in `group`); a name can be registered once."""

    def add(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = fn
        METRIC_GROUPS[name] = group
        return fn

    return add


def get_metric(name: str) -> MetricFn:
    """The metric registered as `name`; ValueError naming the registered ones if there is none."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; registered: {', '.join(METRICS)}") from None


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop ASCII punctuation, drop the articles a/an/the, and
    collapse runs of whitespace to single spaces (no leading/trailing space)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@register_metric("exact_match", group="qa")
def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


@register_metric("token_f1", group="qa")
def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1: harmonic mean of precision and recall of the normalised tokens (as multisets).

    If either side normalises to no tokens, the score is 1.0 when both do and 0.0 otherwise.
    """
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_l_scorer() -> Any:
    """The `rouge-score` scorer, built once (it sets up a Porter stemmer); imported lazily."""
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=True)


@register_metric("rouge_l", group="ngram")
def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of stemmed tokens) from the `rouge-score` package.

    The package's own tokenisation applies (lowercase, alphanumeric tokens only), not SQuAD
    normalisation, so the numbers match published ROUGE-L; a side with no tokens scores 0.0.
    """
    return float(_rouge_l_scorer().score(reference, prediction)["rougeL"].fmeasure)
