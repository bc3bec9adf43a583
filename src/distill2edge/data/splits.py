"""The data stage for either task: prepare the splits, write them into the run folder, read them back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from distill2edge.config import DataConfig
from distill2edge.data.classify import (
    ClassExample,
    label_counts,
    load_class_jsonl,
    prepare_class_splits,
    write_class_jsonl,
)
from distill2edge.data.qa import QAExample, prepare_splits, read_split, write_jsonl
from distill2edge.data.qa_checks import warn_stderr

SPLITS = ("train", "validation", "test")

Example = TypeVar("Example", QAExample, ClassExample)


def prepare_data(cfg: DataConfig, out: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write `train/validation/test.jsonl` into `out`; returns the stage metrics (split sizes, labels).

    QA data warnings (answers not in their context) go to `log` as `[data] warning: ...` (default: stderr)."""
    if cfg.task == "classification":
        splits = prepare_class_splits(cfg)
        for name, rows in splits.items():
            write_class_jsonl(rows, out / f"{name}.jsonl")
        metrics: dict[str, Any] = {f"{name}_examples": len(rows) for name, rows in splits.items()}
        metrics.update({f"{name}_labels": label_counts(rows) for name, rows in splits.items()})
        return metrics
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if log is None:
            warn_stderr(message)
        else:
            log(f"[data] warning: {message}")

    qa = prepare_splits(cfg, warn)
    for name, examples in qa.items():
        write_jsonl(examples, out / f"{name}.jsonl")
    return ({"warnings": warnings} if warnings else {}) | {
        f"{name}_{what}": n
        for name, examples in qa.items()
        for what, n in (("questions", len(examples)), ("contexts", len({e.context_id for e in examples})))
    }


def read_data(cfg: DataConfig, folder: Path) -> dict[str, list[QAExample] | list[ClassExample]]:
    """The splits `prepare_data` wrote."""
    read = load_class_jsonl if cfg.task == "classification" else read_split
    return {name: read(folder / f"{name}.jsonl") for name in SPLITS}


def examples_of(examples: Sequence[QAExample | ClassExample], kind: type[Example], task: str) -> list[Example]:
    """`examples` typed as the one kind `task` (`data.task`) reads: a split holds a single kind, which the
    type of `read_data` cannot say; TypeError if any example is of the other kind."""
    out = [ex for ex in examples if isinstance(ex, kind)]
    if len(out) != len(examples):
        raise TypeError(f"expected {kind.__name__} examples (data.task {task!r}), got others too")
    return out
