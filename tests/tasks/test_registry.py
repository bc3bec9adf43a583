"""The task registry (`distill2edge.tasks`): every registered task provides every member of `Task`, the
light spec agrees with the schema's task names, an unknown name is refused naming the known ones, and
the registry and schema import neither torch nor a task's code."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from dataclasses import fields

import pytest
from pydantic import ValidationError

from distill2edge.config import DataConfig, EvaluateConfig, Recipe
from distill2edge.tasks import TASK_NAMES, TASK_SPECS, Task, TaskName, UnknownTaskError, get_task, task_spec
from distill2edge.tasks.base import param_count

_ABSTRACT = sorted(Task.__abstractmethods__)


def test_every_registered_task_provides_every_member() -> None:
    assert TASK_NAMES == ("qa", "classification")
    assert _ABSTRACT  # the interface has members to provide
    for name in TASK_NAMES:
        task = get_task(name)
        assert isinstance(task, Task) and not inspect.isabstract(type(task))
        assert task.name == name and task.spec is TASK_SPECS[name] and get_task(name) is task
        for member in _ABSTRACT:
            own = getattr(type(task), member)
            assert own is not getattr(Task, member), f"{name} does not provide {member}"
            assert own.__qualname__.startswith(type(task).__name__), (name, member)
        spec = task.spec
        for f in fields(spec):
            if f.name not in ("metrics", "default_metrics"):  # None there means "no restriction" / "recipe default"
                assert getattr(spec, f.name) not in (None, "", ()), (name, f.name)
        assert spec.formats[0] == "auto" and all(k in spec.default_template for k in spec.template_keys)
        assert spec.default_metrics is None or spec.metrics is None or set(spec.default_metrics) <= set(spec.metrics)


def test_schema_task_names_are_the_registry() -> None:
    from distill2edge import tasks

    assert typing.get_args(TaskName) == TASK_NAMES
    assert tuple(tasks._LOADERS) == TASK_NAMES
    assert typing.get_args(DataConfig.model_fields["task"].annotation) == TASK_NAMES
    formats = set(typing.get_args(DataConfig.model_fields["format"].annotation))
    assert formats == {f for s in TASK_SPECS.values() for f in s.formats}


@pytest.mark.parametrize("lookup", [get_task, task_spec])
def test_unknown_task_names_the_known_ones(lookup: typing.Callable[[str], object]) -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task 'regression'; known tasks: qa, classification"):
        lookup("regression")
    assert issubclass(UnknownTaskError, ValueError)
    with pytest.raises(ValidationError, match="task"):
        DataConfig(task="regression")  # type: ignore[arg-type]


def test_specs_drive_recipe_validation() -> None:
    """The schema's task checks read the spec: default metrics, accepted metrics, bench, teacher data."""
    base = {"name": "t", "teachers": {"t": {"path": "x"}}, "student": {"path": "y"},
            "data": {"task": "classification", "source": "embedded:finance-sentiment"}}
    recipe = Recipe.model_validate(base)
    assert recipe.evaluate.metrics == list(TASK_SPECS["classification"].default_metrics or ())
    assert Recipe.model_validate({**base, "data": {}}).evaluate.metrics == EvaluateConfig().metrics
    with pytest.raises(ValidationError, match=r"classification is scored by accuracy, macro_f1, not \['token_f1'\]"):
        Recipe.model_validate({**base, "evaluate": {"metrics": ["token_f1"]}})
    with pytest.raises(ValidationError, match=r"classification latency \(ms per sentence\) is measured by the evaluation"):
        Recipe.model_validate({**base, "bench": {"enabled": True}})
    with pytest.raises(ValidationError, match="data.task is classification, not qa"):
        Recipe.model_validate({**base, "teachers": {"t": {"path": "x"}}, "teacher_data": {"t": {}}})


def test_report_members() -> None:
    from distill2edge.report.markdown import results_table

    qa, cls = get_task("qa"), get_task("classification")
    data = DataConfig(task="classification", source="embedded:finance-sentiment")
    assert qa.report_labels(DataConfig()) is None and cls.report_labels(data) == ["negative", "neutral", "positive"]
    assert "12 training / 2 validation / 3 test questions" in qa.data_line(
        DataConfig(), {"train_questions": 12, "validation_questions": 2, "test_questions": 3})
    line = cls.data_line(data, {"train_examples": 5, "train_labels": {"neutral": 3, "positive": 2}})
    assert "5 training" in line and "neutral 3, positive 2" in line
    models = {"a": {"role": "A", "params": 2e6, "accuracy": 0.5, "latency_ms": 1.234, "predicted/negative": 1.0}}
    table = results_table(models, ["accuracy"], cls.spec, cls.report_labels(data))
    assert "| Role | Params (M) | Accuracy | ms / inference | predicted (negative / neutral / positive) |" in table
    assert "| A | 2.0 | 0.500 | 1.2 | 1.00 / – / – |" in table
    assert "| Role | Params (M) | Accuracy | ms / answer |" in results_table(models, ["accuracy"], qa.spec)
    assert param_count(type("M", (), {"parameters": lambda self: [type("P", (), {"numel": lambda s: 3})()] * 2})()) == 6


def test_classification_train_labels_and_no_answers() -> None:
    from distill2edge.data.classify import ClassExample
    from distill2edge.data.examples import QAExample

    cls, qa = get_task("classification"), get_task("qa")
    examples = [ClassExample(id="1", text="up", label="positive"), ClassExample(id="2", text="x", label="neutral")]
    assert cls.train_labels(examples) == ["positive", "neutral"] and qa.train_labels(examples) is None
    data = DataConfig(task="classification", source="embedded:finance-sentiment")
    assert cls.answer_probe(examples, 4, data, EvaluateConfig(), None) is None  # type: ignore[arg-type]
    assert cls.answer_ce(None, None, examples, data, batch_size=1, device=None) is None  # type: ignore[arg-type]
    qa_ex = QAExample(id="q", context_id="c", context="ctx", question="q?", answers=("a",))
    assert qa.answer_probe([qa_ex], 0, DataConfig(), EvaluateConfig(), None) is None  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected ClassExample examples"):
        cls.train_labels([qa_ex])


def test_registry_and_schema_import_no_task_code() -> None:
    code = (
        "import sys\n"
        "import distill2edge.tasks, distill2edge.config\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'distill2edge.tasks.qa',\n"
        "               'distill2edge.tasks.classification') if m in sys.modules)\n"
        "assert heavy == [], heavy\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
