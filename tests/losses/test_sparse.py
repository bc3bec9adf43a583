"""Sparse (top-k + remaining mass) KD targets against the full-vocabulary losses."""

from __future__ import annotations

import pytest
import torch

from distill2edge.losses import kd_loss
from distill2edge.losses.sparse import log1mexp, rest_log_mass, sparse_kd_loss, sparse_teacher_targets


def _logits(n: int = 12, v: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * 3, torch.randn(n, v, generator=g) * 3


def _full(student: torch.Tensor, teacher: torch.Tensor, name: str, t: float) -> torch.Tensor:
    mask = torch.ones(1, student.shape[0], dtype=torch.bool)
    return kd_loss(student[None], teacher[None], mask, name=name, temperature=t)


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "js", "skew_forward_kl"])
def test_top_k_over_the_whole_vocabulary_equals_the_full_loss_and_its_gradient(name: str) -> None:
    s, t = _logits()
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    full = _full(s1, t, name, 2.0)
    idx, logp, rest = sparse_teacher_targets(t, k=t.shape[1], temperature=2.0)
    assert torch.isinf(rest).all() and (rest < 0).all()
    sparse = sparse_kd_loss(s2, idx, logp, rest, name=name, temperature=2.0)
    assert float(sparse) == pytest.approx(float(full), rel=1e-5, abs=1e-6)
    full.backward()
    sparse.backward()
    torch.testing.assert_close(s2.grad, s1.grad, rtol=1e-4, atol=1e-6)


def test_forward_kl_on_top_k_grows_with_k_towards_the_full_value() -> None:
    s, t = _logits(v=64)
    full = float(_full(s, t, "forward_kl", 1.0))
    values = [float(sparse_kd_loss(s, *sparse_teacher_targets(t, k, 1.0), temperature=1.0)) for k in (1, 4, 16, 63, 64)]
    assert all(a <= b + 1e-6 for a, b in zip(values, values[1:])), values
    assert values[0] < values[-1]
    assert values[-1] == pytest.approx(full, rel=1e-5)
    assert values[2] < full


def test_rest_bin_penalises_student_mass_outside_the_teacher_top_k() -> None:
    _, t = _logits(n=4, v=30)
    idx, logp, rest = sparse_teacher_targets(t, 5, 1.0)
    s_match = t.clone()
    s_off = t.clone()
    s_off.scatter_(1, idx, -20.0)  # the student puts (almost) nothing on the teacher's top 5
    good = sparse_kd_loss(s_match, idx, logp, rest)
    bad = sparse_kd_loss(s_off, idx, logp, rest)
    assert float(good) == pytest.approx(0.0, abs=1e-5)
    assert float(bad) > 1.0


def test_chunked_rows_give_the_same_loss_and_gradient() -> None:
    s, t = _logits(n=50)
    targets = sparse_teacher_targets(t, 8, 2.0)
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    one = sparse_kd_loss(a, *targets, temperature=2.0, chunk_tokens=1000)
    many = sparse_kd_loss(b, *targets, temperature=2.0, chunk_tokens=7)
    assert float(many) == pytest.approx(float(one), rel=1e-6)
    one.backward()
    many.backward()
    torch.testing.assert_close(b.grad, a.grad)


def test_log1mexp_and_rest_mass_are_accurate_at_both_ends() -> None:
    x = torch.tensor([-1e-8, -1e-3, -0.5, -0.7, -2.0, -50.0], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(x.float()).double(), torch.log(-torch.expm1(x)), rtol=1e-5, atol=1e-20)
    all_mass = torch.log_softmax(torch.randn(3, 10), dim=-1)
    assert torch.isfinite(rest_log_mass(all_mass)).all()  # floored, not -inf


def test_mismatched_targets_and_out_of_range_ids_are_refused() -> None:
    s, t = _logits(n=6, v=20)
    idx, logp, rest = sparse_teacher_targets(t, 4, 1.0)
    with pytest.raises(ValueError, match="do not match 5 student rows"):
        sparse_kd_loss(s[:5], idx, logp, rest)
    with pytest.raises(ValueError, match="outside the student's 10 logits"):
        sparse_kd_loss(s[:, :10], idx + 10, logp, rest)
    empty = sparse_kd_loss(s[:0].requires_grad_(), idx[:0], logp[:0], rest[:0])
    assert float(empty) == 0.0 and empty.requires_grad


def test_uniform_tail_spreads_the_rest_evenly_and_is_exact_for_a_flat_tail() -> None:
    from distill2edge.losses.sparse import uniform_tail

    s, _ = _logits(n=5, v=30)
    t = torch.randn(5, 30)
    t[:, 6:] = -3.0  # a flat tail: the uniform assumption holds exactly
    targets = sparse_teacher_targets(t, 6, 2.0)
    full = uniform_tail(*targets, 30)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(5))
    torch.testing.assert_close(full, torch.log_softmax(t / 2.0, -1), rtol=1e-5, atol=1e-5)
    for name in ("forward_kl", "reverse_kl", "js"):
        want = _full(s, t, name, 2.0)
        got = sparse_kd_loss(s, *targets, name=name, temperature=2.0, tail="uniform")
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match="tail must be"):
        sparse_kd_loss(s, *targets, tail="spread")
