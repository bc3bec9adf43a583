"""Recipes: YAML files validated by typed config classes.

A recipe is data. `load_recipe` reads the YAML, applies `--quick` and `--set a.b=c` overrides, and
validates the result against `Recipe`; unknown keys and wrong types are refused with an error that
names the file, the field path and (when the field came from the file) the line.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe that cannot be found, parsed or validated. The message names the file and field."""


class Strict(BaseModel):
    """Base for config classes: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------- data
class SplitConfig(Strict):
    """Deterministic split by context, so no context appears in two splits."""

    validation: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of contexts for validation (early stopping)."""
    test: float = Field(0.2, ge=0.0, lt=1.0)
    """Fraction of contexts held out for the evaluation."""
    seed: int = 1234
    """Seed of the context shuffle; independent of the training seed so splits stay fixed."""

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError("validation + test must leave some contexts for training")
        return self


class DataConfig(Strict):
    source: str = "embedded:telecom-qa"
    """`embedded:telecom-qa`, a TeleQuAD JSON file, a JSONL file, or `hf:NAME[:CONFIG]` (a datasets id)."""
    format: Literal["auto", "telequad", "jsonl", "squad", "hf"] = "auto"
    """How to read `source`; `auto` picks from the name and content."""
    split: SplitConfig = SplitConfig()
    max_train: int | None = Field(None, ge=1)
    """Cap on training examples (after the split)."""
    max_validation: int | None = Field(None, ge=1)
    max_test: int | None = Field(None, ge=1)
    include_impossible: bool = True
    """TeleQuAD flags some answerable questions `is_impossible`; they carry answers, so keep them."""
    prompt_template: str = "Context: {context}\nQuestion: {question}\nAnswer:"
    """Prompt built from each example; the answer follows after one space."""
    max_length: int = Field(384, ge=16)
    """Prompt + answer tokens; the context is cut (never the question or answer) to fit."""

    @field_validator("prompt_template")
    @classmethod
    def _template_fields(cls, v: str) -> str:
        for key in ("{context}", "{question}"):
            if key not in v:
                raise ValueError(f"prompt_template must contain {key}")
        return v


# ------------------------------------------------------------------------------------- models
class ModelConfig(Strict):
    path: str
    """`embedded:NAME`, a local Hugging Face folder, or a hub id."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class StudentConfig(Strict):
    """The student: a model of its own, or layers taken from a same-family model."""

    path: str | None = None
    """A model to use as is (`embedded:NAME`, folder or hub id); leave empty to prune `init_from`."""
    init_from: str | None = None
    """Model whose layers initialise the student (every k-th layer, as DistilBERT did)."""
    num_layers: int | None = Field(None, ge=1)
    """How many evenly spaced layers of `init_from` to keep."""
    layers: list[int] | None = None
    """Explicit layer indices of `init_from` to keep (instead of `num_layers`)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @model_validator(mode="after")
    def _one_source(self) -> StudentConfig:
        if (self.path is None) == (self.init_from is None):
            raise ValueError("set exactly one of student.path or student.init_from")
        if self.init_from is not None and (self.num_layers is None) == (self.layers is None):
            raise ValueError("student.init_from needs exactly one of num_layers or layers")
        return self


