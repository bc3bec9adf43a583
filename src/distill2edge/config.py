"""Recipes: YAML files validated by typed config classes.

A recipe is data. `load_recipe` reads the YAML, applies `--quick` and `--set a.b=c` overrides
(`config_overrides`), and validates the result against `Recipe`; unknown keys and wrong types are refused
with an error that names the file, the field path and the line (or the `--set` that gave the field).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer,
    model_validator,
)


class RecipeError(ValueError):
    """A recipe that cannot be found, parsed or validated. The message names the file and field."""


class Strict(BaseModel):
    """Base for config classes: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    _omit_at_default: ClassVar[frozenset[str]] = frozenset()
    """Fields added after run folders already existed: left out of dumps while at their default, so a
    stage's config hash (its reuse key) does not change for recipes that do not use them."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._omit_at_default:
            if name in data and getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                del data[name]
        return data


# --------------------------------------------------------------------------------------- data
class SplitConfig(Strict):
    """Deterministic split by context, so no context appears in two splits."""

    validation: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of contexts for validation (early stopping)."""
    test: float = Field(0.2, ge=0.0, lt=1.0)
    """Fraction of contexts held out for the evaluation."""
    seed: int = 1234
    """Seed of the context shuffle; independent of the training seed so splits stay fixed."""

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError("validation + test must leave some contexts for training")
        return self


QA_TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
CLASSIFY_TEMPLATE = "Sentence: {text}\nIs the sentiment of this financial news sentence {labels}?\nAnswer:"
_QA_FORMATS = ("auto", "telequad", "jsonl", "squad", "hf")
_CLASSIFY_FORMATS = ("auto", "jsonl", "csv", "phrasebank")


class DataConfig(Strict):
    _omit_at_default = frozenset({"task", "labels", "verbalizers", "answers_in_context"})

    task: Literal["qa", "classification"] = "qa"
    """`qa`: extractive QA (answers generated, scored by EM/F1/...); `classification`: each label is a
    verbalizer word scored by log-likelihood after the prompt (accuracy, macro-F1)."""
    source: str = "embedded:telecom-qa"
    """QA: `embedded:telecom-qa`, a TeleQuAD JSON file, a JSONL file, or `hf:NAME[:CONFIG]` (a datasets id).
    Classification: `embedded:finance-sentiment`, a Financial PhraseBank `Sentences_*Agree.txt`, or a
    JSONL/CSV file with `text` and `label`."""
    format: Literal["auto", "telequad", "jsonl", "squad", "hf", "csv", "phrasebank"] = "auto"
    """How to read `source`; `auto` picks from the name and content."""
    labels: list[str] | None = None
    """Classification: the label set, in a fixed order (default for the finance sets: negative, neutral, positive)."""
    verbalizers: dict[str, str] | None = None
    """Classification: the answer text of each label (default: the label after one space)."""
    split: SplitConfig = SplitConfig()
    max_train: int | None = Field(None, ge=1)
    """Cap on training examples (after the split)."""
    max_validation: int | None = Field(None, ge=1)
    max_test: int | None = Field(None, ge=1)
    include_impossible: bool = True
    """TeleQuAD flags some answerable questions `is_impossible`; they carry answers, so keep them."""
    prompt_template: str = QA_TEMPLATE
    """Prompt built from each example; the answer follows after one space. QA: `{context}`, `{question}`
    (and `{title}`); classification: `{text}` and `{labels}` (the label list); the default follows the task."""
    max_length: int = Field(384, ge=16)
    """Prompt + answer tokens; the context is cut (never the question or answer) to fit."""
    answers_in_context: Literal["warn", "error"] = "warn"
    """QA: what an answer that does not occur in its context (ignoring case and spacing) does: `warn`
    (a count and the first few file:line) or `error` (the data stage stops)."""

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("task") == "classification" and "prompt_template" not in data:
            data = {**data, "prompt_template": CLASSIFY_TEMPLATE}
        return data

    @model_validator(mode="after")
    def _task_fields(self) -> DataConfig:
        if self.task == "qa":
            for key in ("{context}", "{question}"):
                if key not in self.prompt_template:
                    raise ValueError(f"prompt_template: a QA template must contain {key}")
            if self.format not in _QA_FORMATS:
                raise ValueError(f"format: {self.format!r} is for classification data; QA reads {', '.join(_QA_FORMATS)}")
            if self.labels is not None or self.verbalizers is not None:
                raise ValueError("labels: labels and verbalizers belong to task: classification")
            return self
        if "{text}" not in self.prompt_template:
            raise ValueError("prompt_template: a classification template must contain {text}")
        if self.format not in _CLASSIFY_FORMATS:
            raise ValueError(f"format: classification reads {', '.join(_CLASSIFY_FORMATS)}, not {self.format!r}")
        if self.labels is not None and (len(set(self.labels)) != len(self.labels) or len(self.labels) < 2):
            raise ValueError(f"labels: need at least 2 distinct labels, got {self.labels}")
        labels = self.label_set()
        if self.verbalizers is not None:
            missing = [c for c in labels if c not in self.verbalizers]
            extra = [c for c in self.verbalizers if c not in labels]
            if missing or extra:
                raise ValueError(f"verbalizers: need exactly one per label {labels} (missing {missing}, unknown {extra})")
        return self

    def label_set(self) -> list[str]:
        """Classification labels: `labels`, or the finance sets' negative/neutral/positive."""
        if self.labels is not None:
            return list(self.labels)
        if self.source.startswith("embedded:finance") or self.format == "phrasebank" or self.source.endswith(".txt"):
            return ["negative", "neutral", "positive"]
        raise ValueError("labels: set data.labels for this classification data set")


