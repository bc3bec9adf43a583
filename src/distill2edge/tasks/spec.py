"""What the recipe schema knows of each task: its name, the data formats and prompt template it reads,
the metrics it accepts and the stages it supports.

This is the light half of the task registry (`distill2edge.tasks`): standard library only, so the schema
imports it without importing torch or any code that imports the schema. The other half, each task's
data, encoding, evaluation and report code, lives in `tasks/qa.py` and `tasks/classification.py`, whose
objects carry the spec of their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskName = Literal["qa", "classification"]
"""The `data.task` values a recipe accepts; the registry (`TASK_SPECS`) has one spec per value (a test checks)."""

QA_TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
CLASSIFY_TEMPLATE = "Sentence: {text}\nIs the sentiment of this financial news sentence {labels}?\nAnswer:"


@dataclass(frozen=True)
class TaskSpec:
    """One task's facts that recipe validation and the report need, without any of its code."""

    name: str
    """The `data.task` value."""
    title: str
    """How messages name the task ("QA", "classification")."""
    formats: tuple[str, ...]
    """The `data.format` values it reads (`auto` picks from the source)."""
    default_template: str
    """`data.prompt_template` when the recipe gives none."""
    template_keys: tuple[str, ...]
    """Placeholders every prompt template of this task must contain."""
    labelled: bool
    """Examples carry a label from `data.labels` (labels, verbalizers and the anti-shortcut penalty apply)."""
    generative: bool
    """Answers are free text the model generates: the teacher can write training data, the bench answers
    the test questions, training can probe greedy answers."""
    metrics: tuple[str, ...] | None
    """The evaluate metrics it is scored by; None: any metric of the evaluate registry (checked when the
    evaluation runs)."""
    default_metrics: tuple[str, ...] | None
    """`evaluate.metrics` when the recipe leaves the default; None: keep the recipe default."""
    latency_column: str
    """Header of the report's latency column."""
    latency_digits: int
    """Decimals of the latency figures in the report."""
    latency_unit: str
    """What one latency figure times, in words ("ms per answer")."""


TASK_SPECS: dict[str, TaskSpec] = {
    "qa": TaskSpec(
        name="qa", title="QA", formats=("auto", "telequad", "jsonl", "squad", "hf"),
        default_template=QA_TEMPLATE, template_keys=("{context}", "{question}"), labelled=False, generative=True,
        metrics=None, default_metrics=None, latency_column="ms / answer", latency_digits=0,
        latency_unit="ms per answer",
    ),
    "classification": TaskSpec(
        name="classification", title="classification", formats=("auto", "jsonl", "csv", "phrasebank"),
        default_template=CLASSIFY_TEMPLATE, template_keys=("{text}",), labelled=True, generative=False,
        metrics=("accuracy", "macro_f1"), default_metrics=("accuracy", "macro_f1"),
        latency_column="ms / inference", latency_digits=1, latency_unit="ms per sentence",
    ),
}
"""Every task's spec by name, in the order messages list them."""


class UnknownTaskError(ValueError):
    """A task name the registry does not have; the message lists the known ones."""


def task_spec(name: str) -> TaskSpec:
    """The spec of task `name`; UnknownTaskError naming the known tasks otherwise."""
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASK_SPECS)}") from None