# ----------------------------------------------------------------------------------- training
class LoraConfig(Strict):
    """LoRA through peft. Defaults are the telecom paper's (rank 256, alpha 8, dropout 0.1)."""

    r: int = Field(256, ge=1)
    alpha: float = Field(8.0, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class EarlyStoppingConfig(Strict):
    patience: int = Field(3, ge=1)
    """Validations without an improvement of at least `min_delta` before stopping."""
    min_delta: float = Field(0.01, ge=0.0)


class TrainConfig(Strict):
    """One training loop serves SFT and KD."""

    epochs: int = Field(50, ge=1)
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps; stops before `epochs` when reached."""
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """`auto`: bf16 autocast on a GPU that supports it, fp32 elsewhere."""
    eval_every: int | None = Field(None, ge=1)
    """Validate every N optimizer steps; empty means once per epoch."""
    checkpoint_every: int = Field(50, ge=1)
    """Write a resumable checkpoint every N optimizer steps."""
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()
    seed: int = 0


class SFTStageConfig(Strict):
    enabled: bool = True
    lora: LoraConfig | None = LoraConfig()
    """Empty (null) trains all weights."""
    train: TrainConfig = TrainConfig()


class SFTConfig(Strict):
    teacher: SFTStageConfig = SFTStageConfig()
    student: SFTStageConfig = SFTStageConfig()


class KDLossConfig(Strict):
    name: str = "forward_kl"
    """A registered divergence: forward_kl, reverse_kl, js, skew_forward_kl, skew_reverse_kl."""
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of the KD term; CE on the gold answer gets 1 - alpha."""
    temperature: float = Field(2.0, gt=0)
    skew_lambda: float = Field(0.1, ge=0.0, le=1.0)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from distill2edge.losses import kd_loss_names

        if v not in kd_loss_names():
            raise ValueError(f"unknown KD loss {v!r}; registered: {', '.join(kd_loss_names())}")
        return v


class DSKDConfig(Strict):
    """Dual-space KD (Zhang et al., EMNLP 2024): projectors between the two hidden spaces."""

    projector_lr: float = Field(1e-3, gt=0)
    """Learning rate of the projectors (the student keeps `train.lr`); the paper trains them faster."""
    projector: Literal["linear", "mlp"] = "linear"
    init: Literal["auto", "identity", "random"] = "auto"
    """`auto`: a square linear projector starts as the identity, others at random."""
    chunk_tokens: int = Field(256, ge=1)
    """Positions per chunk for full-vocabulary logits (bounds memory with large teacher vocabularies)."""


class DistillConfig(Strict):
    """One distillation: a teacher, a starting student, an algorithm and its training."""

    teacher: str | None = None
    """Name of a model in `teachers`; may be left out when the recipe has a single teacher."""
    teacher_state: Literal["base", "sft"] = "sft"
    """Distil from the base teacher or its SFT version."""
    student: str = "sft"
    """Start from the `base` student, its `sft` version, or the result of an earlier distillation (its name)."""
    algorithm: str = "vanilla"
    """`vanilla` (one vocabulary), `dskd` (dual-space KD; cross-model attention when the vocabularies
    differ) or `dskd_cma` (cross-model attention always)."""
    loss: KDLossConfig = KDLossConfig()
    lora: LoraConfig | None = None
    """Empty (null) trains all student weights."""
    train: TrainConfig = TrainConfig()
    dskd: DSKDConfig = DSKDConfig()

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: str) -> str:
        from distill2edge.train.algorithms import algorithm_names

        if v not in algorithm_names():
            raise ValueError(f"unknown distillation algorithm {v!r}; registered: {', '.join(algorithm_names())}")
        return v


class EvaluateConfig(Strict):
    models: list[str] = ["all"]
    """Models to evaluate: `all` (every model the recipe produces), or roles: `teacher.NAME`,
    `teacher_sft.NAME`, `student_base`, `student_sft`, `distilled.NAME`."""
    metrics: list[str] = ["exact_match", "token_f1", "rouge_l"]
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)


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


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_NAMED_FIELD = re.compile(r"^Value error, ([A-Za-z0-9_.-]+): (.*)$", re.DOTALL)


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
    distill: dict[str, DistillConfig] = Field(default_factory=lambda: {"distilled": DistillConfig()})
    """Distillations by name, run in order; each yields the model `distilled.NAME`."""
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    bench: BenchConfig = BenchConfig()
    """Benchmarks the teachers (torch) against the exported student's formats and the student in torch."""
    quick: dict[str, Any] = {}
    """Overrides (dotted key -> value, `*` matches every key of a section) applied by `--quick`."""

    @model_validator(mode="after")
    def _references(self) -> Recipe:
        for what, names in (("teachers", self.teachers), ("distill", self.distill)):
            for n in names:
                if not _NAME.match(n):
                    raise ValueError(f"{what}: name {n!r} must be letters, digits, '-' or '_'")
        earlier: list[str] = []
        for name, d in self.distill.items():
            if d.teacher is None:
                if len(self.teachers) != 1:
                    raise ValueError(f"distill.{name}.teacher: name one of the teachers ({', '.join(self.teachers)})")
                d.teacher = next(iter(self.teachers))
            elif d.teacher not in self.teachers:
                raise ValueError(f"distill.{name}.teacher: {d.teacher!r} is not among teachers ({', '.join(self.teachers)})")
            if d.student not in ("base", "sft", *earlier):
                raise ValueError(
                    f"distill.{name}.student: {d.student!r} must be base, sft or an earlier distillation "
                    f"({', '.join(earlier) or 'none before this one'})"
                )
            earlier.append(name)
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

    def roles(self) -> list[str]:
        """Every model role this recipe can produce, in report order."""
        roles = [f"teacher.{t}" for t in self.teachers]
        roles += [f"teacher_sft.{t}" for t in self.teachers]
        roles += ["student_base", "student_sft"]
        return roles + [f"distilled.{d}" for d in self.distill]

    def config_hash(self) -> str:
        return config_hash(self.model_dump(mode="json", exclude={"quick", "description"}))


