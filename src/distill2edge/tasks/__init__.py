"""The task registry: one object per `data.task` (`qa`, `classification`) that the pipeline asks for what
differs between tasks, instead of branching on the name.

    from distill2edge.tasks import get_task
    task = get_task(recipe.data.task)
    metrics = task.prepare_data(recipe.data, out, log)   # and encode, evaluate, answer_ce, data_line, ...

`task_spec(name)` is the light half (`tasks.spec`: formats, templates, metrics, capabilities), which the
recipe schema imports; `get_task(name)` the whole task (`tasks.base.Task`), whose module is imported on
first use, so importing this package imports neither torch nor the schema. An unknown name raises
`UnknownTaskError` listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from distill2edge.tasks.base import Task
from distill2edge.tasks.spec import TASK_SPECS, TaskName, TaskSpec, UnknownTaskError, task_spec


def _qa() -> Task:
    from distill2edge.tasks.qa import QATask

    return QATask()


def _classification() -> Task:
    from distill2edge.tasks.classification import ClassificationTask

    return ClassificationTask()


_LOADERS: dict[str, Callable[[], Task]] = {"qa": _qa, "classification": _classification}
"""How each task is built, by name; the names are those of `TASK_SPECS` (a test checks)."""

TASK_NAMES: tuple[str, ...] = tuple(TASK_SPECS)
"""Every registered task name, in registry order."""


@cache
def get_task(name: str) -> Task:
    """The task `name` (`data.task`); UnknownTaskError naming the known tasks otherwise."""
    task_spec(name)  # the one message for an unknown name
    return _LOADERS[name]()


__all__ = ["TASK_NAMES", "TASK_SPECS", "Task", "TaskName", "TaskSpec", "UnknownTaskError", "get_task", "task_spec"]
