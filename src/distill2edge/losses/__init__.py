"""Training losses: the knowledge-distillation divergence registry and the causal-LM objectives."""

from distill2edge.losses.kd import (
    IGNORE_INDEX,
    KD_LOSSES,
    DivergenceFn,
    causal_lm_ce,
    distillation_objective,
    get_kd_loss,
    kd_loss,
    kd_loss_names,
    register_kd_loss,
)

__all__ = [
    "IGNORE_INDEX",
    "KD_LOSSES",
    "DivergenceFn",
    "causal_lm_ce",
    "distillation_objective",
    "get_kd_loss",
    "kd_loss",
    "kd_loss_names",
    "register_kd_loss",
]
