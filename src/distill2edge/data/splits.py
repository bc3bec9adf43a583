"""The data stage for any task: prepare the splits, write them into the run folder, read them back.

What a task's data is and how it splits is the task's (`distill2edge.tasks`); this module is the stage's
one entry point, so callers need not know the task.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill2edge.config import DataConfig
from distill2edge.data.classify import ClassExample
from distill2edge.data.qa import QAExample
from distill2edge.tasks import get_task

SPLITS = ("train", "validation", "test")


def prepare_data(cfg: DataConfig, out: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write `train/validation/test.jsonl` into `out`; returns the stage metrics (split sizes, labels).

    QA data warnings (answers not in their context) go to `log` as `[data] warning: ...` (default: stderr)."""
    return get_task(cfg.task).prepare_data(cfg, out, log)


def read_data(cfg: DataConfig, folder: Path) -> dict[str, list[QAExample] | list[ClassExample]]:
    """The splits `prepare_data` wrote."""
    read = get_task(cfg.task).read_split
    return {name: read(folder / f"{name}.jsonl") for name in SPLITS}
