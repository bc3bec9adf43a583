"""Pairwise metrics (`pairwise.py`, re-exported here) and the entry points `score_predictions` and
`summarize`.

A pairwise metric maps one (prediction, reference) pair of strings to a float in [0, 1] (SQuAD exact
match and token F1, ROUGE-L; see `distill2edge.evaluate.pairwise`). Metrics that need a batch,
the question, the context or a judge (embedding, BERTScore, Oracle-LLM) live in
`distill2edge.evaluate.registry`; `score_predictions` scores a whole set through both registries,
taking the best of several acceptable references per question as SQuAD does, and `summarize`
averages the per-question scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from distill2edge.evaluate.pairwise import (
    DEFAULT_METRICS,
    METRIC_GROUPS,
    METRICS,
    MetricFn,
    exact_match,
    get_metric,
    normalize_answer,
    register_metric,
    rouge_l,
    token_f1,
)
from distill2edge.evaluate.registry import EvalRecord, score_records

__all__ = [
    "DEFAULT_METRICS", "METRICS", "METRIC_GROUPS", "MetricFn", "exact_match", "get_metric", "normalize_answer",
    "register_metric", "rouge_l", "score_predictions", "summarize", "token_f1",
]


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
    `distill2edge.evaluate.judge.Judge`, or a `make_judge` spec) scores those, the default judge is built
    when none is given.
    Raises ValueError on a length mismatch, an unknown metric, or a question without any reference.
    """
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
