"""Paired intervals (`stats.paired`) against cases with known answers and the large-sample theory they
must agree with (normal approximation of a mean difference; delta method for a ratio of means)."""

from __future__ import annotations

import numpy as np
import pytest

from distill2edge.stats.paired import difference, kept


def test_a_constant_fraction_is_kept_exactly():
    teacher = np.random.default_rng(0).random(50)
    iv = kept(0.5 * teacher, teacher)
    assert iv is not None
    assert iv.value == pytest.approx(0.5) and iv.low == pytest.approx(0.5) and iv.high == pytest.approx(0.5)
    assert iv.n == 50 and iv.level == 0.95


def test_a_constant_difference_has_no_spread_and_differs_everywhere():
    base = np.random.default_rng(1).random(30)
    d = difference(base + 0.1, base)
    assert d.mean.value == pytest.approx(0.1)
    assert d.mean.low == pytest.approx(0.1) and d.mean.high == pytest.approx(0.1)
    assert d.n_differ == 30 and d.p_two_sided < 1e-5


def test_mean_difference_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(2)
    a, b = rng.random(400), rng.random(400)
    a = a + 0.05
    d = difference(a, b)
    diff = a - b
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert d.mean.value == pytest.approx(diff.mean())
    assert d.mean.low == pytest.approx(diff.mean() - 1.96 * se, abs=0.15 * se * 1.96)
    assert d.mean.high == pytest.approx(diff.mean() + 1.96 * se, abs=0.15 * se * 1.96)


def test_kept_interval_matches_the_delta_method():
    rng = np.random.default_rng(3)
    teacher = rng.random(800)
    student = np.clip(0.6 * teacher + rng.normal(0, 0.15, 800), 0, 1)
    iv = kept(student, teacher)
    assert iv is not None
    r = student.mean() / teacher.mean()
    se = np.std(student - r * teacher, ddof=1) / np.sqrt(teacher.size) / teacher.mean()
    assert iv.value == pytest.approx(r)
    assert iv.low == pytest.approx(r - 1.96 * se, abs=0.15 * 1.96 * se)
    assert iv.high == pytest.approx(r + 1.96 * se, abs=0.15 * 1.96 * se)
    wider = kept(student[:100], teacher[:100])
    assert wider is not None and wider.high - wider.low > 2 * (iv.high - iv.low)


def test_interval_is_reproducible_and_level_widens_it():
    rng = np.random.default_rng(4)
    t, s = rng.random(60), rng.random(60) * 0.7
    a, b = kept(s, t), kept(s, t)
    assert a == b
    narrow = kept(s, t, level=0.8)
    assert a is not None and narrow is not None and narrow.low > a.low and narrow.high < a.high


def test_a_reference_that_scores_nothing_keeps_no_fraction():
    assert kept([0.5, 0.2], [0.0, 0.0]) is None


@pytest.mark.parametrize("x, y, message", [
    ([1.0, 2.0], [1.0], "equal length"),
    ([], [], "non-empty"),
    ([1.0, float("nan")], [1.0, 1.0], "NaN"),
])
def test_bad_pairs_are_refused(x, y, message):
    with pytest.raises(ValueError, match=message):
        kept(x, y)
