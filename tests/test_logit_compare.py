"""distill2edge.logit_compare: the KL / same-top-token / max |dlogit| comparer of every parity check."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from distill2edge.logit_compare import LogitComparison, compare_logits, compare_rows, kl_rows


def test_hand_computed_rows() -> None:
    ref = np.array([[0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    other = np.array([[math.log(3.0), 0.0], [0.0, 2.0]], dtype=np.float32)
    c = compare_rows(ref, other)
    # row 0: p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    # row 1: log p - log q = (+2, -2), so KL = 2 (p1 - p2) = 2 tanh(1)
    assert c.kl == pytest.approx([0.5 * math.log(4 / 3), 2 * math.tanh(1.0)], rel=1e-6)
    assert c.same_top.tolist() == [True, False]  # argmax of (0, 0) is the first column, as for (ln 3, 0)
    assert c.max_abs_logit_diff == pytest.approx(2.0)
    assert c.logit_scale == 2.0
    assert c.positions == 2
    assert c.mean_kld == pytest.approx((0.5 * math.log(4 / 3) + 2 * math.tanh(1.0)) / 2, rel=1e-6)
    assert c.same_top_token == 0.5
    assert c.rel_logit_diff == pytest.approx(1.0)
    assert c.metrics() == {
        "max_abs_logit_diff": c.max_abs_logit_diff, "logit_scale": 2.0,
        "mean_kld": c.mean_kld, "same_top_token": 0.5,
    }


def test_identical_logits_are_zero_and_scale_floor() -> None:
    x = np.zeros((3, 5), dtype=np.float32)
    c = compare_rows(x, x.copy())
    assert c.kl.tolist() == [0.0, 0.0, 0.0] and c.same_top_token == 1.0
    assert c.max_abs_logit_diff == 0.0 and c.rel_logit_diff == 0.0  # no division by a zero scale


def test_matches_torch_kl_div_and_is_stable_for_large_logits() -> None:
    rng = np.random.default_rng(0)
    ref = (rng.standard_normal((7, 50)) * 8 + 1000).astype(np.float32)  # softmax of raw exp would overflow
    other = ref + rng.standard_normal(ref.shape).astype(np.float32)
    lp = torch.log_softmax(torch.from_numpy(ref).double(), -1)
    lq = torch.log_softmax(torch.from_numpy(other).double(), -1)
    expected = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).numpy()
    np.testing.assert_allclose(kl_rows(ref, other), expected, rtol=1e-9, atol=1e-12)
    assert np.isfinite(kl_rows(ref, other)).all()


def test_padding_columns_of_the_other_runtime_are_dropped() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 10)).astype(np.float32)
    padded = np.concatenate([ref, np.full((4, 3), 50.0, dtype=np.float32)], axis=1)
    c = compare_rows(ref, padded)
    assert c.kl == pytest.approx(np.zeros(4), abs=1e-12) and c.same_top_token == 1.0
    with pytest.raises(ValueError, match="fewer"):
        compare_rows(padded, ref)
    with pytest.raises(ValueError, match="positions"):
        compare_rows(ref, ref[:3])


def test_chunking_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((130, 33)).astype(np.float32) * 4
    other = ref + rng.standard_normal(ref.shape).astype(np.float32)
    whole, rows = compare_rows(ref, other, chunk=1000), compare_rows(ref, other, chunk=1)
    assert np.array_equal(whole.kl, rows.kl) and np.array_equal(whole.same_top, rows.same_top)
    assert (whole.max_abs_logit_diff, whole.logit_scale) == (rows.max_abs_logit_diff, rows.logit_scale)


def _export_gate_before(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> dict[str, float]:
    """`export.common.compare_logits` as it was before the comparer was shared (the gates' numbers)."""
    max_diff, scale, klds, same = 0.0, 0.0, [], []
    for r, g in zip(ref, got):
        r = r.astype(np.float64)
        g = g[:, : r.shape[1]].astype(np.float64)
        max_diff = max(max_diff, float(np.abs(r - g).max()))
        scale = max(scale, float(np.abs(r).max()))
        lr = r - np.logaddexp.reduce(r, axis=-1, keepdims=True)
        lg = g - np.logaddexp.reduce(g, axis=-1, keepdims=True)
        klds.extend((np.exp(lr) * (lr - lg)).sum(-1).tolist())
        same.extend((r.argmax(-1) == g.argmax(-1)).tolist())
    return {"max_abs_logit_diff": max_diff, "logit_scale": scale, "mean_kld": float(np.mean(klds)),
            "same_top_token": float(np.mean(same))}


def test_pooled_prompts_give_the_export_gates_numbers_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    ref = [rng.standard_normal((n, 40)).astype(np.float32) * 5 for n in (3, 70, 129)]
    got = [np.concatenate([r + 0.3 * rng.standard_normal(r.shape).astype(np.float32),
                           np.zeros((len(r), 2), np.float32)], axis=1) for r in ref]
    c = compare_logits(ref, got)
    assert c.metrics() == _export_gate_before(ref, got)  # exact equality, not approx
    assert c.positions == 202
    assert c.max_abs_logit_diff == max(compare_rows(r, g).max_abs_logit_diff for r, g in zip(ref, got))


def test_prompt_count_must_match() -> None:
    x = [np.zeros((2, 3), np.float32)]
    with pytest.raises(ValueError, match="prompts"):
        compare_logits(x, x * 2)
    with pytest.raises(ValueError, match="no logits"):
        LogitComparison.concat([])
