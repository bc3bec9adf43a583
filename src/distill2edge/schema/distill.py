"""Recipe schema, `distill.NAME`: one distillation stage, its losses, teachers and teacher cache.

The loss and penalty names are checked against their registries, imported inside the validators so
that importing the schema does not load training code; the algorithm names come from
`schema.algorithms` (the builders in `train.algorithms` import this schema).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distill2edge.schema.algorithms import algorithm_names, algorithm_spec, cacheable_algorithms
from distill2edge.schema.base import Strict
from distill2edge.schema.data import DataConfig
from distill2edge.schema.training import LoraConfig, TrainConfig


class KDLossConfig(Strict):
    name: str = "forward_kl"
    """A registered divergence: forward_kl, reverse_kl, js, skew_forward_kl, skew_reverse_kl."""
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of the KD term; CE on the gold answer gets 1 - alpha."""
    temperature: float = Field(2.0, gt=0)
    skew_lambda: float = Field(0.1, ge=0.0, le=1.0)
    fused_vocab_chunk: int | None = Field(None, ge=1)
    """Vanilla KD with forward_kl: compute CE and KL from the last hidden states, this many vocabulary
    entries at a time (`losses.fused`), so no [tokens, vocabulary] logits exist; empty: the usual logits."""
    hinton_t2: bool = False
    """Multiply vanilla KD's term (also multi-teacher `kd: logits`, cached or fused) by T² (Hinton's
    convention); TRL's GKD and torchtune do not. DSKD has its own `dskd.hinton_t2`."""

    _omit_at_default = frozenset({"fused_vocab_chunk", "hinton_t2"})

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from distill2edge.losses import kd_loss_names

        if v not in kd_loss_names():
            raise ValueError(f"unknown KD loss {v!r}; registered: {', '.join(kd_loss_names())}")
        return v


class DSKDConfig(Strict):
    """Dual-space KD (Zhang et al., EMNLP 2024): projectors between the two hidden spaces."""

    projector_lr: float = Field(1e-3, gt=0)
    """Learning rate of the projectors (the student keeps `train.lr`); the paper trains them faster."""
    projector: Literal["linear", "mlp"] = "linear"
    init: Literal["auto", "identity", "random"] = "auto"
    """`auto`: a square linear projector starts as the identity, others at random."""
    chunk_tokens: int = Field(256, ge=1)
    """Positions per chunk for full-vocabulary logits (bounds memory with large teacher vocabularies)."""
    cma_std: Literal["padded", "answer"] = "padded"
    """Cross-model attention divides the teacher's hidden states and embeddings by their std: `padded`
    over the whole padded batch (prompt and padding included), as the DSKD reference; `answer` over the
    teacher's answer rows only (independent of prompt length and padding; distill2edge's earlier choice)."""
    teacher_divergence: Literal["forward_kl", "loss_name"] = "forward_kl"
    """Divergence of the teacher-space term: forward KL as the DSKD reference, or `loss.name` (opt-in)."""
    hinton_t2: bool = False
    """Multiply DSKD's KD terms by T² (Hinton's convention); the DSKD reference does not."""

    _omit_at_default = frozenset({"cma_std", "teacher_divergence", "hinton_t2"})


class TeacherCacheConfig(Strict):
    """Teacher outputs computed once and read from disk (`train.teacher_cache`): vanilla KD learns from
    the teacher's top-k log-probabilities plus the remaining mass, DSKD from its cached last hidden
    states. The teacher is loaded only to build a missing entry, never while the student trains."""

    enabled: bool = False
    top_k: int = Field(64, ge=1)
    """Vanilla KD: teacher tokens kept per position, with the log of the mass left over: k·8 + 4 bytes per
    row (int32 ids, float32 log-probs, float32 rest). Rows are the answer tokens, or with `positions: all`
    every real position but each sample's last: ~282 samples x 230 positions x k=64 is ~4M entries, ~33 MB."""
    tail: Literal["uniform", "rest_bin"] = "uniform"
    """Vanilla KD: how the teacher's remaining mass enters the loss: spread evenly over the other tokens
    (`uniform`), or as one bin against the student's mass outside the top-k (`rest_bin`, which leaves the
    student's tail free and measured worse: README, "Teacher cache")."""
    hidden_dtype: Literal["float16", "float32"] = "float16"
    """DSKD: storage type of the cached hidden states (float32 reproduces the online run exactly)."""
    batch_size: int = Field(8, ge=1)
    """Samples per teacher forward while building."""
    dir: Path | None = None
    """Where entries live; empty: `<run folder>/cache/teacher`. Entries are keyed by content, so one
    folder can serve many runs. Not part of the stage's reuse key."""


