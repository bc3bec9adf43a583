"""Token-level knowledge-distillation losses for causal LMs.

A *divergence* compares the student's and the teacher's next-token distributions row by row:

    divergence(student_logits [N, V], teacher_logits [N, V], temperature, **options) -> [N]

Both distributions are softened by the same temperature (p = softmax(logits / T)) and computed with
`log_softmax` in at least float32, whatever the input dtype (bf16 logits lose too much precision in a
softmax over a large vocabulary). Terms where the distribution being weighted is exactly zero count as
0 (0 · log 0 = 0), so vocabulary entries masked with -inf or a very negative logit never produce NaN.

Divergences live in a registry keyed by name so that a recipe picks one by string
(`distill.loss.name`). `kd_loss` applies one to the answer tokens of a batch, in chunks of rows so the
float32 intermediates of a 150k-entry vocabulary never exist for every token at once, and
`distillation_objective` mixes it with the usual cross-entropy on the gold answer (vanilla KD).

The KD term is the plain token mean of the divergence, with no T² factor, as TRL's `GKDTrainer`
(`generalized_jsd_loss`) and torchtune's `ForwardKLLoss` compute it (pinned to their numbers in
`tests/losses/test_kd_reference.py`). Hinton et al.'s T² gradient-scale convention is opt-in:
`hinton_t2=True` (recipes: `loss.hinton_t2`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
"""Label value of positions that carry no loss (prompt and padding), as in Hugging Face models."""


class DivergenceFn(Protocol):
    """`(student_logits [N, V], teacher_logits [N, V], temperature, **options) -> divergence [N]`.

    Options are keyword-only floats such as `skew_lambda`; a divergence ignores the options it does not
    use, so one config section can drive every registered loss. The two tensors and the temperature are
    positional-only (`/`, in the registered divergences too) so a divergence may name them as it likes
    and a type checker accepts it as a `DivergenceFn`.
    """

    def __call__(
        self, student_logits: Tensor, teacher_logits: Tensor, temperature: float, /, **kwargs: Any
    ) -> Tensor: ...


KD_LOSSES: dict[str, DivergenceFn] = {}
"""Registered divergences by name, in registration order (`forward_kl` first: the default)."""


def register_kd_loss(name: str) -> Callable[[DivergenceFn], DivergenceFn]:
    """Decorator adding a divergence to `KD_LOSSES` under `name`; a name can be registered only once."""

    def add(fn: DivergenceFn) -> DivergenceFn:
        if name in KD_LOSSES:
            raise ValueError(f"KD loss {name!r} is already registered")
        KD_LOSSES[name] = fn
        return fn

    return add


def get_kd_loss(name: str) -> DivergenceFn:
    """The divergence registered as `name`; ValueError naming the registered ones if there is none."""
    try:
        return KD_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown KD loss {name!r}; registered: {', '.join(kd_loss_names())}") from None


def kd_loss_names() -> list[str]:
    """Names of the registered divergences, in registration order."""
    return list(KD_LOSSES)


# --- building blocks (all row-wise over the last dimension) ---------------------------------------


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / T) over the vocabulary, upcast to at least float32. [N, V] -> [N, V]"""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.log_softmax(logits.to(dtype) / temperature, dim=-1)


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) from log-probabilities. [N, V] x2 -> [N]

    Entries with p_v == 0 contribute exactly 0, even where log q_v is -inf too (the difference would be
    NaN). The difference is replaced *before* the product so no NaN reaches the backward pass either.
    """
    p = log_p.exp()
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return (p * diff).sum(dim=-1)


def _log_mixture(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """log(w · a + (1 - w) · b) for distributions given as log-probabilities. [N, V] x2 -> [N, V]

    The mixture is formed in probability space (a sum of non-negative terms, so well conditioned) and
    floored at the dtype's smallest normal number before the log, so where the mixture is zero the
    result is finite (about -87 in float32) and no inf/NaN gradient appears. With both weights positive
    such entries are zero in a and b alike, and `_kl` skips them.
    """
    mix = weight_a * log_a.exp() + (1.0 - weight_a) * log_b.exp()
    return mix.clamp_min(torch.finfo(mix.dtype).tiny).log()


def _check_lambda(skew_lambda: float) -> float:
    if not 0.0 <= skew_lambda <= 1.0:
        raise ValueError(f"skew_lambda must lie in [0, 1], got {skew_lambda}")
    return float(skew_lambda)


# --- registered divergences ------------------------------------------------------------------------


@register_kd_loss("forward_kl")
def forward_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float, /, **kwargs: Any) -> Tensor:
    """KL(p_T || p_S): mean-seeking; the student spreads mass over everything the teacher allows. -> [N]"""
    return _kl(_log_probs(teacher_logits, temperature), _log_probs(student_logits, temperature))


@register_kd_loss("reverse_kl")
def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float, /, **kwargs: Any) -> Tensor:
    """KL(p_S || p_T): mode-seeking; the student concentrates on the teacher's main modes. -> [N]"""
    return _kl(_log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature))


