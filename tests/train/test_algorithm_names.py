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


def test_a_plugin_declares_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe checks read the algorithm's spec, not its name: a plug-in that declares full-sequence
    support is accepted with `positions: all`, one that does not is refused."""
    monkeypatch.setattr(names, "_declared", [])
    monkeypatch.setattr(names, "_SPECS", dict(names._SPECS))
    monkeypatch.setattr(algorithms, "ALGORITHMS", dict(algorithms.ALGORITHMS))
    algorithms.register_algorithm("plain_kd")(algorithms.ALGORITHMS["vanilla"])
    algorithms.register_algorithm("seq_kd", names.AlgorithmSpec(all_positions=True))(algorithms.ALGORITHMS["vanilla"])
    with pytest.raises(pydantic.ValidationError, match="positions: all is full-sequence"):
        DistillConfig.model_validate({"algorithm": "plain_kd", "positions": "all"})
    assert DistillConfig.model_validate({"algorithm": "seq_kd", "positions": "all"}).positions == "all"
    with pytest.raises(pydantic.ValidationError, match="cache.enabled: the teacher cache serves vanilla, dskd, dskd_cma"):
        DistillConfig.model_validate({"algorithm": "seq_kd", "cache": {"enabled": True}})
    assert names.algorithm_spec("multi_teacher").several_teachers and names.algorithm_spec("dskd").cacheable