# ------------------------------------------------------------------------------------- models
class ModelConfig(Strict):
    path: str
    """`embedded:NAME`, a local Hugging Face folder, or a hub id."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Teachers: `bfloat16` halves their memory and, on a GPU, their time; the KD losses upcast to float32."""
    device: str | None = None
    """Distillation only: run this teacher on its own device (e.g. `cuda:1`, or `cpu` beside a GPU
    student); empty: the run's device. Online DSKD needs the teacher beside the student (use the cache)."""
    offload: bool = False
    """Distillation only: keep the teacher's weights in CPU memory and stream them to its device layer by
    layer at each forward (accelerate's `cpu_offload`): slower, for a teacher that does not fit beside the
    student."""

    _omit_at_default = frozenset({"device", "offload"})


class StudentConfig(Strict):
    """The student: a model of its own, or layers taken from a same-family model."""

    _omit_at_default = frozenset({"selection_samples"})

    path: str | None = None
    """A model to use as is (`embedded:NAME`, folder or hub id); leave empty to prune `init_from`."""
    init_from: str | None = None
    """Model whose layers initialise the student (a subset of its decoder layers, see `layers`)."""
    num_layers: int | None = Field(None, ge=1)
    """How many layers of `init_from` to keep (with `layers: evenly` or `block_influence`)."""
    layers: list[int] | Literal["evenly", "block_influence"] = "evenly"
    """Which layers of `init_from` to keep: `evenly` spaced (every k-th, as DistilBERT did; first and last
    kept), the `num_layers` with the highest `block_influence` (1 - cosine between a layer's input and output
    hidden states on the recipe's training prompts, as ShortGPT measures it; recorded in
    `student_init.json`), or an explicit list of indices (counting from 0)."""
    selection_samples: int = Field(32, ge=1)
    """`block_influence`: training examples (prompt and answer) the influence is measured on."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @model_validator(mode="after")
    def _one_source(self) -> StudentConfig:
        if (self.path is None) == (self.init_from is None):
            raise ValueError("set exactly one of student.path or student.init_from")
        if self.init_from is None:
            return self
        if isinstance(self.layers, list):
            if self.num_layers is not None and self.num_layers != len(self.layers):
                raise ValueError(f"student.num_layers is {self.num_layers} but student.layers lists "
                                 f"{len(self.layers)} layers; give one of them")
        elif self.num_layers is None:
            raise ValueError(f"student.layers: {self.layers} needs student.num_layers (how many layers to keep)")
        return self

    def layer_count(self) -> int | None:
        """How many layers the pruned student keeps (None for a student used as is)."""
        return len(self.layers) if isinstance(self.layers, list) else self.num_layers


# ----------------------------------------------------------------------------------- training
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

    _omit_at_default = frozenset({"checkpoint_every_samples", "eval_every_samples"})

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


class SFTConfig(Strict):
    teacher: SFTStageConfig = SFTStageConfig()
    student: SFTStageConfig = SFTStageConfig()


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
    """Vanilla KD: teacher tokens kept per position, with the log of the mass left over."""
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


CACHEABLE_ALGORITHMS = ("vanilla", "dskd", "dskd_cma")

LayerMapSpec = Union[Literal["uniform"], list[int], list[list[int]]]


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

    _omit_at_default = frozenset({"teachers", "hidden", "shortcut", "data", "cache", "positions"})

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
    `loss.alpha: 1` turns the stage into pure healing by KD."""
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

    @model_validator(mode="after")
    def _cache_algorithm(self) -> DistillConfig:
        if self.cache.enabled and self.algorithm not in CACHEABLE_ALGORITHMS:
            raise ValueError(
                f"cache.enabled: the teacher cache serves {', '.join(CACHEABLE_ALGORITHMS)}, not {self.algorithm!r}"
            )
        if self.positions == "all" and (self.algorithm != "vanilla" or self.cache.enabled):
            raise ValueError(
                f"positions: all is full-sequence vanilla KD with the teacher online, not algorithm "
                f"{self.algorithm!r}" + (" with a teacher cache" if self.cache.enabled else "")
            )
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
        from distill2edge.train.algorithms import algorithm_names

        if v not in algorithm_names():
            raise ValueError(f"unknown distillation algorithm {v!r}; registered: {', '.join(algorithm_names())}")
        return v


