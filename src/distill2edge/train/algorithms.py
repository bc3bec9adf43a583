"""Distillation algorithms, registered by name (`distill.NAME.algorithm` in a recipe).

An algorithm builder looks at the loaded teacher and student and returns what the training loop
needs: the objective, any extra trainable modules (DSKD's projectors) with their learning rate, and
whether each sample must also be tokenized by the teacher (different vocabularies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from distill2edge.config import DistillConfig
from distill2edge.data.tokenize import pad_token_id
from distill2edge.losses.dskd import DSKDConfigError, DSKDProjectors, LMHead
from distill2edge.models import VocabularyMismatchError, check_same_vocabulary
from distill2edge.models.hf import text_config
from distill2edge.schema.algorithms import MULTI_TEACHER, AlgorithmSpec, algorithm_names, declare_algorithm
from distill2edge.train.loop import Objective
from distill2edge.train.objectives import VanillaKD

__all__ = [
    "ALGORITHMS", "MULTI_TEACHER", "Builder", "DistillSetup", "algorithm_names", "build_algorithm", "hidden_size",
    "register_algorithm",
]



@dataclass
class DistillSetup:
    objective: Objective
    aux: nn.Module | None = None
    """Extra trainable modules (checkpointed with the student, discarded after training)."""
    aux_lr: float | dict[str, float] | None = None
    """One rate for `aux`, or one per child of an `nn.ModuleDict` aux."""
    teacher_tokenizer: PreTrainedTokenizerBase | None = None
    """Set when every sample must also be tokenized by the teacher (batches get `teacher_*` keys)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Facts for the stage metrics, e.g. which DSKD variant ran."""


Builder = Callable[[nn.Module, nn.Module, PreTrainedTokenizerBase, PreTrainedTokenizerBase, DistillConfig], DistillSetup]
ALGORITHMS: dict[str, Builder] = {}


def register_algorithm(name: str, spec: AlgorithmSpec | None = None) -> Callable[[Builder], Builder]:
    """Register a builder as `name`; the name becomes valid in recipes (`schema.algorithms`), with what
    `spec` says it needs (default: one teacher, no cache, answer positions only)."""

    def add(fn: Builder) -> Builder:
        if name in ALGORITHMS or name == MULTI_TEACHER:
            raise ValueError(f"distillation algorithm {name!r} is already registered")
        ALGORITHMS[name] = fn
        declare_algorithm(name, spec)
        return fn

    return add


def build_algorithm(
    name: str, teacher: nn.Module, student: nn.Module, t_tok: PreTrainedTokenizerBase,
    s_tok: PreTrainedTokenizerBase, cfg: DistillConfig,
) -> DistillSetup:
    if name == MULTI_TEACHER:
        raise ValueError("multi_teacher takes several teachers: use train.multi.build_multi_teacher")
    if name not in ALGORITHMS:
        raise ValueError(f"unknown distillation algorithm {name!r}; registered: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name](teacher, student, t_tok, s_tok, cfg)


@register_algorithm("vanilla")
def _vanilla(teacher, student, t_tok, s_tok, cfg: DistillConfig) -> DistillSetup:
    align = check_same_vocabulary(t_tok, s_tok, teacher.config, student.config)
    objective = VanillaKD(
        teacher=teacher, loss=cfg.loss, vocab_size=align.shared_size, positions=cfg.positions,
        answer_share=cfg.answer_kd_share,
    )
    return DistillSetup(objective, info={"shared_vocab": align.shared_size, "kd_positions": cfg.positions})


def hidden_size(model: nn.Module, who: str) -> int:
    """The width of the model's last hidden state, checked against its LM head."""
    size = int(text_config(model).hidden_size)
    head = LMHead.of(model).hidden_size
    if head != size:
        raise DSKDConfigError(f"{who}: config.hidden_size is {size} but its LM head takes inputs of size {head}")
    return size


def _dskd(teacher, student, t_tok, s_tok, cfg: DistillConfig, cma: bool) -> DistillSetup:
    from distill2edge.train.dskd import DSKDObjective

    d = cfg.dskd
    projectors = DSKDProjectors(
        hidden_size(student, "student"), hidden_size(teacher, "teacher"), cma=cma, kind=d.projector, init=d.init
    )
    objective = DSKDObjective(
        teacher=teacher, projectors=projectors, loss=cfg.loss, cma=cma, student_pad_id=s_tok.pad_token_id,
        teacher_pad_id=pad_token_id(t_tok), chunk_tokens=d.chunk_tokens,
        options=d,
    )
    return DistillSetup(
        objective, aux=projectors, aux_lr=d.projector_lr, teacher_tokenizer=t_tok if cma else None,
        info={
            "dskd_variant": "cross-model attention" if cma else "dual space (shared vocabulary)",
            "projector_params": sum(p.numel() for p in projectors.parameters()),
        },
    )


@register_algorithm("dskd")
def _dskd_auto(teacher, student, t_tok, s_tok, cfg: DistillConfig) -> DistillSetup:
    """Dual-space KD; cross-model attention when the two vocabularies differ."""
    try:
        check_same_vocabulary(t_tok, s_tok, teacher.config, student.config)
    except VocabularyMismatchError:
        return _dskd(teacher, student, t_tok, s_tok, cfg, cma=True)
    return _dskd(teacher, student, t_tok, s_tok, cfg, cma=False)


@register_algorithm("dskd_cma")
def _dskd_cma(teacher, student, t_tok, s_tok, cfg: DistillConfig) -> DistillSetup:
    """DSKD with cross-model attention even for a shared vocabulary."""
    return _dskd(teacher, student, t_tok, s_tok, cfg, cma=True)


@register_algorithm("uld")
def _uld(teacher, student, t_tok, s_tok, cfg: DistillConfig) -> DistillSetup:
    """Universal Logit Distillation: sorted-probability distance, any two vocabularies, nothing learned
    besides the student (see `train.uld`); the teacher's full vocabulary is sorted `dskd.chunk_tokens`
    positions at a time."""
    from distill2edge.train.uld import ULDObjective

    objective = ULDObjective(teacher=teacher, loss=cfg.loss, chunk_tokens=cfg.dskd.chunk_tokens)
    return DistillSetup(objective, teacher_tokenizer=t_tok, info={
        "kd_variant": "ULD (sorted probabilities, answer tokens aligned by order)",
        "teacher_vocab": len(t_tok), "student_vocab": len(s_tok),
    })