CACHEABLE_ALGORITHMS = tuple(cacheable_algorithms())

LayerMapSpec = Literal["uniform"] | list[int] | list[list[int]]


class TeacherWeightConfig(Strict):
    """One teacher of a multi-teacher distillation (`distill.NAME.teachers.TEACHER`)."""

    weight: float = Field(1.0, ge=0.0)
    """w_i: the teacher's weight in the KD and hidden-state sums (used as given; make them sum to 1 for an average)."""
    kd: Literal["auto", "logits", "dskd", "none"] = "auto"
    """Its output-distribution term: `logits` (KL on a shared vocabulary), `dskd` (dual-space KD, cross-model
    attention across vocabularies), `none` (hidden-state MSE only); `auto`: logits on a shared vocabulary, else none."""
    layer_map: LayerMapSpec | None = None
    """Overrides `hidden.layer_map` for this teacher."""

    @model_validator(mode="before")
    @classmethod
    def _bare_weight(cls, data: Any) -> Any:
        return {"weight": data} if isinstance(data, (int, float)) and not isinstance(data, bool) else data


class HiddenConfig(Strict):
    """Hidden-state distillation: g·Σ_i w_i·Σ_(ls,lt) MSE(P_i(h_student[ls]), h_teacher_i[lt])."""

    weight: float = Field(0.0, ge=0.0)
    """g; 0 turns the term off."""
    layer_map: LayerMapSpec = "uniform"
    """`uniform` (student layer i -> teacher layer i·Lt/Ls, last to last), a list with the teacher layer of
    every student layer, or [student, teacher] pairs; layers count from 1 (0 is the embeddings)."""
    pooling: Literal["auto", "token", "mean", "last"] = "auto"
    """`token`: position by position (same tokenizer only); `mean`/`last`: one vector per sequence (any
    tokenizer); `auto`: token on a shared tokenizer, mean otherwise."""
    normalize: bool = True
    """Layer-normalise both sides before the MSE, so a few huge residual-stream channels cannot dominate."""
    shared_projection: bool = False
    """One projection per teacher for all mapped layers (instead of one per layer)."""
    projector_lr: float = Field(1e-3, gt=0)


class ShortcutConfig(Strict):
    """Anti-shortcut penalty for classification: keeps the student from always answering the majority label."""

    name: str = "none"
    """A registered penalty: `none`, `label_prior_kl` (KL(prior || batch-mean prediction)), `label_prior_reverse_kl`."""
    weight: float = Field(0.0, ge=0.0)
    temperature: float = Field(0.3, gt=0)
    """Softmax temperature of the class scores; below 1 the batch mean approaches the predicted-label histogram."""

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from distill2edge.losses.shortcut import shortcut_penalty_names

        if v not in shortcut_penalty_names():
            raise ValueError(f"unknown shortcut penalty {v!r}; registered: {', '.join(shortcut_penalty_names())}")
        return v