CLASSIFY_METRICS = ("accuracy", "macro_f1")


class EvaluateConfig(Strict):
    models: list[str] = ["all"]
    """Models to evaluate: `all` (every model the recipe produces), or roles: `teacher.NAME`,
    `teacher_sft.NAME`, `student_base`, `student_sft`, `distilled.NAME`."""
    metrics: list[str] = ["exact_match", "token_f1", "rouge_l"]
    """QA metrics (see `distill2edge evaluate --help`); classification recipes use accuracy and macro_f1."""
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)


class ExportConfig(Strict):
    """Export evaluated models for devices, gated on parity (as `distill2edge export`)."""

    models: list[str] = []
    """Roles to export (e.g. `distilled.dskd`), or `best_distilled`: the distilled model with the best
    score on the first of token_f1 / the evaluate metrics."""
    profiles: list[str] = []
    """Device profiles: shipped names (cpu-laptop, raspberry-pi-5, jetson-orin, android-onnx-int8) or YAML files."""
    on_gate_failure: Literal["report", "fail"] = "report"
    """`report`: record the failed gate and its numbers, export nothing, go on; `fail`: stop the run."""


class BenchConfig(Strict):
    """Latency and accuracy of the teachers against the exported student, each runtime in its own process."""

    enabled: bool = False
    max_questions: int | None = Field(20, ge=1)
    """Test questions answered by every model (the first N of the test split)."""
    threads: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=0)
    """Questions per batch for batched questions/s (torch and ONNX); 0 skips the batched pass."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_NAMED_FIELD = re.compile(r"^Value error, ([A-Za-z0-9_.-]+): (.*)$", re.DOTALL)


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = DataConfig()
    teachers: dict[str, ModelConfig] = Field(min_length=1)
    """Teachers by name; each distillation names the one it learns from."""
    student: StudentConfig
    sft: SFTConfig = SFTConfig()
    """`sft.teacher` applies to every teacher that is distilled from (or evaluated) in its SFT state."""
    distill: dict[str, DistillConfig] = Field(default_factory=lambda: {"distilled": DistillConfig()})
    """Distillations by name, run in order; each yields the model `distilled.NAME`."""
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    bench: BenchConfig = BenchConfig()
    """Benchmarks the teachers (torch) against the exported student's formats and the student in torch."""
    quick: dict[str, Any] = {}
    """Overrides (dotted key -> value, `*` matches every key of a section) applied by `--quick`."""

    @model_validator(mode="after")
    def _references(self) -> Recipe:
        for what, names in (("teachers", self.teachers), ("distill", self.distill)):
            for n in names:
                if not _NAME.match(n):
                    raise ValueError(f"{what}: name {n!r} must be letters, digits, '-' or '_'")
        earlier: list[str] = []
        for name, d in self.distill.items():
            self._check_teachers(name, d)
            self._check_multi(name, d)
            if d.student not in ("base", "sft", *earlier):
                raise ValueError(
                    f"distill.{name}.student: {d.student!r} must be base, sft or an earlier distillation "
                    f"({', '.join(earlier) or 'none before this one'})"
                )
            earlier.append(name)
        if self.data.task == "classification":
            if self.evaluate.metrics == EvaluateConfig.model_fields["metrics"].default:
                self.evaluate.metrics = list(CLASSIFY_METRICS)
            wrong = [m for m in self.evaluate.metrics if m not in CLASSIFY_METRICS]
            if wrong:
                raise ValueError(f"evaluate.metrics: classification is scored by {', '.join(CLASSIFY_METRICS)}, not {wrong}")
            if self.bench.enabled:
                raise ValueError("bench.enabled: the bench stage answers QA questions; classification latency "
                                 "(ms per sentence) is measured by the evaluation")
        known = set(self.roles())
        for role in self.evaluate.models:
            if role != "all" and role not in known:
                raise ValueError(f"evaluate.models: unknown role {role!r}; this recipe has: {', '.join(self.roles())}")
        for role in self.export.models:
            if role != "best_distilled" and role not in known:
                raise ValueError(f"export.models: unknown role {role!r}; use best_distilled or one of: {', '.join(self.roles())}")
        from distill2edge.export.common import ExportError
        from distill2edge.export.profiles import load_profile

        for name in self.export.profiles:
            try:
                load_profile(name)
            except ExportError as e:
                raise ValueError(f"export.profiles: {e}") from None
        return self

    def _check_teachers(self, name: str, d: DistillConfig) -> None:
        known = ", ".join(self.teachers)
        if d.teachers:
            if d.teacher is not None:
                raise ValueError(f"distill.{name}.teachers: set teacher or teachers, not both")
            if d.algorithm != "multi_teacher":
                raise ValueError(f"distill.{name}.teachers: several teachers need algorithm: multi_teacher")
            for t in d.teachers:
                if t not in self.teachers:
                    raise ValueError(f"distill.{name}.teachers: {t!r} is not among teachers ({known})")
            return
        if d.teacher is None:
            if len(self.teachers) != 1:
                raise ValueError(f"distill.{name}.teacher: name one of the teachers ({known})")
            d.teacher = next(iter(self.teachers))
        elif d.teacher not in self.teachers:
            raise ValueError(f"distill.{name}.teacher: {d.teacher!r} is not among teachers ({known})")

    def _check_multi(self, name: str, d: DistillConfig) -> None:
        data = d.data or self.data
        placed = [t for t in d.teacher_names() if t in self.teachers and (self.teachers[t].device or self.teachers[t].offload)]
        if placed and (d.algorithm == "multi_teacher" or (d.algorithm in ("dskd", "dskd_cma") and not d.cache.enabled)):
            raise ValueError(
                f"teachers.{placed[0]}.device/offload: distill.{name} ({d.algorithm}) needs the teacher beside the "
                "student" + ("; enable distill." + name + ".cache, which keeps only its head and embeddings there"
                             if d.algorithm != "multi_teacher" else "")
            )
        if d.algorithm != "multi_teacher":
            for field, used in (("hidden.weight", d.hidden.weight > 0), ("shortcut.name", d.shortcut.name != "none")):
                if used:
                    raise ValueError(f"distill.{name}.{field}: hidden-state MSE and the shortcut penalty need algorithm: multi_teacher")
            return
        if d.shortcut.name != "none" and data.task != "classification":
            raise ValueError(f"distill.{name}.shortcut.name: the anti-shortcut penalty needs classification data (data.task)")
        if d.shortcut.name != "none" and d.shortcut.weight == 0:
            raise ValueError(f"distill.{name}.shortcut.weight: {d.shortcut.name} is chosen but its weight is 0")
        if d.loss.alpha > 0 and all(t.kd == "none" for t in d.teachers.values()) and d.teachers:
            raise ValueError(f"distill.{name}.loss.alpha: no teacher has a KD term (every kd is none); set alpha to 0")

    def roles(self) -> list[str]:
        """Every model role this recipe can produce, in report order."""
        roles = [f"teacher.{t}" for t in self.teachers]
        roles += [f"teacher_sft.{t}" for t in self.teachers]
        roles += ["student_base", "student_sft"]
        return roles + [f"distilled.{d}" for d in self.distill]

    def config_hash(self) -> str:
        return config_hash(self.model_dump(mode="json", exclude={"quick", "description"}))


