"""Recipe schema, `data:` section: the data set, its split, prompt template and task."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from distill2edge.schema.base import Strict
from distill2edge.tasks.spec import QA_TEMPLATE, TASK_SPECS, TaskName, task_spec


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


ContextWindow = Literal["head", "answer"]
"""Which part of a context too long for `max_length` a training prompt keeps (`DataConfig.context_window`)."""


class DataConfig(Strict):
    _omit_at_default = frozenset({"task", "labels", "verbalizers", "answers_in_context", "context_window"})

    task: TaskName = "qa"
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
    context_window: ContextWindow = "head"
    """QA training: which part of a context too long for `max_length` the prompt keeps. `head`: its
    beginning, as evaluation does (it cannot know the answer), so on long documents many training answers
    are cut away (TeleQuAD at 256 tokens: 45%) and the model learns to answer from a context that lacks
    them; `answer`: a window holding the reference answer, placed per example. It applies to the rows a
    training stage encodes, its validation loss included (so early stopping watches answerable prompts);
    the greedy validation answers (`train.eval_answers`) and every evaluation keep the head."""
    answers_in_context: Literal["warn", "error"] = "warn"
    """QA: what an answer that does not occur in its context (ignoring case and spacing) does: `warn`
    (a count and the first few file:line) or `error` (the data stage stops)."""

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """The task's own prompt template when the recipe gives none (the field default is QA's)."""
        if isinstance(data, dict) and data.get("task") in TASK_SPECS and "prompt_template" not in data:
            data = {**data, "prompt_template": TASK_SPECS[data["task"]].default_template}
        return data

    @model_validator(mode="after")
    def _task_fields(self) -> DataConfig:
        spec = task_spec(self.task)
        for key in spec.template_keys:
            if key not in self.prompt_template:
                raise ValueError(f"prompt_template: a {spec.title} template must contain {key}")
        if self.format not in spec.formats:
            readers = [s.title for s in TASK_SPECS.values() if self.format in s.formats]
            raise ValueError(f"format: {self.format!r} is for {' or '.join(readers)} data; {spec.title} reads "
                             f"{', '.join(spec.formats)}")
        if not spec.labelled:
            if self.labels is not None or self.verbalizers is not None:
                labelled = [s.name for s in TASK_SPECS.values() if s.labelled]
                raise ValueError(f"labels: labels and verbalizers belong to task: {' or '.join(labelled)}")
            return self
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

