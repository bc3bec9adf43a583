"""Recipe schema, the whole recipe: its sections, the output stages (`evaluate:`, `export:`, `bench:`)
and the cross-section checks (names, references between sections, roles)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distill2edge.schema.algorithms import MULTI_TEACHER, algorithm_spec
from distill2edge.schema.base import Strict, config_hash
from distill2edge.schema.data import DataConfig
from distill2edge.schema.distill import DistillConfig
from distill2edge.schema.models import ModelConfig, StudentConfig
from distill2edge.schema.teacher_data import TeacherDataConfig
from distill2edge.schema.texts import TextSourceConfig
from distill2edge.schema.training import SFTConfig
from distill2edge.tasks.spec import TASK_SPECS, task_spec


class EvaluateConfig(Strict):
    models: list[str] = ["all"]
    """Models to evaluate: `all` (every model the recipe produces), or roles: `teacher.NAME`,
    `teacher_sft.NAME`, `student_base`, `student_sft`, `distilled.NAME`."""
    metrics: list[str] = ["exact_match", "token_f1", "rouge_l"]
    """QA metrics (see `distill2edge evaluate --help`); classification recipes use accuracy and macro_f1
    (each task's accepted and default metrics: `tasks.spec`)."""
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)
    judge: str | None = None
    """Judge of the Oracle-LLM metrics (`llm` group): `hf:REF`, `gguf:PATH`, `gguf:embedded:NAME` or
    `openai:MODEL@URL` (as `distill2edge evaluate --judge`); empty: the default, hf:embedded:gemma-3-270m
    (naming the default is the same as leaving it empty). Part of the evaluation stages' keys when set, so
    another judge scores again instead of reusing the old scores."""

    _omit_at_default = frozenset({"judge"})

    @field_validator("judge")
    @classmethod
    def _judge_spec(cls, v: str | None) -> str | None:
        from distill2edge.evaluate.judge_spec import DEFAULT_JUDGE, JudgeError, parse_judge_spec

        if v is None or v == DEFAULT_JUDGE:
            return None  # the stage keys of recipes that do not name a judge
        try:
            parse_judge_spec(v)
        except JudgeError as e:
            raise ValueError(str(e)) from None
        return v


class ExportConfig(Strict):
    """Export evaluated models for devices, gated on parity (as `distill2edge export`)."""

    models: list[str] = []
    """Roles to export (e.g. `distilled.dskd`), or `best_distilled`: the distilled model with the best
    score on the first of token_f1 / the evaluate metrics."""
    profiles: list[str] = []
    """Device profiles: shipped names (cpu-laptop, raspberry-pi-5, jetson-orin, android-onnx-int8) or YAML files."""
    on_gate_failure: Literal["report", "fail"] = "report"
    """`report`: record the failed gate and its numbers, export nothing, go on; `fail`: stop the run."""


