"""KD divergences, kd_loss and the vanilla-KD objective against values computed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill2edge.losses import (
    KD_LOSSES,
    causal_lm_ce,
    distillation_objective,
    get_kd_loss,
    kd_loss,
    kd_loss_names,
    register_kd_loss,
)

ALL = ["forward_kl", "reverse_kl", "js", "skew_forward_kl", "skew_reverse_kl"]


# --- independent numpy reference ------------------------------------------------------------------


def np_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * np.log(p / q)).sum(axis=-1)


def np_divergence(
    name: str, s: np.ndarray, t: np.ndarray, temperature: float, lam: float = 0.1
) -> np.ndarray:
    ps, pt = np_softmax(s, temperature), np_softmax(t, temperature)
    if name == "forward_kl":
        return np_kl(pt, ps)
    if name == "reverse_kl":
        return np_kl(ps, pt)
    if name == "js":
        m = (pt + ps) / 2
        return 0.5 * np_kl(pt, m) + 0.5 * np_kl(ps, m)
    if name == "skew_forward_kl":
        return np_kl(pt, lam * pt + (1 - lam) * ps)
    if name == "skew_reverse_kl":
        return np_kl(ps, lam * ps + (1 - lam) * pt)
    raise AssertionError(name)


# Fixed [N=3, V=4] logits.
S = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0], [-2.0, 1.5, 1.5, 0.0]])
T = np.array([[2.0, 1.0, 0.0, 0.0], [0.5, -0.5, 2.5, 1.0], [0.0, 0.0, 0.0, 0.0]])


def all_true(b: int, t: int) -> torch.Tensor:
    return torch.ones(b, t, dtype=torch.bool)


# --- the registry ---------------------------------------------------------------------------------


def test_registered_names_in_order() -> None:
    assert kd_loss_names() == ALL
    assert set(KD_LOSSES) == set(ALL)


def test_unknown_name_lists_registered() -> None:
    with pytest.raises(ValueError, match="unknown KD loss 'nope'") as err:
        get_kd_loss("nope")
    for name in ALL:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="nope"):
        kd_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), all_true(1, 1), name="nope")


def test_duplicate_registration_refused() -> None:
    original = KD_LOSSES["forward_kl"]
    with pytest.raises(ValueError, match="already registered"):
        register_kd_loss("forward_kl")(lambda s, t, temperature, **kw: s.sum(-1))
    assert KD_LOSSES["forward_kl"] is original


def test_register_new_loss_usable_by_name() -> None:
    @register_kd_loss("_test_l1_probs")
    def l1(s: torch.Tensor, t: torch.Tensor, temperature: float, **kwargs: float) -> torch.Tensor:
        return (s.softmax(-1) - t.softmax(-1)).abs().sum(-1)

    try:
        assert get_kd_loss("_test_l1_probs") is l1
        s = torch.tensor([[[math.log(3.0), 0.0]]])
        t = torch.zeros(1, 1, 2)
        # |0.75 - 0.5| + |0.25 - 0.5| = 0.5
        assert kd_loss(s, t, all_true(1, 1), name="_test_l1_probs").item() == pytest.approx(0.5)
    finally:
        del KD_LOSSES["_test_l1_probs"]


# --- divergence values ----------------------------------------------------------------------------


def test_two_token_values_by_hand() -> None:
    """p_T = (1/2, 1/2), p_S = (3/4, 1/4): closed forms written out by hand."""
    s = torch.tensor([[math.log(3.0), 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    expected = {
        "forward_kl": 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25),
        "reverse_kl": 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5),
        # m = (0.625, 0.375)
        "js": 0.5 * (0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375))
        + 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)),
        # m = 0.1 p_T + 0.9 p_S = (0.725, 0.275)
        "skew_forward_kl": 0.5 * math.log(0.5 / 0.725) + 0.5 * math.log(0.5 / 0.275),
        # m = 0.1 p_S + 0.9 p_T = (0.525, 0.475)
        "skew_reverse_kl": 0.75 * math.log(0.75 / 0.525) + 0.25 * math.log(0.25 / 0.475),
    }
    assert expected["forward_kl"] == pytest.approx(0.5 * math.log(4 / 3))
    for name, value in expected.items():
        got = get_kd_loss(name)(s, t, 1.0)
        assert got.shape == (1,)
        assert got.item() == pytest.approx(value, rel=1e-6), name


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_matches_numpy_reference(name: str, temperature: float) -> None:
    got = get_kd_loss(name)(torch.tensor(S), torch.tensor(T), temperature)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), np_divergence(name, S, T, temperature), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["skew_forward_kl", "skew_reverse_kl"])
def test_skew_lambda_option(name: str) -> None:
    fn = get_kd_loss(name)
    s, t = torch.tensor(S), torch.tensor(T)
    got = fn(s, t, 1.0, skew_lambda=0.4)
    np.testing.assert_allclose(got.numpy(), np_divergence(name, S, T, 1.0, lam=0.4), rtol=1e-10)
    plain = get_kd_loss("forward_kl" if name == "skew_forward_kl" else "reverse_kl")
    torch.testing.assert_close(fn(s, t, 1.0, skew_lambda=0.0), plain(s, t, 1.0))
    torch.testing.assert_close(fn(s, t, 1.0, skew_lambda=1.0), torch.zeros(3, dtype=torch.float64))
    # Through kd_loss, the option reaches the divergence.
    mean = kd_loss(s[None], t[None], all_true(1, 3), name=name, skew_lambda=0.4)
    assert mean.item() == pytest.approx(np_divergence(name, S, T, 1.0, lam=0.4).mean(), rel=1e-10)
    with pytest.raises(ValueError, match="skew_lambda"):
        fn(s, t, 1.0, skew_lambda=1.5)


def test_non_skew_losses_ignore_skew_lambda() -> None:
    s, t = torch.tensor(S), torch.tensor(T)
    for name in ["forward_kl", "reverse_kl", "js"]:
        fn = get_kd_loss(name)
        torch.testing.assert_close(fn(s, t, 1.0, skew_lambda=0.7), fn(s, t, 1.0))


def test_js_is_bounded_by_log2() -> None:
    s = torch.tensor([[50.0, -50.0]])
    t = torch.tensor([[-50.0, 50.0]])
    assert get_kd_loss("js")(s, t, 1.0).item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_zero_when_student_equals_teacher(name: str) -> None:
    x = torch.randn(6, 11, generator=torch.Generator().manual_seed(0)) * 4
    got = get_kd_loss(name)(x, x.clone(), 1.7)
    torch.testing.assert_close(got, torch.zeros(6), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_non_negative_on_random_inputs(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(256, 50, generator=g) * 3
    t = torch.randn(256, 50, generator=g) * 3
    got = get_kd_loss(name)(s, t, 1.0)
    assert got.dtype == torch.float32
    assert (got >= -1e-6).all()
    assert (got > 1e-3).all()  # different random distributions are genuinely apart


# --- temperature ----------------------------------------------------------------------------------


def test_temperature_softens_and_only_hinton_t2_scales_by_t_squared() -> None:
    s = torch.tensor([[[math.log(3.0), 0.0]]])
    t = torch.zeros(1, 1, 2)
    # Logits scaled by T at temperature T give the same distributions as the originals at 1, so by
    # default (no T² factor, as TRL's GKD and torchtune) kd_loss is the same at every T; with the
    # opt-in hinton_t2 it differs by exactly T².
    for temp in [0.5, 2.0, 4.0]:
        got = kd_loss(s * temp, t * temp, all_true(1, 1), temperature=temp)
        assert got.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)
        hinton = kd_loss(s * temp, t * temp, all_true(1, 1), temperature=temp, hinton_t2=True)
        assert hinton.item() == pytest.approx(temp**2 * 0.5 * math.log(4 / 3), rel=1e-6)
    # At a high temperature T² · KL tends to logit matching (Hinton et al.): with d = z_S - z_T,
    # T² · KL -> sum_v (d_v - mean(d))² / (2V) for either KL direction, and JS is a quarter of that.
    s, t = torch.tensor(S)[None], torch.tensor(T)[None]
    d = S - T
    matching = ((d - d.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1).mean() / (2 * S.shape[-1])
    for name, factor in [("forward_kl", 1.0), ("reverse_kl", 1.0), ("js", 0.25)]:
        got = kd_loss(s, t, all_true(1, 3), name=name, temperature=1000.0, hinton_t2=True)
        assert got.item() == pytest.approx(factor * matching, rel=1e-3), name
        plain = kd_loss(s, t, all_true(1, 3), name=name, temperature=1000.0)
        assert plain.item() == pytest.approx(got.item() / 1000.0**2, rel=1e-12), name


def test_invalid_arguments() -> None:
    x = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(x, x, all_true(1, 2), temperature=0.0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        kd_loss(x, x, all_true(1, 2), chunk_tokens=0)
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(x, torch.zeros(1, 2, 4), all_true(1, 2))
    with pytest.raises(ValueError, match="mask"):
        kd_loss(x, x, all_true(2, 1))


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_gradcheck(name: str) -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: get_kd_loss(name)(x, t, 0.7, skew_lambda=0.3), (s,))
    # Through kd_loss with masking and recomputed chunks (fast mode: one random direction, to stay quick).
    s3 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t3 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.autograd.gradcheck(
        lambda x: kd_loss(x, t3, mask, name=name, temperature=1.5, chunk_tokens=2, skew_lambda=0.3),
        (s3,),
        fast_mode=True,
    )


def test_teacher_gets_no_gradient() -> None:
    s = torch.tensor(S)[None].requires_grad_()
    t = torch.tensor(T)[None].requires_grad_()
    kd_loss(s, t, all_true(1, 3)).backward()
    assert s.grad is not None and t.grad is None


# --- chunking and masking -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_chunked_equals_unchunked(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    t = torch.randn(3, 7, 13, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 7, generator=g) > 0.3
    results = []
    for chunk in (1, 4, 10_000):
        s = torch.randn(3, 7, 13, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        s.requires_grad_()
        loss = kd_loss(s, t, mask, name=name, temperature=2.0, chunk_tokens=chunk)
        loss.backward()
        results.append((loss.detach(), s.grad))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-12, atol=1e-14)
    # Also equal to the numpy mean over the masked rows (no T² factor).
    s_np = torch.randn(3, 7, 13, generator=torch.Generator().manual_seed(4), dtype=torch.float64).numpy()
    m = mask.numpy()
    expected = np_divergence(name, s_np[m], t.numpy()[m], 2.0).mean()
    assert results[0][0].item() == pytest.approx(expected, rel=1e-10)


def test_masked_out_positions_do_not_matter() -> None:
    g = torch.Generator().manual_seed(5)
    s = torch.randn(2, 4, 6, generator=g)
    t = torch.randn(2, 4, 6, generator=g)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    s2, t2 = s.clone(), t.clone()
    s2[~mask] = torch.randn(int((~mask).sum()), 6, generator=g) * 100
    t2[~mask] = float("nan")  # not even NaN leaks in from unselected positions
    s2.requires_grad_()
    base = kd_loss(s, t, mask, name="js")
    other = kd_loss(s2, t2, mask, name="js")
    assert other.item() == pytest.approx(base.item(), rel=1e-6)
    other.backward()
    assert (s2.grad[~mask] == 0).all()
    assert s2.grad[mask].abs().sum() > 0


def test_empty_mask_gives_zero_with_grad() -> None:
    s = torch.full((2, 3, 4), -float("inf"))
    s[..., 0] = 0.0
    s.requires_grad_()
    t = torch.randn(2, 3, 4)
    loss = kd_loss(s, t, torch.zeros(2, 3, dtype=torch.bool), temperature=3.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert s.grad is not None and (s.grad == 0).all()


# --- masked vocabulary entries --------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fill", [-float("inf"), -1e30, torch.finfo(torch.float32).min])
def test_masked_vocab_entries_no_nan(name: str, fill: float) -> None:
    """Vocabulary entries masked in both models contribute nothing: same value as without them."""
    s = torch.tensor(S, dtype=torch.float32)
    t = torch.tensor(T, dtype=torch.float32)
    s_pad = torch.cat([s, torch.full((3, 2), fill)], dim=1)[None].requires_grad_()
    t_pad = torch.cat([t, torch.full((3, 2), fill)], dim=1)[None]
    loss = kd_loss(s_pad, t_pad, all_true(1, 3), name=name, temperature=2.0)
    expected = kd_loss(s[None], t[None], all_true(1, 3), name=name, temperature=2.0)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(s_pad.grad).all()
    assert (s_pad.grad[..., 4:] == 0).all()


def test_vocab_trimmed_view_and_bf16_inputs() -> None:
    g = torch.Generator().manual_seed(6)
    s = torch.randn(2, 5, 12, generator=g)
    t = torch.randn(2, 5, 16, generator=g)
    mask = all_true(2, 5)
    trimmed = kd_loss(s, t[..., :12], mask)  # non-contiguous teacher view
    assert trimmed.item() == pytest.approx(kd_loss(s, t[..., :12].contiguous(), mask).item(), rel=1e-6)
    s16, t16 = s.bfloat16(), t[..., :12].bfloat16()
    got = kd_loss(s16, t16, mask)
    assert got.dtype == torch.float32  # computed upcast, not in bf16
    assert got.item() == pytest.approx(kd_loss(s16.float(), t16.float(), mask).item(), rel=1e-6)


# --- causal CE and the vanilla-KD objective -------------------------------------------------------


def test_causal_lm_ce_matches_manual_shift() -> None:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 5, 9, generator=g)
    labels = torch.tensor([[-100, -100, 3, 4, 8], [-100, 1, 2, -100, -100]])
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 9), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert causal_lm_ce(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    empty = causal_lm_ce(logits.requires_grad_(), torch.full((2, 5), -100))
    assert empty.item() == 0.0 and empty.requires_grad


def _hand_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B=1, T=3, V=2, labels (-100, 1, 0): position 0 predicts token 1, position 1 predicts token 0,
    position 2 predicts nothing (its logits are absurd so including it would show)."""
    student = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0], [100.0, -100.0]]])
    teacher = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0], [-100.0, 100.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    return student, teacher, labels


def test_objective_shift_by_hand() -> None:
    student, teacher, labels = _hand_batch()
    # CE: -log p_S(1 | pos 0) = -log 3/4, -log p_S(0 | pos 1) = -log 4/5.
    ce = (-math.log(0.75) - math.log(0.8)) / 2
    # KD: pos 0 identical (0); pos 1 KL((1/2, 1/2) || (4/5, 1/5)) = 1/2 log(5/8 · 5/2) = log 1.25.
    kd = (0.0 + math.log(1.25)) / 2
    out = distillation_objective(student, teacher, labels, alpha=0.25, name="forward_kl", temperature=1.0)
    assert set(out) == {"loss", "ce", "kd"}
    assert out["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.75 * ce + 0.25 * kd, rel=1e-6)


def test_objective_alpha_zero_is_plain_ce() -> None:
    g = torch.Generator().manual_seed(8)
    s = torch.randn(2, 6, 10, generator=g, requires_grad=True)
    t = torch.randn(2, 6, 10, generator=g)
    labels = torch.tensor([[-100, -100, 1, 2, 3, -100], [-100, 4, 5, 6, 7, 8]])
    out = distillation_objective(s, t, labels, alpha=0.0, name="js", temperature=2.0)
    expected = F.cross_entropy(s[:, :-1].reshape(-1, 10), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out["loss"], expected)
    assert out["kd"].item() > 0  # still reported for logging
    out["loss"].backward()
    assert s.grad is not None


def test_objective_alpha_one_is_kd_without_t_squared_unless_hinton_t2() -> None:
    g = torch.Generator().manual_seed(9)
    s = torch.randn(2, 6, 10, generator=g, dtype=torch.float64)
    t = torch.randn(2, 6, 10, generator=g, dtype=torch.float64)
    labels = torch.tensor([[-100, -100, 1, 2, 3, -100], [-100, 4, 5, 6, 7, 8]])
    out = distillation_objective(s, t, labels, alpha=1.0, name="reverse_kl", temperature=2.0, chunk_tokens=3)
    keep = (labels[:, 1:] != -100).numpy()  # rows 0..T-2 whose next label is scored
    per_token = np_divergence("reverse_kl", s[:, :-1].numpy()[keep], t[:, :-1].numpy()[keep], 2.0)
    assert keep.sum() == 8
    assert out["loss"].item() == pytest.approx(per_token.mean(), rel=1e-10)
    assert out["kd"].item() == pytest.approx(out["loss"].item(), rel=1e-12)
    hinton = distillation_objective(
        s, t, labels, alpha=1.0, name="reverse_kl", temperature=2.0, chunk_tokens=3, hinton_t2=True
    )
    assert hinton["loss"].item() == pytest.approx(4.0 * per_token.mean(), rel=1e-10)


def test_objective_rejects_bad_alpha() -> None:
    student, teacher, labels = _hand_batch()
    with pytest.raises(ValueError, match="alpha"):
        distillation_objective(student, teacher, labels, alpha=1.5, name="forward_kl", temperature=1.0)
