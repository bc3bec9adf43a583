"""KD against sparse teacher targets: the teacher's top-k log-probabilities plus the mass of the rest.

A teacher cache (`train.teacher_cache`) keeps, for every distilled token, the k most likely teacher
tokens with their softened log-probabilities and the log of the mass left over,
log(1 - sum of the top-k probabilities). The student's distribution is coarsened the same way: its
probabilities of those k tokens plus one "rest" bin holding everything else. Any registered divergence
is then applied to the two (k + 1)-bin distributions.

For forward KL this is a lower bound of the full-vocabulary KL (coarsening never increases a
divergence), equal to it when k covers the vocabulary; the rest bin keeps the student from piling
mass outside the teacher's top-k, which dropping the tail and renormalising would allow.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from distill2edge.losses.kd import _zero_with_grad, get_kd_loss, hinton_scale, sum_over_chunks

_LN2 = 0.6931471805599453


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, accurate near 0 and for very negative x (Mächler's two branches).

    x is capped at -1e-30 (so the result is at most about -69, never -inf), and each branch only sees
    inputs it is finite on, so no inf or NaN reaches the backward pass through the unused branch.
    """
    x = x.clamp_max(-1e-30)
    near = x > -_LN2
    a = torch.where(near, x, torch.full_like(x, -1.0))
    b = torch.where(near, torch.full_like(x, -1.0), x)
    return torch.where(near, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(b)))


def _floor(dtype: torch.dtype) -> float:
    """log of the dtype's smallest normal number (about -87 in float32): the least log-mass of a bin."""
    return float(torch.log(torch.tensor(torch.finfo(dtype).tiny, dtype=dtype)))


def rest_log_mass(top_log_probs: Tensor) -> Tensor:
    """log of the probability mass outside the given entries: [N, k] log-probs -> [N].

    Finite even when the entries hold (numerically) all the mass, so divergences that weight by the
    student's side (reverse KL, JS) never meet inf - inf.
    """
    covered = torch.logsumexp(top_log_probs, dim=-1)
    return log1mexp(covered).clamp_min(_floor(top_log_probs.dtype))


def sparse_teacher_targets(
    teacher_logits: Tensor, k: int, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k of softmax(teacher_logits / T) as stored by the teacher cache.

    teacher_logits: [N, V]. Returns indices [N, k] (int64, most likely first), log-probs [N, k]
    (float32) and the log of the remaining mass [N] (float32; -inf when k == V).
    """
    log_p = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    k = min(k, log_p.shape[-1])
    values, indices = log_p.topk(k, dim=-1)
    if k == log_p.shape[-1]:
        rest = torch.full(values.shape[:-1], float("-inf"), dtype=values.dtype, device=values.device)
    else:
        rest = log1mexp(torch.logsumexp(values, dim=-1))
    return indices, values, rest


def _binned(
    student_logits: Tensor, indices: Tensor, t_log_probs: Tensor, t_rest: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Student and teacher as (k + 1)-bin log-distributions: [N, V], [N, k], [N, k], [N] -> [N, k+1] x2."""
    s_log = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    s_top = s_log.gather(-1, indices.long())  # [N, k]
    s_bins = torch.cat([s_top, rest_log_mass(s_top).unsqueeze(-1)], dim=-1)
    # The teacher's rest bin is floored like the student's (-inf when k covered the vocabulary).
    t_rest = t_rest.float().clamp_min(_floor(torch.float32))
    t_bins = torch.cat([t_log_probs.float(), t_rest.unsqueeze(-1)], dim=-1)
    return s_bins, t_bins


def uniform_tail(indices: Tensor, t_log_probs: Tensor, t_rest: Tensor, vocab: int) -> Tensor:
    """The teacher over the whole vocabulary with its remaining mass spread evenly over the other V - k
    tokens: [N, k] ids and log-probs, [N] rest -> [N, V] log-probs."""
    tail = vocab - indices.shape[1]
    fill = t_rest.float() - math.log(max(tail, 1))  # -inf when nothing is left
    full = fill[:, None].expand(-1, vocab).clone()
    return full.scatter_(1, indices.long(), t_log_probs.float())


def _rows(
    name: str, student_logits: Tensor, indices: Tensor, t_log_probs: Tensor, t_rest: Tensor,
    temperature: float, options: dict[str, Any], tail: str = "rest_bin",
) -> Tensor:
    if tail == "uniform":
        t_full = uniform_tail(indices, t_log_probs, t_rest, student_logits.shape[-1])
        # The divergence divides both sides by T; the teacher side is already at T, so multiply it back.
        return get_kd_loss(name)(student_logits, t_full * temperature, temperature, **options)
    s_bins, t_bins = _binned(student_logits, indices, t_log_probs, t_rest, temperature)
    # The bins are already normalised log-probabilities, so the divergence runs at temperature 1.
    return get_kd_loss(name)(s_bins, t_bins, 1.0, **options)


def sparse_kd_loss(
    student_logits: Tensor,
    indices: Tensor,
    t_log_probs: Tensor,
    t_rest: Tensor,
    name: str = "forward_kl",
    temperature: float = 1.0,
    chunk_tokens: int = 1024,
    tail: str = "rest_bin",
    hinton_t2: bool = False,
    **kwargs: Any,
) -> Tensor:
    """Mean divergence over rows between the student and sparse teacher targets; no T² unless `hinton_t2`.

    Args:
        student_logits: [N, V] student logits at the distilled tokens (one row per token).
        indices: [N, k] teacher top-k token ids (< V).
        t_log_probs: [N, k] teacher log-probabilities of those tokens at temperature `temperature`.
        t_rest: [N] log of the teacher mass outside the top-k (-inf when nothing is left).
        name: a registered divergence; it sees the (k + 1)-bin distributions.
        temperature: the temperature the targets were softened with; the student is softened alike.
        chunk_tokens: rows per chunk; with gradients and several chunks each is recomputed in the
            backward pass, so only one chunk's float32 [chunk, V] softmax exists at a time.
        tail: `rest_bin` compares (k + 1)-bin distributions (nothing is assumed about how the teacher's
            remaining mass is spread); `uniform` spreads it evenly over the other V - k tokens and compares
            full distributions, which also holds the student's tail flat.
        hinton_t2: multiply by T², as `kd_loss` does with it (off by default).
        **kwargs: divergence options such as `skew_lambda`.

    Returns:
        Scalar float32; 0.0 attached to the student's graph when N == 0.
    """
    n = student_logits.shape[0]
    if indices.shape[0] != n or t_log_probs.shape != indices.shape or t_rest.shape != (n,):
        raise ValueError(
            f"sparse targets do not match {n} student rows: indices {tuple(indices.shape)}, "
            f"log-probs {tuple(t_log_probs.shape)}, rest {tuple(t_rest.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tail not in ("rest_bin", "uniform"):
        raise ValueError(f"tail must be 'rest_bin' or 'uniform', got {tail!r}")
    if n == 0:
        return _zero_with_grad(student_logits)
    if int(indices.max()) >= student_logits.shape[-1]:
        raise ValueError(
            f"teacher token id {int(indices.max())} is outside the student's {student_logits.shape[-1]} logits"
        )
    chunks = [
        (name, student_logits[r:r + chunk_tokens], indices[r:r + chunk_tokens], t_log_probs[r:r + chunk_tokens],
         t_rest[r:r + chunk_tokens], temperature, kwargs, tail)
        for r in range(0, n, chunk_tokens)
    ]
    return sum_over_chunks(_rows, chunks, student_logits) / n * hinton_scale(temperature, hinton_t2)
