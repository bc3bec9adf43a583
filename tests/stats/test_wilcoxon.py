"""The Wilcoxon wrapper against scipy on fixed data, the rank-biserial effect size and Holm by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from distill2edge.stats.wilcoxon import holm, paired_wilcoxon, rank_biserial

X = [0.61, 0.72, 0.35, 0.90, 0.44, 0.58, 0.77, 0.69, 0.52, 0.80, 0.66, 0.47]
Y = [0.55, 0.70, 0.41, 0.71, 0.40, 0.50, 0.60, 0.69, 0.49, 0.62, 0.63, 0.52]


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_matches_scipy(alternative: str) -> None:
    got = paired_wilcoxon(X, Y, alternative)
    want = stats.wilcoxon(X, Y, alternative=alternative, zero_method="wilcox")
    assert got.p_value == pytest.approx(want.pvalue)
    assert got.statistic == pytest.approx(want.statistic)
    assert got.n == 12 and got.n_nonzero == 11  # one tie (0.69 vs 0.69) is dropped


def test_one_sided_direction_and_ties_with_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, 60) / 2  # many ties and zeros, like exact-match scores
    better = np.clip(base + (rng.random(60) < 0.4) * 0.5, 0, 1)
    up, down = paired_wilcoxon(better, base, "greater"), paired_wilcoxon(base, better, "greater")
    assert up.p_value < 0.001
    assert down.p_value > 0.99
    assert up.p_value == pytest.approx(stats.wilcoxon(better, base, alternative="greater").pvalue)


def test_rank_biserial_by_hand() -> None:
    # d = [3, -1, 2, 0]: zero dropped, |d| ranks 3, 1, 2 -> R+ = 5, R- = 1 -> r = 4/6.
    assert rank_biserial([3, -1, 2, 0]) == pytest.approx(4 / 6)
    assert rank_biserial([1, 2, 3]) == 1.0 and rank_biserial([0, 0]) == 0.0
    res = paired_wilcoxon([4, 1, 5, 2], [1, 2, 3, 2])
    assert res.rank_biserial == pytest.approx(4 / 6) and res.mean_diff == pytest.approx(1.0)


def test_all_ties_give_no_evidence() -> None:
    res = paired_wilcoxon([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert res.p_value == 1.0 and res.n_nonzero == 0 and res.rank_biserial == 0.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="equal length"):
        paired_wilcoxon([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        paired_wilcoxon([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        paired_wilcoxon([], [])


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.04 = 0.04 -> max with 0.06 = 0.06.
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
