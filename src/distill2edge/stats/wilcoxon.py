"""Paired one-sided Wilcoxon signed-rank test (scipy), its effect size, and Holm's correction.

The telecom-qa paper compares two distilled models on the same questions: for one metric, x[i] and
y[i] are the two models' scores on question i, and the alternative is that x tends to be larger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Alternative = Literal["greater", "less", "two-sided"]


@dataclass(frozen=True)
class WilcoxonResult:
    statistic: float
    """Sum of the ranks of the positive differences x - y (scipy's statistic for a one-sided test)."""
    p_value: float
    n: int
    """Number of pairs."""
    n_nonzero: int
    """Pairs with x != y (zero differences are dropped, Wilcoxon's convention)."""
    rank_biserial: float
    """Matched-pairs rank-biserial correlation (R+ - R-) / (R+ + R-), in [-1, 1]; > 0 when x tends to be larger."""
    mean_diff: float
    median_diff: float

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def rank_biserial(diffs: Sequence[float] | np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of paired differences (zeros dropped, ties mid-ranked).

    0 when no difference is non-zero.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    r_plus, r_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((r_plus - r_minus) / (r_plus + r_minus))


def paired_wilcoxon(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, alternative: Alternative = "greater"
) -> WilcoxonResult:
    """Wilcoxon signed-rank test of x against y, paired by position; H1 (default): x > y.

    Zero differences are dropped ("wilcox"); scipy picks the exact null distribution for small samples
    without ties and the normal approximation otherwise. When every difference is zero there is no
    evidence either way: p = 1. Raises ValueError for unequal lengths, no pairs, or non-finite values.
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired samples are empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired samples contain NaN or infinite scores")
    d = a - b
    nonzero = int((d != 0).sum())
    if nonzero == 0:
        statistic, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(a, b, alternative=alternative, zero_method="wilcox")
        statistic, p = float(res.statistic), float(res.pvalue)
    return WilcoxonResult(
        statistic=statistic, p_value=p, n=int(a.size), n_nonzero=nonzero, rank_biserial=rank_biserial(d),
        mean_diff=float(d.mean()), median_diff=float(np.median(d)),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order.

    Reject hypothesis i at family-wise level alpha when adjusted[i] < alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
