"""Compare two models' logits on the same tokens: the one comparer every parity check uses.

The export gates (GGUF through llama.cpp, ONNX through onnxruntime, `export.common.compare_logits`)
and the embedded-model check against llama.cpp (`models.llama_parity`) all ask the same questions of a
reference's logits and another runtime's, position by position:

- KL(p_ref || p_other) in nats, from the softmax of each row, computed in float64;
- whether the top-1 token (argmax) is the same;
- the largest |logit difference| and the largest |reference logit| (the scale relative tolerances use).

Rows are processed `chunk` at a time, so a 262k-token vocabulary never needs more than a few
`chunk x V` float64 buffers. Every figure is computed per row, so chunking does not change any result.
Only numpy is needed (the export gates run without importing torch for this).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

__all__ = ["GateFigures", "LogitComparison", "compare_logits", "compare_rows", "kl_rows"]

CHUNK_ROWS = 64
"""Rows compared at once (about 128 MB of float64 per buffer at a 262k vocabulary)."""


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of float64 logits through `logaddexp.reduce` (exact for huge logits)."""
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _chunks(ref: np.ndarray, other: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ref rows, other rows) as float64, `chunk` rows at a time; `other`'s extra vocab columns (a
    runtime's padding rows of the embedding) are dropped."""
    if len(ref) != len(other):
        raise ValueError(f"logits cover {len(ref)} and {len(other)} positions: they must be the same tokens")
    if other.shape[1] < ref.shape[1]:
        raise ValueError(f"the other logits have {other.shape[1]} columns, fewer than the reference's {ref.shape[1]}")
    vocab = ref.shape[1]
    for i in range(0, len(ref), chunk):
        yield ref[i:i + chunk].astype(np.float64), other[i:i + chunk, :vocab].astype(np.float64)


def kl_rows(p_logits: np.ndarray, q_logits: np.ndarray, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """KL(p || q) per row, in nats (float64 `[T]`), from raw logits `[T, V]` (q may have more columns)."""
    return compare_rows(p_logits, q_logits, chunk).kl


class GateFigures(TypedDict):
    """The four figures of an export gate, keyed as `ParityReport`'s fields: a TypedDict rather than a
    plain dict so `ParityReport(**figures)` is checked field by field."""

    max_abs_logit_diff: float
    logit_scale: float
    mean_kld: float
    same_top_token: float


@dataclass(frozen=True)
class LogitComparison:
    """Per-position figures of a reference against another runtime, plus the two maxima.

    `kl[t]` = KL(p_ref || p_other) at position t (nats), `same_top[t]` whether the argmaxes agree.
    """

    kl: np.ndarray
    same_top: np.ndarray
    max_abs_logit_diff: float
    logit_scale: float

    @property
    def positions(self) -> int:
        return len(self.kl)

    @property
    def mean_kld(self) -> float:
        """Mean over positions of KL(p_ref || p_other), nats."""
        return float(np.mean(self.kl))

    @property
    def same_top_token(self) -> float:
        """Fraction of positions whose top-1 token agrees."""
        return float(np.mean(self.same_top))

    @property
    def rel_logit_diff(self) -> float:
        """max |dlogit| / logit scale (the scale floored at 1e-6, so all-zero logits do not divide by 0)."""
        return self.max_abs_logit_diff / max(self.logit_scale, 1e-6)

    def metrics(self) -> GateFigures:
        """The four figures of an export gate (`ParityReport`'s fields of the same names)."""
        return {
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "logit_scale": self.logit_scale,
            "mean_kld": self.mean_kld,
            "same_top_token": self.same_top_token,
        }

    @staticmethod
    def concat(parts: Sequence[LogitComparison]) -> LogitComparison:
        """One comparison over all positions of `parts` (several prompts)."""
        if not parts:
            raise ValueError("no logits to compare")
        return LogitComparison(
            kl=np.concatenate([p.kl for p in parts]),
            same_top=np.concatenate([p.same_top for p in parts]),
            max_abs_logit_diff=max(p.max_abs_logit_diff for p in parts),
            logit_scale=max(p.logit_scale for p in parts),
        )


def compare_rows(ref: np.ndarray, other: np.ndarray, chunk: int = CHUNK_ROWS) -> LogitComparison:
    """Compare the logits `[T, V]` of one sequence (`other` may carry extra padding columns)."""
    kl, same, max_diff, scale = [], [], 0.0, 0.0
    for r, g in _chunks(ref, other, chunk):
        max_diff = max(max_diff, float(np.abs(r - g).max()))
        scale = max(scale, float(np.abs(r).max()))
        lr, lg = _log_softmax(r), _log_softmax(g)
        kl.append((np.exp(lr) * (lr - lg)).sum(-1))
        same.append(r.argmax(-1) == g.argmax(-1))
    return LogitComparison(
        kl=np.concatenate(kl) if kl else np.zeros(0),
        same_top=np.concatenate(same) if same else np.zeros(0, dtype=bool),
        max_abs_logit_diff=max_diff,
        logit_scale=scale,
    )


def compare_logits(ref: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> LogitComparison:
    """Compare per-prompt logits (each `[seq, vocab]`), pooling every position of every prompt."""
    if len(ref) != len(other):
        raise ValueError(f"{len(ref)} reference prompts against {len(other)}")
    return LogitComparison.concat([compare_rows(r, g) for r, g in zip(ref, other)])