# ------------------------------------------------------------------------------- loading
def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able value (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def recipes_dir() -> Path:
    """The recipes shipped inside the package (the repository's `recipes/` points here)."""
    return Path(str(resources.files("distill2edge") / "recipes"))


def list_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def find_recipe(name_or_path: str) -> Path:
    """A recipe name (`telecom-qa`) or a path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return path
    known = list_recipes()
    if name_or_path not in known:
        raise RecipeError(f"unknown recipe {name_or_path!r}; available: {', '.join(known) or '(none)'}")
    return known[name_or_path]


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", value) with the value parsed as YAML (numbers, bools, lists, null)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set expects key.path=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in nested dicts, creating levels that are missing (validation judges them).

    A `*` part stands for every key of the section at that level, e.g. `distill.*.train.max_steps`.
    """
    _apply(data, key.split("."), value, key, 0)


def _apply(node: dict[str, Any], parts: list[str], value: Any, key: str, depth: int) -> None:
    part = parts[depth]
    if part == "*":
        for name, child in node.items():
            if not isinstance(child, dict):
                raise RecipeError(f"--set {key}: {'.'.join(parts[:depth] + [name])} is a value, not a section")
            if depth == len(parts) - 1:
                raise RecipeError(f"--set {key}: '*' cannot be the last part")
            _apply(child, parts, value, key, depth + 1)
        return
    if depth == len(parts) - 1:
        node[part] = value
        return
    child = node.get(part)
    if child is None:
        child = node[part] = {}
    if not isinstance(child, dict):
        raise RecipeError(f"--set {key}: {'.'.join(parts[: depth + 1])} is a value, not a section")
    _apply(child, parts, value, key, depth + 1)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML mapping tree to its 1-based line, for error messages."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = prefix + (str(key_node.value),)
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[prefix + (str(i),)] = item.start_mark.line + 1
                walk(item, prefix + (str(i),))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def format_validation_error(err: ValidationError, source: str, text: str | None = None) -> str:
    """One line per problem: `file:line: field.path: message`."""
    lines = _key_lines(text) if text else {}
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = e["msg"]
        named = _NAMED_FIELD.match(msg) if not loc else None
        if named:  # a cross-field check names its field at the start of the message
            loc, msg = tuple(named.group(1).split(".")), named.group(2)
        # Walk up to the closest key that exists in the file (a missing key has no line of its own).
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        where = f"{source}:{line}" if line else source
        field = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg += f" (got {e['input']!r})"
        out.append(f"{where}: {field}: {msg}")
    return "invalid recipe:\n  " + "\n  ".join(out)


def _unshared(node: Any) -> Any:
    """A copy in which no dict or list is shared. YAML aliases (`*name`) load as one shared object, so
    `--set` on one distillation would otherwise change every section that reused the anchor."""
    if isinstance(node, dict):
        return {k: _unshared(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshared(v) for v in node]
    return node


def load_recipe(
    name_or_path: str, overrides: list[str] | None = None, quick: bool = False
) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError with file, line and field."""
    path = find_recipe(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of sections, got {type(data).__name__}")
    data = _unshared(data)
    if quick:
        quick_overrides = data.get("quick") or {}
        if not isinstance(quick_overrides, dict):
            raise RecipeError(f"{path}: quick: must be a mapping of dotted keys to values")
        for key, value in quick_overrides.items():
            apply_override(data, str(key), value)
    for text_override in overrides or []:
        apply_override(data, *parse_override(text_override))
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, str(path), text)) from None
