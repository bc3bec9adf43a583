"""Anti-shortcut penalties: keep a classifier from collapsing onto the most frequent answer.

The scaling-down paper saw small students learn "always answer the most common option" and added
penalties for repetitive answers. Here a penalty looks at a batch of per-class scores:

    penalty(class_logits [B, C], prior [C], *, temperature) -> scalar

`class_logits` are the student's scores of each label (for a causal LM: the logits of each label's
first verbalizer token at the answer position, or verbalizer log-likelihoods; see
`distill2edge.evaluate.classify`), `prior` the label distribution expected in a batch (the training
set's label frequencies, `label_prior`).

`label_prior_kl` = KL(prior || q̄), with q̄ the batch mean of softmax(class_logits / temperature).
Direction: KL(prior || q̄) grows without bound as q̄ gives a class with prior mass no probability, so a
collapsed batch (q̄ ≈ one-hot on the majority) is penalised hard, and its gradient on the neglected
classes grows like prior_c / q̄_c. The other direction, KL(q̄ || prior) (registered as
`label_prior_reverse_kl`), is bounded by -log prior_max when collapsed onto the *majority* class
(0.51 nats for a 60% class): exactly the collapse at issue costs it little.

Temperature: a model trained with CE is close to calibrated, and a calibrated model's mean soft
prediction already matches the prior even when its arg-max always names the majority class (weak
evidence never overturns a 60/28/12 prior). Below 1, softmax(z / T) approaches the arg-max, so q̄
approaches the histogram of *predicted* classes, which is what collapse is about; hence the default
`DEFAULT_TEMPERATURE` = 0.3 (tests/losses/test_shortcut.py shows T = 1 leaves a collapsed toy model
collapsed and T = 0.3 does not).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

DEFAULT_TEMPERATURE = 0.3


class ShortcutPenaltyFn(Protocol):
    """`(class_logits [B, C], prior [C], *, temperature, **options) -> scalar`.

    The logits and the prior are positional-only (`/`, in the registered penalties too) so a penalty may
    name them as it likes and a type checker accepts it as a `ShortcutPenaltyFn`.
    """

    def __call__(
        self, class_logits: Tensor, prior: Tensor, /, *, temperature: float = ..., **kwargs: Any
    ) -> Tensor: ...


SHORTCUT_PENALTIES: dict[str, ShortcutPenaltyFn] = {}
"""Registered penalties by name (`none` first: the default)."""


def register_shortcut_penalty(name: str) -> Callable[[ShortcutPenaltyFn], ShortcutPenaltyFn]:
    """Decorator adding a penalty to `SHORTCUT_PENALTIES` under `name`; a name can be registered once."""

    def add(fn: ShortcutPenaltyFn) -> ShortcutPenaltyFn:
        if name in SHORTCUT_PENALTIES:
            raise ValueError(f"shortcut penalty {name!r} is already registered")
        SHORTCUT_PENALTIES[name] = fn
        return fn

    return add


def shortcut_penalty_names() -> list[str]:
    return list(SHORTCUT_PENALTIES)


def get_shortcut_penalty(name: str) -> ShortcutPenaltyFn:
    """The penalty registered as `name`; ValueError naming the registered ones if there is none."""
    try:
        return SHORTCUT_PENALTIES[name]
    except KeyError:
        names = ", ".join(shortcut_penalty_names())
        raise ValueError(f"unknown shortcut penalty {name!r}; registered: {names}") from None


def label_prior(labels: Sequence[str], label_set: Sequence[str], smoothing: float = 1.0) -> Tensor:
    """Label frequencies in `label_set` order, add-`smoothing` (so no class has prior 0). -> [C] float32"""
    unknown = sorted(set(labels) - set(label_set))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the label set {list(label_set)}")
    counts = Counter(labels)
    raw = torch.tensor([counts[c] + smoothing for c in label_set], dtype=torch.float32)
    if float(raw.sum()) <= 0:
        raise ValueError("label_prior: no labels and no smoothing")
    return raw / raw.sum()


def _check(class_logits: Tensor, prior: Tensor, temperature: float) -> Tensor:
    if class_logits.dim() != 2 or prior.shape != class_logits.shape[-1:]:
        raise ValueError(
            "expected class_logits [B, C] and prior [C], "
            f"got {tuple(class_logits.shape)} and {tuple(prior.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if bool((prior < 0).any()) or not math.isclose(float(prior.sum()), 1.0, abs_tol=1e-4):
        raise ValueError(f"prior must be a probability vector, got {prior.tolist()}")
    return prior.to(device=class_logits.device, dtype=torch.promote_types(class_logits.dtype, torch.float32))


def _log_batch_mean(class_logits: Tensor, temperature: float) -> Tensor:
    """log q̄ with q̄ = mean_b softmax(z_b / T): logsumexp over the batch, stable. [B, C] -> [C]"""
    log_p = torch.log_softmax(class_logits.float() / temperature, dim=-1)
    return torch.logsumexp(log_p, dim=0) - math.log(class_logits.shape[0])


@register_shortcut_penalty("none")
def no_penalty(
    class_logits: Tensor, prior: Tensor, /, *, temperature: float = DEFAULT_TEMPERATURE, **kwargs: Any
) -> Tensor:
    """0.0, attached to the graph so the caller can add it unconditionally."""
    _check(class_logits, prior, temperature)
    return class_logits.narrow(0, 0, 0).sum().float()


@register_shortcut_penalty("label_prior_kl")
def label_prior_kl(
    class_logits: Tensor, prior: Tensor, /, *, temperature: float = DEFAULT_TEMPERATURE, **kwargs: Any
) -> Tensor:
    """KL(prior || q̄) = Σ_c prior_c (log prior_c - log q̄_c); classes with prior 0 contribute 0."""
    prior = _check(class_logits, prior, temperature)
    log_q = _log_batch_mean(class_logits, temperature)
    terms = torch.where(prior > 0, prior * (prior.clamp_min(1e-30).log() - log_q), torch.zeros_like(log_q))
    return terms.sum()


@register_shortcut_penalty("label_prior_reverse_kl")
def label_prior_reverse_kl(
    class_logits: Tensor, prior: Tensor, /, *, temperature: float = DEFAULT_TEMPERATURE, **kwargs: Any
) -> Tensor:
    """KL(q̄ || prior): bounded; weaker against majority collapse (see the module docstring)."""
    prior = _check(class_logits, prior, temperature)
    log_q = _log_batch_mean(class_logits, temperature)
    return (log_q.exp() * (log_q - prior.clamp_min(1e-30).log())).sum()


def shortcut_penalty(
    class_logits: Tensor,
    prior: Tensor,
    name: str = "none",
    temperature: float = DEFAULT_TEMPERATURE,
    **kwargs: Any,
) -> Tensor:
    """Apply the penalty registered as `name`. Scalar float32."""
    return get_shortcut_penalty(name)(class_logits, prior, temperature=temperature, **kwargs)


def class_logits_from_lm(logits: Tensor, positions: Tensor, first_token_ids: Sequence[int]) -> Tensor:
    """Per-class scores of a causal LM during training: the logits of each label's first verbalizer token.

    Args:
        logits: [B, T, V] student logits (those at t predict the token at t + 1).
        positions: [B] the position whose logits predict the first answer token (the last prompt
            token), e.g. `(labels != -100).int().argmax(1) - 1` for right-padded batches.
        first_token_ids: C token ids, one per label, distinct
            (`distill2edge.evaluate.classify.first_token_ids`).

    Returns:
        [B, C]. With single-token verbalizers this is exactly the scoring used at evaluation.
    """
    ids = torch.as_tensor(list(first_token_ids), device=logits.device)
    if ids.unique().numel() != ids.numel():
        raise ValueError(f"first verbalizer tokens must be distinct, got {ids.tolist()}")
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, positions.to(logits.device)][:, ids]