@register_kd_loss("js")
def js(student_logits: Tensor, teacher_logits: Tensor, temperature: float, /, **kwargs: Any) -> Tensor:
    """Jensen-Shannon: ½ KL(p_T || m) + ½ KL(p_S || m) with m = (p_T + p_S) / 2; bounded by log 2. -> [N]"""
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    log_m = _log_mixture(log_t, log_s, 0.5)
    return 0.5 * _kl(log_t, log_m) + 0.5 * _kl(log_s, log_m)


@register_kd_loss("skew_forward_kl")
def skew_forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float,
    /,
    *,
    skew_lambda: float = 0.1,
    **kwargs: Any,
) -> Tensor:
    """Skew KL of DistiLLM: KL(p_T || λ p_T + (1 - λ) p_S), λ = `skew_lambda`. -> [N]

    Mixing a little of the teacher into the student's side keeps the divergence finite (≤ -log λ) where
    the student gives a teacher token almost no mass, which steadies the gradients early in training.
    λ = 0 is plain forward KL; λ = 1 is identically zero.
    """
    lam = _check_lambda(skew_lambda)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    return _kl(log_t, _log_mixture(log_t, log_s, lam))


@register_kd_loss("skew_reverse_kl")
def skew_reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float,
    /,
    *,
    skew_lambda: float = 0.1,
    **kwargs: Any,
) -> Tensor:
    """Skew reverse KL of DistiLLM: KL(p_S || λ p_S + (1 - λ) p_T), λ = `skew_lambda`. -> [N]

    The reverse-KL counterpart of `skew_forward_kl`: bounded by -log λ, λ = 0 is plain reverse KL.
    """
    lam = _check_lambda(skew_lambda)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    return _kl(log_s, _log_mixture(log_s, log_t, lam))


# --- losses over a batch ---------------------------------------------------------------------------


def _rows_divergence(
    fn: DivergenceFn,
    student_logits: Tensor,
    teacher_logits: Tensor,
    batch_idx: Tensor,
    pos_idx: Tensor,
    temperature: float,
    options: dict[str, Any],
) -> Tensor:
    """Divergence at the positions (batch_idx[i], pos_idx[i]): logits [B, T, V], indices [c] -> [c].

    Indexing gathers just those rows, so no copy of the whole [B, T, V] tensor is made even when it is
    a non-contiguous view (e.g. `logits[:, :-1]` or a vocabulary slice).
    """
    return fn(student_logits[batch_idx, pos_idx], teacher_logits[batch_idx, pos_idx], temperature, **options)


def _zero_with_grad(like: Tensor) -> Tensor:
    """A scalar 0.0 attached to `like`'s graph (so `.backward()` works).

    Sums an empty slice rather than computing `like.sum() * 0`, which would be NaN if `like` holds -inf.
    """
    return like.narrow(0, 0, 0).sum().to(torch.promote_types(like.dtype, torch.float32))


