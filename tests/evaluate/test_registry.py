"""The metric registry: groups, name resolution, batch metrics seeing question and context, and the
backward-compatible `score_predictions`."""

from __future__ import annotations

import pytest

from distill2edge.evaluate import registry
from distill2edge.evaluate.metrics import METRICS, score_predictions
from distill2edge.evaluate.registry import (
    BATCH_METRICS,
    PAPER_METRICS,
    EvalRecord,
    ScoringContext,
    metric_group,
    metric_groups,
    register_batch_metric,
    resolve_metrics,
    score_records,
)


def test_groups_cover_the_paper_metrics() -> None:
    groups = metric_groups()
    assert len(groups["paper"]) == 14 == len(set(PAPER_METRICS))
    assert groups["ngram"] == ["bleu", "chrf", "rouge_1", "rouge_2", "rouge_l", "meteor"]
    assert groups["embedding"] == ["embedding_cosine", "bertscore_precision", "bertscore_recall", "bertscore_f1"]
    assert groups["llm"] == ["answer_correctness", "answer_relevance", "faithfulness", "factual_correctness"]
    assert groups["ngram"] + groups["embedding"] + groups["llm"] == groups["paper"]
    assert set(groups["qa"]) >= {"exact_match", "token_f1"}
    assert set(groups["all"]) >= set(groups["paper"]) | set(groups["qa"])
    assert metric_group("meteor") == "ngram" and metric_group("bertscore_f1") == "embedding"


def test_resolve_expands_groups_in_order_without_repeats() -> None:
    assert resolve_metrics(["token_f1", "qa", "rouge_l", "ngram"])[:4] == ["token_f1", "exact_match", "rouge_l", "bleu"]
    names = resolve_metrics(["all"])
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="unknown metric 'bleurt'.*registered metrics and groups: qa"):
        resolve_metrics(["ngram", "bleurt"])


def test_batch_metric_sees_question_and_context(monkeypatch) -> None:
    monkeypatch.setattr(registry, "BATCH_METRICS", dict(BATCH_METRICS))  # keep the global registry clean
    seen: list[EvalRecord] = []

    @register_batch_metric("context_mentions_prediction", group="custom", needs=("context",))
    def fn(records, ctx):
        seen.extend(records)
        return [float(r.prediction in r.context) for r in records]

    scores = score_predictions(
        ["n71", "n99"], [["n71", "band n71"], "n71"], ["exact_match", "context_mentions_prediction"],
        questions=["which band?", "which band?"], contexts=["cell uses n71", "cell uses n71"],
    )
    assert scores == {"exact_match": [1.0, 0.0], "context_mentions_prediction": [1.0, 0.0]}
    assert seen[0] == EvalRecord("n71", ("n71", "band n71"), "which band?", "cell uses n71")
    with pytest.raises(ValueError, match="needs the context of every question; question 0 has none"):
        score_predictions(["a"], ["a"], ["context_mentions_prediction"])
    with pytest.raises(ValueError, match="already registered"):
        register_batch_metric("exact_match", group="qa")(fn)


def test_score_predictions_is_backward_compatible() -> None:
    scores = score_predictions(["The cat sat."], [["cat sat", "dog"]])
    # ROUGE-L keeps "the" (its own tokenisation): P = 2/3, R = 1, F = 0.8.
    assert {k: v[0] for k, v in scores.items()} == pytest.approx({"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 0.8})
    with pytest.raises(ValueError, match="1 predictions but 2 questions"):
        score_predictions(["a"], ["a"], questions=["q", "q"])


def test_pairwise_metrics_take_best_reference_and_timings_are_kept() -> None:
    ctx = ScoringContext()
    recs = [EvalRecord("the cat sat", ("a dog ran", "the cat sat"))]
    out = score_records(recs, ["bleu", "chrf", "rouge_1"], context=ctx)
    assert {k: v[0] for k, v in out.items()} == pytest.approx({"bleu": 1.0, "chrf": 1.0, "rouge_1": 1.0})
    assert set(ctx.timings) == {"bleu", "chrf", "rouge_1"} and all(t >= 0 for t in ctx.timings.values())
    assert set(METRICS) & set(BATCH_METRICS) == set()