class DistillConfig(Strict):
    """One distillation: its teacher(s), a starting student, an algorithm, its data and training."""

    _omit_at_default = frozenset({"teachers", "hidden", "shortcut", "data", "cache", "positions", "answer_kd_share",
                                     "extra_data"})

    teacher: str | None = None
    """Name of a model in `teachers`; may be left out when the recipe has a single teacher."""
    teachers: dict[str, TeacherWeightConfig] = {}
    """`multi_teacher` only: teacher name -> weight (or {weight, kd, layer_map}); replaces `teacher`."""
    teacher_state: Literal["base", "sft"] = "sft"
    """Distil from the base teacher(s) or their SFT versions."""
    student: str = "sft"
    """Start from the `base` student, its `sft` version, or the result of an earlier distillation (its name):
    a two-stage distillation starts its second stage from the first stage's best student."""
    algorithm: str = "vanilla"
    """`vanilla` (one vocabulary), `dskd` (dual-space KD; cross-model attention when the vocabularies
    differ), `dskd_cma` (cross-model attention always), `uld`, or `multi_teacher`: (1 - alpha)·CE +
    alpha·Σ w_i·KD_i + hidden.weight·Σ w_i·MSE_i + shortcut.weight·penalty."""
    loss: KDLossConfig = KDLossConfig()
    positions: Literal["answer", "all"] = "answer"
    """`vanilla`: where the student matches the teacher's distribution. `answer`: the answer tokens (as the
    papers do); `all`: every position of prompt and answer (full-sequence KD), which heals a pruned student
    with ~40x the supervised positions of answer-only KD on short answers. CE stays on the answer tokens;
    `loss.alpha: 1` turns the stage into pure healing by KD. With `cache.enabled` the teacher's top-k is
    cached at every position (its own entry, built once) and the teacher is not run while training."""
    answer_kd_share: float = Field(0.0, ge=0.0, le=1.0)
    """`positions: all` only: the share of the KD term taken on the answer tokens alone, so the KD term is
    (1 - share)·D(all positions) + share·D(answer tokens). Answers are ~2% of the positions of a QA prompt,
    so without it the teacher's distribution over answers barely counts next to the prompt's."""
    lora: LoraConfig | None = None
    """Empty (null) trains all student weights."""
    train: TrainConfig = TrainConfig()
    dskd: DSKDConfig = DSKDConfig()
    hidden: HiddenConfig = HiddenConfig()
    """`multi_teacher`: hidden-state MSE through a learned projection per teacher."""
    shortcut: ShortcutConfig = ShortcutConfig()
    """`multi_teacher` on classification data: the anti-shortcut penalty."""
    data: DataConfig | None = None
    """This stage's own data (e.g. a general first stage); empty: the recipe's `data`."""
    cache: TeacherCacheConfig = TeacherCacheConfig()
    """Compute the teacher's outputs once and train from disk (`vanilla`, `dskd`, `dskd_cma`)."""
    extra_data: list[str] = []
    """Training examples added to the recipe's training split: `teacher_data.TEACHER`, the questions,
    answers and passages that SFT teacher wrote about the training contexts (recipe section
    `teacher_data`), and `text.NAME`, the passages of a file of unlabelled text (recipe section `texts`).
    Passages only teach full-sequence KD (`positions: all`). Validation and test are unchanged."""

    @model_validator(mode="after")
    def _cache_algorithm(self) -> DistillConfig:
        spec = algorithm_spec(self.algorithm)
        if self.cache.enabled and not spec.cacheable:
            raise ValueError(
                f"cache.enabled: the teacher cache serves {', '.join(cacheable_algorithms())}, not {self.algorithm!r}"
            )
        if self.positions == "all" and not spec.all_positions:
            raise ValueError(
                f"positions: all is full-sequence vanilla KD (teacher online or cached), not algorithm {self.algorithm!r}"
            )
        if self.answer_kd_share and (self.positions != "all" or self.loss.fused_vocab_chunk is not None):
            raise ValueError("answer_kd_share: takes part of full-sequence KD (positions: all) onto the answer "
                             "tokens; it needs positions: all and the usual (not fused) loss")
        if self.loss.fused_vocab_chunk is not None:
            if self.algorithm != "vanilla" or self.loss.name != "forward_kl" or self.cache.enabled:
                raise ValueError(
                    "loss.fused_vocab_chunk: the fused loss serves vanilla KD with forward_kl and no teacher cache, "
                    f"not algorithm {self.algorithm!r} with {self.loss.name!r}"
                    + (" and a cache" if self.cache.enabled else "")
                )
        return self

    def teacher_names(self) -> list[str]:
        return list(self.teachers) if self.teachers else [self.teacher] if self.teacher else []

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: str) -> str:
        if v not in algorithm_names():
            raise ValueError(f"unknown distillation algorithm {v!r}; registered: {', '.join(algorithm_names())}")
        return v

