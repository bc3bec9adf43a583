"""The recipe schema checks algorithm names against `schema.algorithms`, not against the builders in
`train.algorithms` (which import the schema): the two must agree, and a newly registered builder must
become a valid recipe name."""

from __future__ import annotations

import pydantic
import pytest

import distill2edge.schema.algorithms as names
from distill2edge.config import DistillConfig
from distill2edge.train import algorithms


def test_builtin_names_are_the_registered_builders() -> None:
    assert tuple(algorithms.ALGORITHMS) == names.BUILTIN_ALGORITHMS
    assert algorithms.algorithm_names() == names.algorithm_names() == [*names.BUILTIN_ALGORITHMS, names.MULTI_TEACHER]
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register_algorithm(names.MULTI_TEACHER)(algorithms.ALGORITHMS["vanilla"])


def test_a_registered_algorithm_becomes_valid_in_recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown distillation algorithm 'plugin_kd'"):
        DistillConfig.model_validate({"algorithm": "plugin_kd"})
    monkeypatch.setattr(names, "_declared", [])
    monkeypatch.setattr(algorithms, "ALGORITHMS", dict(algorithms.ALGORITHMS))
    algorithms.register_algorithm("plugin_kd")(algorithms.ALGORITHMS["vanilla"])
    assert DistillConfig.model_validate({"algorithm": "plugin_kd"}).algorithm == "plugin_kd"
    assert names.algorithm_names() == [*names.BUILTIN_ALGORITHMS, "plugin_kd", names.MULTI_TEACHER]