class BenchConfig(Strict):
    """Latency and accuracy of the teachers against the exported student, each runtime in its own process."""

    enabled: bool = False
    max_questions: int | None = Field(20, ge=1)
    """Test questions answered by every model (the first N of the test split)."""
    threads: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=0)
    """Questions per batch for batched questions/s (torch and ONNX); 0 skips the batched pass."""
    same_bits: bool = True
    """Export each benchmarked teacher to every GGUF type a student was exported to and time it too, so
    the bench has a same-runtime, same-quantization row and ratio (seconds for a ~100M teacher)."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = DataConfig()
    teachers: dict[str, ModelConfig] = Field(min_length=1)
    """Teachers by name; each distillation names the one it learns from."""
    student: StudentConfig
    sft: SFTConfig = SFTConfig()
    """`sft.teacher` applies to every teacher that is distilled from (or evaluated) in its SFT state."""
    teacher_data: dict[str, TeacherDataConfig] = {}
    """Extra training examples written by SFT teachers (by teacher name), each in a stage
    `teacher_data.TEACHER` that runs when a distillation names it in `extra_data`. Empty: none."""
    texts: dict[str, TextSourceConfig] = {}
    """Files of unlabelled domain text (by name), each read in a stage `text.NAME` that runs when a
    full-sequence distillation names it in `extra_data`. Empty: none."""
    distill: dict[str, DistillConfig] = Field(default_factory=lambda: {"distilled": DistillConfig()})
    """Distillations by name, run in order; each yields the model `distilled.NAME`."""
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    bench: BenchConfig = BenchConfig()
    """Benchmarks the teachers (torch) against the exported student's formats and the student in torch."""
    quick: dict[str, Any] = {}
    """Overrides (dotted key -> value, `*` matches every key of a section) applied by `--quick`."""

    _omit_at_default = frozenset({"teacher_data", "texts"})

    @model_validator(mode="after")
    def _references(self) -> Recipe:
        source = self.student.source_teacher()
        if source is not None:
            if source not in self.teachers:
                raise ValueError(f"student.init_from: {self.student.init_from!r} names no teacher "
                                 f"(teachers: {', '.join(self.teachers)})")
            if not self.sft.teacher.enabled:
                raise ValueError(f"student.init_from: {self.student.init_from} needs the teacher's SFT, "
                                 "but sft.teacher.enabled is false")
        for what, names in (("teachers", self.teachers), ("distill", self.distill)):
            for n in names:
                if not _NAME.match(n):
                    raise ValueError(f"{what}: name {n!r} must be letters, digits, '-' or '_'")
        self._check_teacher_data()
        if self.sft.teacher.extra_data:
            raise ValueError("sft.teacher.extra_data: teachers write their data after their SFT; only sft.student "
                             "and distillations can add it")
        self._check_extra_data("sft.student", self.sft.student.extra_data, None, learns_text=False)
        earlier: list[str] = []
        for name, d in self.distill.items():
            self._check_teachers(name, d)
            self._check_extra_data(f"distill.{name}", d.extra_data, d.data, learns_text=d.positions == "all")
            self._check_multi(name, d)
            if d.student not in ("base", "sft", *earlier):
                raise ValueError(
                    f"distill.{name}.student: {d.student!r} must be base, sft or an earlier distillation "
                    f"({', '.join(earlier) or 'none before this one'})"
                )
            earlier.append(name)
        self._check_task()
        known = set(self.roles())
        for role in self.evaluate.models:
            if role != "all" and role not in known:
                raise ValueError(f"evaluate.models: unknown role {role!r}; this recipe has: {', '.join(self.roles())}")
        for role in self.export.models:
            if role != "best_distilled" and role not in known:
                raise ValueError(f"export.models: unknown role {role!r}; use best_distilled or one of: {', '.join(self.roles())}")
        from distill2edge.export.common import ExportError
        from distill2edge.export.profiles import load_profile

        for name in self.export.profiles:
            try:
                load_profile(name)
            except ExportError as e:
                raise ValueError(f"export.profiles: {e}") from None
        return self

    def _check_task(self) -> None:
        """`evaluate.metrics` and `bench` against what `data.task` supports; a task with its own default
        metrics replaces the recipe default with them."""
        spec = task_spec(self.data.task)
        if spec.default_metrics is not None and self.evaluate.metrics == EvaluateConfig.model_fields["metrics"].default:
            self.evaluate.metrics = list(spec.default_metrics)
        if spec.metrics is not None:
            wrong = [m for m in self.evaluate.metrics if m not in spec.metrics]
            if wrong:
                raise ValueError(f"evaluate.metrics: {spec.title} is scored by {', '.join(spec.metrics)}, not {wrong}")
        if self.bench.enabled and not spec.generative:
            raise ValueError(f"bench.enabled: the bench stage answers QA questions; {spec.title} latency "
                             f"({spec.latency_unit}) is measured by the evaluation")

    def _check_teachers(self, name: str, d: DistillConfig) -> None:
        known = ", ".join(self.teachers)
        if d.teachers:
            if d.teacher is not None:
                raise ValueError(f"distill.{name}.teachers: set teacher or teachers, not both")
            if not algorithm_spec(d.algorithm).several_teachers:
                raise ValueError(f"distill.{name}.teachers: several teachers need algorithm: {MULTI_TEACHER}")
            for t in d.teachers:
                if t not in self.teachers:
                    raise ValueError(f"distill.{name}.teachers: {t!r} is not among teachers ({known})")
            return
        if d.teacher is None:
            if len(self.teachers) != 1:
                raise ValueError(f"distill.{name}.teacher: name one of the teachers ({known})")
            d.teacher = next(iter(self.teachers))
        elif d.teacher not in self.teachers:
            raise ValueError(f"distill.{name}.teacher: {d.teacher!r} is not among teachers ({known})")

    def _check_teacher_data(self) -> None:
        """Each `teacher_data` entry names a teacher, which is fine-tuned first, on QA data."""
        for t in self.teacher_data:
            if t not in self.teachers:
                raise ValueError(f"teacher_data.{t}: {t!r} is not among teachers ({', '.join(self.teachers)})")
            if not self.sft.teacher.enabled:
                raise ValueError(f"teacher_data.{t}: the SFT teacher writes the data, but sft.teacher.enabled is false")
            if not task_spec(self.data.task).generative:
                writers = [s.name for s in TASK_SPECS.values() if s.generative]
                raise ValueError(f"teacher_data.{t}: the teacher writes questions and answers; data.task is "
                                 f"{self.data.task}, not {' or '.join(writers)}")
            if "{context}" not in self.data.prompt_template.partition("{question}")[0]:
                raise ValueError(f"teacher_data.{t}: the teacher continues data.prompt_template cut before "
                                 "{question}, so the template needs {context} before {question}")

    def _check_extra_data(self, field: str, refs: list[str], own_data: DataConfig | None, learns_text: bool) -> None:
        """`FIELD.extra_data` names enabled `teacher_data` stages (when the stage trains on the recipe's data)
        or `texts` entries; passages (unlabelled) only go to a stage that `learns_text` (full-sequence KD)."""
        for ref in refs:
            what, _, teacher = ref.partition(".")
            if what == "text" and teacher:
                if teacher not in self.texts:
                    raise ValueError(f"{field}.extra_data: {ref} names no entry of the recipe's texts "
                                     f"({', '.join(self.texts) or 'none'})")
                if not learns_text:
                    raise ValueError(f"{field}.extra_data: {ref} is unlabelled text, which only full-sequence "
                                     "KD learns from; use it in a distillation with positions: all")
                continue
            if what != "teacher_data" or not teacher:
                raise ValueError(f"{field}.extra_data: {ref!r} must be teacher_data.TEACHER or text.NAME")
            if teacher not in self.teacher_data:
                raise ValueError(
                    f"{field}.extra_data: {ref} is not enabled: the recipe's teacher_data has "
                    + (f"no entry {teacher!r} (it has: {', '.join(self.teacher_data)})" if self.teacher_data
                       else f"no entries (add teacher_data: {{{teacher}: {{}}}})")
                )
            if self.teacher_data[teacher].passages_per_context and not learns_text:
                raise ValueError(f"{field}.extra_data: {ref} writes passages (passages_per_context), unlabelled "
                                 "text that only full-sequence KD learns from; use it in a distillation with "
                                 "positions: all")
        if any(r.startswith("teacher_data.") for r in refs) and own_data is not None and own_data != self.data:
            raise ValueError(f"{field}.extra_data: the teacher's questions are about the recipe's training "
                             "contexts; a distillation with its own data cannot add them")

    def _check_multi(self, name: str, d: DistillConfig) -> None:
        data = d.data or self.data
        spec = algorithm_spec(d.algorithm)
        placed = [t for t in d.teacher_names() if t in self.teachers and (self.teachers[t].device or self.teachers[t].offload)]
        beside = spec.teacher_beside_student
        if placed and (beside == "always" or (beside == "online" and not d.cache.enabled)):
            raise ValueError(
                f"teachers.{placed[0]}.device/offload: distill.{name} ({d.algorithm}) needs the teacher beside the "
                "student" + ("; enable distill." + name + ".cache, which keeps only its head and embeddings there"
                             if beside == "online" else "")
            )
        if not spec.hidden_terms:
            for field, used in (("hidden.weight", d.hidden.weight > 0), ("shortcut.name", d.shortcut.name != "none")):
                if used:
                    raise ValueError(f"distill.{name}.{field}: hidden-state MSE and the shortcut penalty need algorithm: {MULTI_TEACHER}")
            return
        if d.shortcut.name != "none" and not task_spec(data.task).labelled:
            labelled = [s.name for s in TASK_SPECS.values() if s.labelled]
            raise ValueError(f"distill.{name}.shortcut.name: the anti-shortcut penalty needs {' or '.join(labelled)} "
                             "data (data.task)")
        if d.shortcut.name != "none" and d.shortcut.weight == 0:
            raise ValueError(f"distill.{name}.shortcut.weight: {d.shortcut.name} is chosen but its weight is 0")
        if d.loss.alpha > 0 and all(t.kd == "none" for t in d.teachers.values()) and d.teachers:
            raise ValueError(f"distill.{name}.loss.alpha: no teacher has a KD term (every kd is none); set alpha to 0")

    def student_source_ref(self) -> str | None:
        """The model reference the student is cut from, for checks made before any stage runs: for
        `teacher_sft.NAME` the teacher's own reference (SFT changes its weights, not its layers or vocabulary)."""
        source = self.student.source_teacher()
        return self.teachers[source].path if source is not None else self.student.init_from

    def roles(self) -> list[str]:
        """Every model role this recipe can produce, in report order."""
        roles = [f"teacher.{t}" for t in self.teachers]
        roles += [f"teacher_sft.{t}" for t in self.teachers]
        roles += ["student_base", "student_sft"]
        return roles + [f"distilled.{d}" for d in self.distill]

    def config_hash(self) -> str:
        return config_hash(self.model_dump(mode="json", exclude={"quick", "description"}))
