"""Recipe schema, `teachers:` and `student:`: the models a recipe starts from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distill2edge.schema.base import Strict


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


class VocabularyConfig(Strict):
    """Trim each trained student's vocabulary to the tokens of its domain (`models.vocab_trim`)."""

    keep_first: int = Field(16384, ge=0)
    """Besides every token of the training examples (and the merge parents BPE needs to reach them), keep
    the tokenizer's first N ids: in a byte-level BPE these are its most frequent tokens, so text beyond the
    training data (test contexts) still tokenizes mostly as before. 0 keeps the training tokens only."""


class StudentConfig(Strict):
    """The student: a model of its own, or layers taken from a same-family model."""

    _omit_at_default = frozenset({"selection_samples", "mlp_width", "vocabulary"})

    path: str | None = None
    """A model to use as is (`embedded:NAME`, folder or hub id); leave empty to prune `init_from`."""
    init_from: str | None = None
    """Model whose layers initialise the student (a subset of its decoder layers, see `layers`): a model
    reference, or `teacher_sft.NAME` for a recipe teacher after its SFT (LoRA merged), so the student
    inherits the task as well as the language (the student_init stage then runs after that SFT)."""
    num_layers: int | None = Field(None, ge=1)
    """How many layers of `init_from` to keep (with `layers: evenly` or `block_influence`)."""
    layers: list[int] | Literal["evenly", "block_influence", "answer_ce"] = "evenly"
    """Which layers of `init_from` to keep: `evenly` spaced (every k-th, as DistilBERT did; first and last
    kept), the `num_layers` with the highest `block_influence` (1 - cosine between a layer's input and output
    hidden states on the recipe's training prompts, as ShortGPT measures it), the `num_layers` left by
    `answer_ce` (remove, one at a time, the layer whose removal raises the answer cross-entropy of
    `selection_samples` training examples, spread over the split, least: slow, ~20 min for 30 -> 14 layers
    and 12 examples on 2 CPU cores), or an explicit list of indices (counting from 0). The measurements
    go to `student_init.json`."""
    selection_samples: int = Field(32, ge=1)
    """`block_influence` / `answer_ce`: training examples (prompt and answer) the choice is measured on (the
    first ones for `block_influence`; evenly spread over the training split for `answer_ce`)."""
    mlp_width: int | None = Field(None, ge=1)
    """Hidden channels each kept layer's MLP keeps (its `intermediate_size`; empty: all): the channels with
    the largest mean activation on `selection_samples` training prompts (as Minitron ranks neurons),
    measured on the layer-pruned student (`models.width`). Narrower MLPs decode faster at equal depth."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    vocabulary: VocabularyConfig | None = None
    """After training, trim every trained student (labels-only and distilled) to the tokens its domain uses:
    the output layer then reads a fraction of the embedding table at each decoded token (SmolLM2: 49,152 ->
    ~16,800 rows). Evaluation, export and bench see the trimmed model. Empty: the full vocabulary."""

    @model_validator(mode="after")
    def _one_source(self) -> StudentConfig:
        if (self.path is None) == (self.init_from is None):
            raise ValueError("set exactly one of student.path or student.init_from")
        if self.init_from is None:
            if self.mlp_width is not None:
                raise ValueError("student.mlp_width narrows a student cut from student.init_from; "
                                 "a student.path model is used as is")
            return self
        if isinstance(self.layers, list):
            if self.num_layers is not None and self.num_layers != len(self.layers):
                raise ValueError(f"student.num_layers is {self.num_layers} but student.layers lists "
                                 f"{len(self.layers)} layers; give one of them")
        elif self.num_layers is None:
            raise ValueError(f"student.layers: {self.layers} needs student.num_layers (how many layers to keep)")
        return self

    def source_teacher(self) -> str | None:
        """NAME when `init_from` is `teacher_sft.NAME` (the student is cut from that teacher after SFT)."""
        prefix = "teacher_sft."
        return self.init_from[len(prefix):] if self.init_from and self.init_from.startswith(prefix) else None

    def layer_count(self) -> int | None:
        """How many layers the pruned student keeps (None for a student used as is)."""
        return len(self.layers) if isinstance(self.layers, list) else self.num_layers

