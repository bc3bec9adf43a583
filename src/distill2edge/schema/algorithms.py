"""The distillation algorithms a recipe may name (`distill.NAME.algorithm`) and what each needs, without
their code.

The builders live in `distill2edge.train.algorithms` (torch, the objectives, the training loop), which
imports the recipe classes; the schema checks a recipe's algorithm against the names here, so validating
a recipe loads no training code and no import runs in a circle. `train.algorithms.register_algorithm`
declares every name it registers here; `tests/train/test_algorithm_names.py` checks that the built-in
builders and `BUILTIN_ALGORITHMS` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AlgorithmSpec:
    """What an algorithm needs, so the recipe checks, the pipeline and the stage keys ask the spec rather
    than compare algorithm names."""

    several_teachers: bool = False
    """Takes `teachers:` (several, each with its own KD term), not `teacher:`."""
    teacher_beside_student: Literal["never", "online", "always"] = "never"
    """Whether the whole teacher must sit on the student's device: `online` when it is not read from the
    teacher cache (DSKD's projectors read its hidden states), `always`, or `never` (logits are moved)."""
    hidden_terms: bool = False
    """Accepts `hidden:` (hidden-state MSE) and `shortcut:` terms."""
    loss_family: str | None = None
    """The loss definition it computes (`stage_keys.LOSS_DEFINITION`); None: its teachers' own."""
    cacheable: bool = False
    """Can read the teacher from the top-k teacher cache (`distill.NAME.cache`) instead of running it."""
    all_positions: bool = False
    """Supports `positions: all` (full-sequence KD at every position, not only the answer)."""


BUILTIN_ALGORITHMS: tuple[str, ...] = ("vanilla", "dskd", "dskd_cma", "uld")
"""The algorithms `train.algorithms` registers, in its order."""

MULTI_TEACHER = "multi_teacher"
"""Built by `train.multi.build_multi_teacher` (it takes several teachers, so it is not a `Builder`)."""

_SPECS: dict[str, AlgorithmSpec] = {
    "vanilla": AlgorithmSpec(loss_family="vanilla", cacheable=True, all_positions=True),
    "dskd": AlgorithmSpec(teacher_beside_student="online", loss_family="dskd", cacheable=True),
    "dskd_cma": AlgorithmSpec(teacher_beside_student="online", loss_family="dskd", cacheable=True),
    "uld": AlgorithmSpec(loss_family="uld"),
    MULTI_TEACHER: AlgorithmSpec(several_teachers=True, teacher_beside_student="always", hidden_terms=True),
}

_declared: list[str] = []
"""Algorithms registered beyond the built-in ones (a plug-in's `register_algorithm`)."""


def declare_algorithm(name: str, spec: AlgorithmSpec | None = None) -> None:
    """Make `name` a valid `distill.NAME.algorithm` (called by `train.algorithms.register_algorithm`); a
    plug-in without a spec takes one teacher, which may sit on a device of its own."""
    if name not in BUILTIN_ALGORITHMS and name != MULTI_TEACHER and name not in _declared:
        _declared.append(name)
        _SPECS[name] = spec or AlgorithmSpec()


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The needs of the algorithm `name` (one of `algorithm_names()`)."""
    return _SPECS[name]


def algorithm_names() -> list[str]:
    """Every algorithm a recipe may name: the built-in ones, any registered since, and multi_teacher."""
    return [*BUILTIN_ALGORITHMS, *_declared, MULTI_TEACHER]


def cacheable_algorithms() -> list[str]:
    """The algorithms that can read the teacher cache."""
    return [name for name in algorithm_names() if _SPECS[name].cacheable]