# ------------------------------------------------------------------------------- loading
def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able value (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def recipes_dir() -> Path:
    """The recipes shipped inside the package (the repository's `recipes/` points here)."""
    return Path(str(resources.files("distill2edge") / "recipes"))


def list_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def find_recipe(name_or_path: str) -> Path:
    """A recipe name (`telecom-qa`) or a path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return path
    known = list_recipes()
    if name_or_path not in known:
        raise RecipeError(f"unknown recipe {name_or_path!r}; available: {', '.join(known) or '(none)'}")
    return known[name_or_path]


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", value), the value parsed as YAML (see `config_overrides`)."""
    from distill2edge.config_overrides import parse_override as parse

    return parse(text)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML mapping tree to its 1-based line, for error messages."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = prefix + (str(key_node.value),)
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[prefix + (str(i),)] = item.start_mark.line + 1
                walk(item, prefix + (str(i),))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def format_validation_error(
    err: ValidationError, source: str, text: str | None = None, origins: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One line per problem: `file:line: field.path: message`, or `--set ...: field.path: message` when an
    override (`origins`: key path -> how it was given) set the field or a section holding it."""
    lines = _key_lines(text) if text else {}
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = e["msg"]
        named = _NAMED_FIELD.match(msg)
        if named:  # a cross-field check names its field (relative to the model it checks) first
            loc, msg = loc + tuple(named.group(1).split(".")), named.group(2)
        # Walk up to the closest key that exists in the file (a missing key has no line of its own).
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        where = f"{source}:{line}" if line else source
        where = next((origins[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in (origins or {})), where)
        field = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg += f" (got {e['input']!r})"
        out.append(f"{where}: {field}: {msg}")
    return "invalid recipe:\n  " + "\n  ".join(out)


def load_recipe(
    name_or_path: str, overrides: list[str] | None = None, quick: bool = False
) -> Recipe:
    """Read, override (`--quick`, `--set`) and validate a recipe (`config_overrides.load_recipe`).
    Raises RecipeError citing file:line:field, or the override that set the field."""
    from distill2edge.config_overrides import load_recipe as load

    return load(name_or_path, overrides, quick)
