"""The multi-teacher objective of the scaling-down paper: CE, a KL per teacher and a hidden-state MSE per
teacher (`losses.hidden`), weighted per teacher and per term:

    loss = a·CE + b·Σ_i w_i·KL_i + g·Σ_i w_i·MSE_i (+ an anti-shortcut penalty)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class TeacherTerms:
    """One teacher's contribution: its weight w_i and its KL and/or hidden MSE (None = not used).

    A teacher with another vocabulary has `kl=None` (no shared next-token distribution) and joins
    through `mse` only.
    """

    name: str
    weight: float
    kl: Tensor | None = None
    mse: Tensor | None = None


def multi_teacher_objective(
    ce: Tensor | None,
    teachers: Sequence[TeacherTerms],
    *,
    a: float,
    b: float,
    g: float,
    penalty: Tensor | None = None,
    penalty_weight: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """loss = a·CE + b·Σ_i w_i·KL_i + g·Σ_i w_i·MSE_i (+ penalty_weight·penalty).

    Weights are used as given (pass weights summing to 1 for a weighted average over teachers). A term
    whose coefficient is 0 is left out of the loss (an inf there cannot turn the loss into NaN) but
    still logged. Returns the scalar to minimise and a dict of floats for logging: "loss", "ce",
    "kl", "mse" (the weighted sums before a/b/g), "kl/<name>", "mse/<name>", "shortcut".
    """
    for label, val in (("a", a), ("b", b), ("g", g), ("penalty_weight", penalty_weight)):
        if val < 0:
            raise ValueError(f"{label} must be >= 0, got {val}")
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ValueError(f"teacher names must be unique, got {names}")
    parts: dict[str, float] = {}
    total: Tensor | None = None

    def add(coef: float, term: Tensor) -> None:
        nonlocal total
        if coef != 0.0:
            total = coef * term if total is None else total + coef * term

    if ce is not None:
        parts["ce"] = float(ce.detach())
        add(a, ce)
    for kind, coef in (("kl", b), ("mse", g)):
        weighted: Tensor | None = None
        for t in teachers:
            if t.weight < 0:
                raise ValueError(f"teacher {t.name!r}: weight must be >= 0, got {t.weight}")
            term = getattr(t, kind)
            if term is None:
                continue
            parts[f"{kind}/{t.name}"] = float(term.detach())
            if t.weight != 0.0:
                weighted = t.weight * term if weighted is None else weighted + t.weight * term
        if weighted is not None:
            parts[kind] = float(weighted.detach())
            add(coef, weighted)
    if penalty is not None:
        parts["shortcut"] = float(penalty.detach())
        add(penalty_weight, penalty)
    if total is None:
        raise ValueError("every term of the objective is missing or has weight 0: nothing to minimise")
    parts["loss"] = float(total.detach())
    return total, parts