def hinton_scale(temperature: float, hinton_t2: bool) -> float:
    """The factor on a KD term: T² with Hinton et al.'s gradient-scale convention (`hinton_t2`), else 1."""
    return float(temperature) ** 2 if hinton_t2 else 1.0


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    name: str = "forward_kl",
    temperature: float = 1.0,
    chunk_tokens: int = 1024,
    hinton_t2: bool = False,
    **kwargs: Any,
) -> Tensor:
    """Mean divergence over the masked tokens (no T² factor unless `hinton_t2`).

    Args:
        student_logits: [B, T, V] student logits at the positions to compare.
        teacher_logits: [B, T, V] teacher logits, same vocabulary (callers trim a larger teacher
            vocabulary first). Treated as constants: no gradient flows into the teacher.
        mask: [B, T], True where the token is distilled (answer tokens).
        name: a registered divergence (`kd_loss_names()`).
        temperature: softens both distributions; > 0.
        chunk_tokens: rows per chunk. With gradients on and more than one chunk, each chunk is
            recomputed in the backward pass (activation checkpointing) instead of kept, so at most one
            chunk's float32 [chunk, V] intermediates exist at a time, whatever the number of tokens.
        hinton_t2: multiply by temperature² (Hinton et al.'s gradient-scale convention); off by default,
            as in TRL's GKD and torchtune's KD losses.
        **kwargs: options for the divergence, e.g. `skew_lambda`.

    Returns:
        Scalar float32 (float64 for float64 inputs). 0.0, still attached to the student's graph, when
        the mask selects nothing.
    """
    if student_logits.dim() != 3 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student and teacher logits must both be [B, T, V] with the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if mask.shape != student_logits.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(student_logits.shape[:2])}, got {tuple(mask.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    fn = get_kd_loss(name)

    teacher_logits = teacher_logits.detach()
    batch_idx, pos_idx = mask.to(torch.bool).nonzero(as_tuple=True)  # [N] each
    n_tokens = batch_idx.numel()
    if n_tokens == 0:
        return _zero_with_grad(student_logits)

    chunks = [
        (fn, student_logits, teacher_logits, b, t, temperature, kwargs)
        for b, t in zip(batch_idx.split(chunk_tokens), pos_idx.split(chunk_tokens))
    ]
    scale = hinton_scale(temperature, hinton_t2)
    return sum_over_chunks(_rows_divergence, chunks, student_logits) / n_tokens * scale


def sum_over_chunks(fn: Callable[..., Tensor], chunks: list[tuple[Any, ...]], like: Tensor) -> Tensor:
    """sum_c fn(*chunks[c]).sum(), attached to `like`'s graph.

    With gradients on and more than one chunk, each chunk runs under activation checkpointing, so only
    one chunk's intermediates exist at a time and the backward pass recomputes them; one chunk gains
    nothing from recomputation (its intermediates would be rebuilt at the same peak).
    """
    recompute = torch.is_grad_enabled() and like.requires_grad and len(chunks) > 1
    total = _zero_with_grad(like)
    for args in chunks:
        rows = checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False) if recompute else fn(*args)
        total = total + rows.sum()
    return total


def causal_lm_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over the labels that are not -100.

    Args:
        logits: [B, T, V]; the logits at position t predict the label at t + 1.
        labels: [B, T] token ids, -100 at ignored (prompt/padding) positions.

    Returns:
        Scalar in at least float32 (only the scored rows are upcast). 0.0 attached to the graph when
        every label is ignored.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            "expected logits [B, T, V] and labels [B, T], "
            f"got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    shift_labels = labels[:, 1:]  # [B, T-1]
    scored = shift_labels != IGNORE_INDEX
    if not bool(scored.any()):
        return _zero_with_grad(logits)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    # Boolean indexing gathers only the scored rows: no copy of the full (non-contiguous) shifted view.
    return F.cross_entropy(logits[:, :-1][scored].to(dtype), shift_labels[scored])


def distillation_objective(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    name: str,
    temperature: float,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """Vanilla KD for causal LMs: (1 - alpha) · CE(student, gold) + alpha · kd_loss(student, teacher).

    Both terms use the causal shift: the logits at t are scored against the token at t + 1, and the KD
    mask is the shifted `labels != -100`, so the student matches the teacher exactly where it is
    trained on the gold answer. `kd` has no temperature² factor unless `hinton_t2=True` is passed.

    Args:
        student_logits: [B, T, V].
        teacher_logits: [B, T, V], same vocabulary; detached.
        labels: [B, T], -100 at prompt and padding positions.
        alpha: weight of the KD term in [0, 1]. A term with weight 0 is left out of "loss" (so an
            infinite value there cannot turn the loss into NaN) and computed without gradient, for
            logging only.
        name, temperature, **kwargs: passed to `kd_loss` (e.g. `chunk_tokens`, `skew_lambda`, `hinton_t2`).

    Returns:
        {"loss": scalar to minimise, "ce": detached CE, "kd": detached KD term}.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    with torch.set_grad_enabled(torch.is_grad_enabled() and alpha < 1):
        ce = causal_lm_ce(student_logits, labels)
    kd_mask = labels[:, 1:] != IGNORE_INDEX  # [B, T-1]
    with torch.set_grad_enabled(torch.is_grad_enabled() and alpha > 0):
        kd = kd_loss(
            student_logits[:, :-1],
            teacher_logits[:, :-1],
            kd_mask,
            name=name,
            temperature=temperature,
            **kwargs,
        )
    if alpha == 0.0:
        loss = ce
    elif alpha == 1.0:
        loss = kd
    else:
        loss = (1.0 - alpha) * ce + alpha * kd
    return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}
