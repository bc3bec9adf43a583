"""The names of the distillation algorithms (`distill.NAME.algorithm` in a recipe), without their code.

The builders live in `distill2edge.train.algorithms` (torch, the objectives, the training loop), which
imports the recipe classes; the schema checks a recipe's algorithm against the names here, so validating
a recipe loads no training code and no import runs in a circle. `train.algorithms.register_algorithm`
declares every name it registers here; `tests/train/test_algorithm_names.py` checks that the built-in
builders and `BUILTIN_ALGORITHMS` agree.
"""

from __future__ import annotations

BUILTIN_ALGORITHMS: tuple[str, ...] = ("vanilla", "dskd", "dskd_cma", "uld")
"""The algorithms `train.algorithms` registers, in its order."""

MULTI_TEACHER = "multi_teacher"
"""Built by `train.multi.build_multi_teacher` (it takes several teachers, so it is not a `Builder`)."""

_declared: list[str] = []
"""Algorithms registered beyond the built-in ones (a plug-in's `register_algorithm`)."""


def declare_algorithm(name: str) -> None:
    """Make `name` a valid `distill.NAME.algorithm` (called by `train.algorithms.register_algorithm`)."""
    if name not in BUILTIN_ALGORITHMS and name != MULTI_TEACHER and name not in _declared:
        _declared.append(name)


def algorithm_names() -> list[str]:
    """Every algorithm a recipe may name: the built-in ones, any registered since, and multi_teacher."""
    return [*BUILTIN_ALGORITHMS, *_declared, MULTI_TEACHER]
