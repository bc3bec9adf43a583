"""The task interface: what the pipeline asks of a task (`qa`, `classification`) instead of branching on
its name. Each member delegates to the task's functions in `data/`, `evaluate/` and `report/`.

Only standard-library imports at run time (the types are for checkers), so the registry stays light.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from distill2edge.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from distill2edge.evaluate.probe import ProbeFactory
    from distill2edge.schema.data import DataConfig
    from distill2edge.schema.recipe import EvaluateConfig

Log = Callable[[str], None]
Rows = list[dict[str, list[int]]]
"""Encoded examples: `input_ids` and `labels` (-100 on the prompt), as `data.tokenize.collate` reads them."""


class Task(ABC):
    """One task: its spec (what the schema checks) and the code every stage runs for it.

    A subclass sets `spec` and implements every abstract member; the registry holds one instance per name.
    Splits hold one kind of example (`QAExample` or `ClassExample`), the one `read_split` returns.
    """

    spec: ClassVar[TaskSpec]

    @property
    def name(self) -> str:
        """The `data.task` value."""
        return self.spec.name

    # ---------------------------------------------------------------- data
    @abstractmethod
    def prepare_data(self, cfg: DataConfig, out: Path, log: Log | None) -> dict[str, Any]:
        """Load and split `cfg`'s data, write `train/validation/test.jsonl` into `out`; returns the data
        stage's metrics (split sizes, ...). Warnings go to `log` (default: stderr)."""

    @abstractmethod
    def read_split(self, path: Path) -> list[Any]:
        """One split file `prepare_data` wrote, as examples."""

    # ---------------------------------------------------------------- training
    @abstractmethod
    def encode(self, tok: PreTrainedTokenizerBase, examples: Sequence[Any], data: DataConfig) -> Rows:
        """Prompt + answer token ids with labels on the answer only (the training target)."""

    @abstractmethod
    def train_labels(self, examples: Sequence[Any]) -> list[str] | None:
        """The examples' labels (for the anti-shortcut penalty's prior), or None when examples carry none."""

    @abstractmethod
    def answer_probe(
        self, examples: Sequence[Any], count: int, data: DataConfig, ecfg: EvaluateConfig, device: torch.device,
    ) -> ProbeFactory | None:
        """A scorer of greedy answers to the first `count` of `examples`, run at each validation, or None
        when the task generates no answers."""

    # ---------------------------------------------------------------- evaluation
    @abstractmethod
    def evaluate(
        self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Any], out: Path,
        data: DataConfig, ecfg: EvaluateConfig, *, device: torch.device, progress: bool, desc: str,
    ) -> dict[str, Any]:
        """Score `model` on `examples` (the test split), writing per-example predictions and scores into
        `out`; returns the summary kept as the evaluation stage's metrics (scores, `params`, latency_ms)."""

    @abstractmethod
    def answer_ce(
        self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Any], data: DataConfig,
        *, batch_size: int, device: torch.device,
    ) -> float | None:
        """Mean cross-entropy of the gold answers after their prompts (nats per answer token), or None when
        the task does not measure it."""

    # ---------------------------------------------------------------- report
    @abstractmethod
    def data_line(self, data: DataConfig, metrics: dict[str, Any]) -> str:
        """The report's sentence on the data: source and split sizes (from the data stage's `metrics`)."""

    @abstractmethod
    def report_labels(self, data: DataConfig) -> list[str] | None:
        """Labels whose predicted share the results table shows (one column), or None for no such column."""


def param_count(model: Any) -> int:
    """Parameters of `model`, as each evaluation records them (`params`)."""
    return sum(p.numel() for p in model.parameters())
