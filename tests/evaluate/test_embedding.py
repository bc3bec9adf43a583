"""Embedding metrics on the packaged all-MiniLM-L6-v2 (a few seconds on CPU)."""

from __future__ import annotations

import pytest

from distill2edge.evaluate.metrics import score_predictions

EMB = ["embedding_cosine", "bertscore_precision", "bertscore_recall", "bertscore_f1"]
REF = "The UE sends a random access preamble on the PRACH."


@pytest.fixture(scope="module")
def scores() -> dict[str, list[float]]:
    preds = [REF, "A random access preamble is sent by the UE.", "Quarterly earnings beat expectations.",
             "", "random access preamble"]
    refs = [REF, REF, REF, REF, ["The gNB answers.", REF]]
    return score_predictions(preds, refs, ["embedding"])


def test_identical_strings_score_one(scores) -> None:
    for m in EMB:
        assert scores[m][0] == pytest.approx(1.0, abs=1e-5)


def test_paraphrase_beats_unrelated(scores) -> None:
    for m in EMB:
        assert scores[m][1] > scores[m][2]
    assert scores["embedding_cosine"][1] > 0.6
    assert scores["embedding_cosine"][2] < 0.2


def test_empty_prediction_scores_zero(scores) -> None:
    assert [scores[m][3] for m in EMB] == [0.0] * 4


def test_bertscore_precision_recall_asymmetry_and_best_reference(scores) -> None:
    # A short prediction whose words all appear in the (best) reference: precision above recall.
    assert scores["bertscore_precision"][4] > scores["bertscore_recall"][4]
    p, r = scores["bertscore_precision"][4], scores["bertscore_recall"][4]
    assert scores["bertscore_f1"][4] == pytest.approx(2 * p * r / (p + r), abs=1e-5)
    alone = score_predictions(["random access preamble"], [REF], ["bertscore_f1"])["bertscore_f1"][0]
    assert scores["bertscore_f1"][4] == pytest.approx(alone, abs=1e-5)
