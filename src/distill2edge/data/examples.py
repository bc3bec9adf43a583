"""The QA record (`QAExample`), the unlabelled passage (`TextExample`) and the data error (`DataError`), in
a module of their own: the loaders (`qa.py`) and the checks over whole sets (`qa_checks.py`) both import
them; `qa.py` re-exports the first and the last.
`examples_of` types a split as the one kind of example its task reads (the task modules use it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

Example = TypeVar("Example")


class DataError(ValueError):
    """Bad or missing data. The message names the file (and line or record) that is wrong."""


@dataclass(frozen=True)
class QAExample:
    """One question over one context. `answers` holds every acceptable reference answer."""

    id: str
    context_id: str
    context: str
    question: str
    answers: tuple[str, ...]
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def answer(self) -> str:
        """The reference used as the training target (the first one)."""
        return self.answers[0]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["answers"] = list(self.answers)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QAExample:
        return cls(**{**d, "answers": tuple(d["answers"])})


@dataclass(frozen=True)
class TextExample:
    """A passage without a question or answer: unlabelled text for full-sequence KD (healing). It carries
    no training target of its own, so only a KD term at every position (`positions: all`) learns from it."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TextExample:
        return cls(**d)


def examples_of(examples: Sequence[object], kind: type[Example], task: str) -> list[Example]:
    """`examples` typed as the one kind `task` (`data.task`) reads: a split holds a single kind, which the
    type of `data.splits.read_data` cannot say; TypeError if any example is of another kind."""
    out = [ex for ex in examples if isinstance(ex, kind)]
    if len(out) != len(examples):
        raise TypeError(f"expected {kind.__name__} examples (data.task {task!r}), got others too")
    return out
