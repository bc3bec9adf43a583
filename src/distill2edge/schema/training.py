"""Recipe schema, training settings shared by SFT and distillation: LoRA, the loop, early stopping, `sft:`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distill2edge.schema.base import Strict


class LoraConfig(Strict):
    """LoRA through peft. Defaults are the telecom paper's (rank 256, alpha 8, dropout 0.1)."""

    r: int = Field(256, ge=1)
    alpha: float = Field(8.0, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class EarlyStoppingConfig(Strict):
    patience: int = Field(3, ge=1)
    """Validations without an improvement of at least `min_delta` before stopping."""
    min_delta: float = Field(0.01, ge=0.0)


class TrainConfig(Strict):
    """One training loop serves SFT and KD."""

    epochs: int = Field(50, ge=1)
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; stops before `epochs` when reached."""
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """`auto`: bf16 autocast on a GPU that supports it, fp32 elsewhere."""
    eval_every: int | None = Field(None, ge=1)
    """Validate every N optimizer steps; empty means once per epoch."""
    checkpoint_every: int = Field(50, ge=1)
    """Write a resumable checkpoint every N optimizer steps."""
    checkpoint_every_samples: int | None = Field(None, ge=1)
    """Write a checkpoint every N training samples instead (rounded up to whole optimizer steps)."""
    eval_every_samples: int | None = Field(None, ge=1)
    """Validate every N training samples instead of `eval_every` steps (rounded up to whole steps)."""
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()
    seed: int = 0
    eval_answers: int = Field(0, ge=0)
    """QA: at each validation also answer the first N validation questions greedily and record their token
    F1 and exact match (`val_token_f1`, `val_exact_match`), so the learning curve shows accuracy, not only
    loss. 0: off. Costs one greedy generation of N answers per validation."""
    best_by: Literal["loss", "token_f1"] = "loss"
    """What picks the weights a run ends with, and what early stopping watches: the validation loss (lower is
    better) or, with `eval_answers`, the validation token F1 of greedy answers (higher is better). The loss of a
    KD stage mixes the answer CE with the KL to the teacher, which can keep falling after the answers stop
    improving; `token_f1` keeps the weights that answered best (HF Trainer's `metric_for_best_model`)."""

    _omit_at_default = frozenset({"checkpoint_every_samples", "eval_every_samples", "eval_answers", "best_by"})

    @model_validator(mode="after")
    def _best_by_needs_answers(self) -> TrainConfig:
        if self.best_by == "token_f1" and not self.eval_answers:
            raise ValueError("best_by: token_f1 needs eval_answers > 0 (the validation questions answered each time)")
        return self

    @model_validator(mode="after")
    def _one_eval_period(self) -> TrainConfig:
        if self.eval_every is not None and self.eval_every_samples is not None:
            raise ValueError("eval_every_samples: set eval_every (steps) or eval_every_samples, not both")
        return self

    def steps_for(self, samples: int) -> int:
        """Optimizer steps that cover `samples` training samples (at least 1)."""
        return max(1, -(-samples // (self.batch_size * self.grad_accum)))

    def checkpoint_period(self) -> int:
        """Optimizer steps between checkpoints."""
        if self.checkpoint_every_samples is not None:
            return self.steps_for(self.checkpoint_every_samples)
        return self.checkpoint_every

    def eval_period(self) -> int | None:
        """Optimizer steps between validations; None: once per epoch."""
        if self.eval_every_samples is not None:
            return self.steps_for(self.eval_every_samples)
        return self.eval_every


class SFTStageConfig(Strict):
    enabled: bool = True
    lora: LoraConfig | None = LoraConfig()
    """Empty (null) trains all weights."""
    train: TrainConfig = TrainConfig()
    extra_data: list[str] = []
    """`sft.student` only: training examples added to the recipe's training split, `teacher_data.TEACHER`
    (as `distill.NAME.extra_data`), so the labels-only student can see the same data as a distillation."""

    _omit_at_default = frozenset({"extra_data"})


class SFTConfig(Strict):
    teacher: SFTStageConfig = SFTStageConfig()
    student: SFTStageConfig = SFTStageConfig()

