"""Pairwise metrics: SQuAD exact match and token F1, and ROUGE-L; the entry point `score_predictions`.

A pairwise metric maps one (prediction, reference) pair of strings to a float in [0, 1]. EM and F1
compare answers after SQuAD normalisation (lowercase, no punctuation, no articles, single spaces), so
"The Cat sat." and "cat sat" match. Metrics live in a registry keyed by name, with a group ("qa",
"ngram", ...), so that a recipe lists them by string (`evaluate.metrics`). Metrics that need a batch,
the question, the context or a judge (embedding, BERTScore, Oracle-LLM) live in
`distill2edge.evaluate.registry`; `score_predictions` scores a whole set through both registries,
taking the best of several acceptable references per question as SQuAD does, and `summarize`
averages the per-question scores.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
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


def score_predictions(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    questions: Sequence[str] | None = None,
    contexts: Sequence[str] | None = None,
    judge: Any = None,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, list[float]]:
    """Per-question scores for each metric: {metric name: [score of question i]}.

    `metrics` holds metric names or group names ("qa", "ngram", "embedding", "llm", "paper", "all"),
    expanded in order. A reference may be one string or a sequence of acceptable answers; with several,
    a question's score is the best over them (the SQuAD convention). Metrics that need the question or
    the context (Oracle-LLM ones) take them from `questions` / `contexts`; `judge` (a
    `distill2edge.evaluate.judge.Judge`) scores those, the default judge is built when none is given.
    Raises ValueError on a length mismatch, an unknown metric, or a question without any reference.
    """
    from distill2edge.evaluate.registry import EvalRecord, score_records

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    for label, extra in (("questions", questions), ("contexts", contexts)):
        if extra is not None and len(extra) != len(predictions):
            raise ValueError(f"{len(predictions)} predictions but {len(extra)} {label}")
    records: list[EvalRecord] = []
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        answers = (ref,) if isinstance(ref, str) else tuple(ref)
        if not answers:
            raise ValueError(f"question {i} has no reference answer")
        records.append(EvalRecord(
            prediction=pred, references=answers, question=questions[i] if questions is not None else "",
            context=contexts[i] if contexts is not None else "",
        ))
    return score_records(records, metrics, judge=judge, batch_size=batch_size, device=device, progress=progress)


def summarize(scores: dict[str, list[float]]) -> dict[str, float]:
    """Mean of each metric's per-question scores. Raises ValueError for a metric with no scores (a mean
    of nothing would be NaN or a misleading 0) or with a non-finite score."""
    summary: dict[str, float] = {}
    for name, values in scores.items():
        if not values:
            raise ValueError(f"metric {name!r} has no scores to summarize")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"metric {name!r} has a non-finite score")
        summary[name] = math.fsum(values) / len(values)
    return summary
