"""The public Python API: one function per CLI command, running the code the command runs.

    import distill2edge as d2e

    recipe = d2e.load_recipe("telecom-qa", ["distill.*.train.epochs=1"], quick=True)
    run = d2e.run_recipe(recipe, "runs/tq")                      # distill2edge recipe telecom-qa --quick ...
    gguf = d2e.export_gguf(run.models["distilled.fullseq"], "out/student.q8_0.gguf", quant="q8_0")
    onnx = d2e.export_onnx(run.models["distilled.fullseq"], "out/student-onnx")
    bench = d2e.run_bench(["teacher=embedded:smollm2-135m-instruct", f"student={gguf.path}"], "out/bench")
    scores = d2e.evaluate_models(["embedded:smollm2-135m-instruct"], "out/eval", metrics=["qa"])

| function | command | returns |
|---|---|---|
| `load_recipe` | `distill2edge recipe show NAME [--set ...] [--quick]` | the validated `Recipe` |
| `run_recipe` | `distill2edge recipe NAME [--out DIR]` | `RecipeRun`: run folder, metrics.json, report |
| `export_gguf` | `distill2edge export gguf MODEL --out FILE` | `ExportResult`: file, sidecars, parity record |
| `export_onnx` | `distill2edge export onnx MODEL --out DIR` | `ExportResult`: folder, sidecars, parity record |
| `run_bench` | `distill2edge bench MODEL... --out DIR` | the content of bench.json |
| `evaluate_models` | `distill2edge evaluate MODEL... --out DIR` | `Evaluation`: folder, summary.json, scores |

The CLI commands call the same functions underneath (`config.load_recipe`, `run_folder.default_run_dir`
then `pipeline.run_recipe`, `export.gguf.export_gguf`, `export.onnx.export_onnx`,
`bench.api.run_bench_specs`, `evaluate.run.evaluate_models`), so a call here writes the same files as
the command with the same arguments. Where a command prints `error: ...` and exits non-zero, the
function raises (RecipeError, DataError, RunFolderError, ExportError, ParityError, BenchError,
OutputExistsError, ...); where a command prints progress, the function passes it to `log`.

Importing this module is cheap: torch and the heavy libraries load on the first call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill2edge.config import Recipe

__all__ = [
    "Evaluation", "ExportResult", "RecipeRun",
    "evaluate_models", "export_gguf", "export_onnx", "load_recipe", "run_bench", "run_recipe",
]

PathLike = str | os.PathLike[str]
Log = Callable[[str], None]


@dataclass(frozen=True)
class RecipeRun:
    """A finished recipe run."""

    out_dir: Path
    """The run folder (manifest.json, stages/, metrics.json, report.md)."""
    metrics: dict[str, Any]
    """The content of metrics.json (stage metrics, evaluations, exports, bench, wall_time_s)."""

    @property
    def report(self) -> Path:
        """report.md of the run."""
        return self.out_dir / "report.md"

    @property
    def models(self) -> dict[str, str]:
        """The evaluated models by role (`teacher_sft.NAME`, `student_sft`, `distilled.NAME`, ...): a model
        folder of the run, or the reference the recipe names (`embedded:NAME`, a hub id)."""
        return {role: str(r["model"]) for role, r in (self.metrics.get("models") or {}).items()}


@dataclass(frozen=True)
class ExportResult:
    """An export that passed its parity gates (a failing one raises ParityError and writes nothing)."""

    path: Path
    """The GGUF file or the ONNX folder."""
    format: str
    """`gguf` or `onnx`."""
    record: dict[str, Any]
    """The parity record (also written as the parity.json sidecar): gates, thresholds, sizes, profile."""
    files: dict[str, Path] = field(default_factory=dict)
    """Sidecars by kind: `parity`, `card` (model card) and, for GGUF, `modelfile` (Ollama)."""

    @property
    def gates(self) -> dict[str, dict[str, Any]]:
        """Per gate (`f32`, the quantized type, `fp32`, `int8`...): max |dlogit|, mean KLD, same top token,
        passed, failures."""
        return dict(self.record.get("gates", {}))

    @property
    def passed(self) -> bool:
        """The parity verdict: every gate passed."""
        return all(g.get("passed", False) for g in self.gates.values())


@dataclass(frozen=True)
class Evaluation:
    """An evaluation folder and its summary."""

    out_dir: Path
    """The folder: summary.json, summary.md and one folder per model (predictions.jsonl, scores.csv)."""
    summary: dict[str, Any]
    """The content of summary.json: data, split, n, metrics, judge and per model label its means."""

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """{model label: {metric: mean score}} for the metrics asked for."""
        names = self.summary["metrics"]
        return {label: {m: float(s[m]) for m in names} for label, s in self.summary["models"].items()}


def load_recipe(name_or_path: PathLike, overrides: Sequence[str] | None = None, quick: bool = False) -> Recipe:
    """Read, override and validate a recipe: a shipped name (`telecom-qa`) or a YAML file.

    `overrides` are `--set` strings (`"distill.*.train.epochs=1"`, values parsed as YAML); `quick` applies
    the recipe's own `quick:` section. Equal to `distill2edge recipe show NAME --set ... [--quick]`, which
    prints this recipe as YAML. Raises RecipeError (file:line:field, or the override at fault).
    """
    from distill2edge.config import load_recipe as load

    return load(os.fspath(name_or_path), list(overrides or []), quick=quick)


def run_recipe(
    recipe: Recipe | PathLike,
    out: PathLike | None = None,
    *,
    overrides: Sequence[str] | None = None,
    quick: bool = False,
    progress: bool = True,
    log: Log = print,
) -> RecipeRun:
    """Run every stage of a recipe (data, SFT, distillation, evaluation, export, bench, report) in `out`.

    `recipe` is a `Recipe` (from `load_recipe`) or a name / YAML file, read with `overrides` and `quick`
    as `load_recipe` reads it. `out` defaults to `runs/<recipe>[-quick]-<time>`; an existing run folder is
    resumed, reusing its completed stages. Equal to `distill2edge recipe RECIPE [--out OUT] [--set ...]
    [--quick]`. Raises RecipeError, DataError, RunFolderError, ...; the folder keeps the stages done.
    """
    from distill2edge.config import Recipe
    from distill2edge.pipeline import run_recipe as run
    from distill2edge.run_folder import default_run_dir

    if isinstance(recipe, Recipe):
        if overrides:
            raise ValueError("overrides apply when the recipe is read: pass a name or file, or use load_recipe")
        loaded = recipe
    else:
        loaded = load_recipe(recipe, overrides, quick=quick)
    out_dir = default_run_dir(loaded.name, out, quick=quick)
    log(f"run folder: {out_dir}")
    metrics = run(loaded, out_dir, progress=progress, log=log)
    return RecipeRun(out_dir=out_dir, metrics=metrics)


def export_gguf(
    model: PathLike,
    out: PathLike,
    *,
    quant: str | None = None,
    profile: str | None = None,
    threads: int | None = None,
    embedding_type: str | None = None,
) -> ExportResult:
    """Export a Hugging Face model folder to one GGUF file, gated on parity with torch in llama.cpp.

    `quant` is one of f32, f16, bf16, q8_0, q6_k, q5_1, q5_0, q4_k_m, q4_1, q4_0, iq4_nl (default: the
    profile's, else q8_0); `profile` a shipped device profile (cpu-laptop, raspberry-pi-5, jetson-orin,
    android-onnx-int8) or a YAML file; `embedding_type` the token embedding's type (`auto` or a type).
    Writes `out` and its sidecars (`<stem>.parity.json`, `<stem>.md`, `<stem>.Modelfile`). Equal to
    `distill2edge export gguf MODEL --out OUT [--quant ...] [--profile ...] [--threads ...]
    [--embedding-type ...]`. Raises ParityError (a gate failed; nothing written, `.record` has the
    numbers: the command's exit 1) or ExportError (bad input: exit 2).
    """
    from distill2edge.export.card import sidecar_paths
    from distill2edge.export.gguf import export_gguf as export

    path = Path(out)
    record = export(model, path, quant=quant, profile=profile, threads=threads, embedding_type=embedding_type)
    files = {k: p for k, p in sidecar_paths(path, "gguf").items() if p.exists()}
    return ExportResult(path=path, format="gguf", record=record, files=files)


def export_onnx(
    model: PathLike,
    out: PathLike,
    *,
    int8: bool | None = None,
    int8_method: str | None = None,
    profile: str | None = None,
    optimize: bool | None = None,
    int4: bool | None = None,
) -> ExportResult:
    """Export a Hugging Face model folder to an ONNX folder (optimum, text generation with past key
    values; loads with `optimum.onnxruntime.ORTModelForCausalLM`), gated on parity with torch.

    `int8` quantizes the MatMul weights (default: the profile's), `int8_method` is `weight_only` or
    `dynamic`; `int4` 4-bit MatMul weights instead (the embedding and tied head int8); `optimize` fuses
    the graph with onnxruntime's transformer optimizer (default: the profile's, each); `profile` as for
    `export_gguf`. `out` must not exist; it gets `parity.json` and
    `README.md`. Needs the `onnx` extra. Equal to `distill2edge export onnx MODEL --out OUT [--int8]
    [--int8-method ...] [--int4] [--optimize] [--profile ...]`. Raises ParityError (exit 1) or ExportError (exit 2).
    """
    from distill2edge.export.card import sidecar_paths
    from distill2edge.export.onnx import export_onnx as export

    path = Path(out)
    record = export(
        model, path, int8=int8, profile=profile, int8_method=int8_method, optimize=optimize, int4=int4
    )
    files = {k: p for k, p in sidecar_paths(path, "onnx").items() if p.exists()}
    return ExportResult(path=path, format="onnx", record=record, files=files)


def run_bench(
    models: Sequence[str],
    out: PathLike,
    *,
    roles: Sequence[str] = (),
    data: str = "embedded:telecom-qa",
    split: str = "test",
    limit: int | None = None,
    template: str | None = None,
    max_length: int = 256,
    max_new_tokens: int = 24,
    threads: int = 2,
    warmup: int = 2,
    batch_size: int = 8,
    stop_at_answer: bool = False,
    isolate: bool = True,
    reference: str | None = None,
    same_bits: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Benchmark models side by side on the same questions: latency, decode tokens/s against the
    memory-bandwidth roofline, questions/s, peak RSS (`isolate`: each model in its own process), size,
    parameters and exact match / token F1 / ROUGE-L.

    `models` are `[ROLE=]PATH` specs: a Hugging Face folder (torch), an ONNX folder (onnxruntime), a
    .gguf file (llama.cpp) or embedded:NAME; `roles` label the specs without `ROLE=`, in order. Questions:
    `split` (all, train, validation, test) of `data`, the first `limit`. `template` defaults to the
    recipe's prompt template. Writes `out` (bench.json, bench.md, plots, predictions) and returns the
    content of bench.json. Equal to `distill2edge bench MODEL... --out OUT` with the same options
    (`isolate=False` is `--no-isolate`, `same_bits=True` is `--same-bits`: torch teachers also exported
    to the students' GGUF types, for equal-bits speed-ups). Raises BenchError or DataError (the command's exit 2).
    """
    from distill2edge.bench.api import run_bench_specs
    from distill2edge.bench.measure import DEFAULT_TEMPLATE

    return run_bench_specs(
        models, out, roles=roles, data=data, split=split, limit=limit,
        template=DEFAULT_TEMPLATE if template is None else template, max_length=max_length,
        max_new_tokens=max_new_tokens, threads=threads, warmup=warmup, batch_size=batch_size,
        stop_at_answer=stop_at_answer, isolate=isolate, reference=reference,
        same_bits=same_bits, log=log,
    )


def evaluate_models(
    models: Sequence[str],
    out: PathLike,
    *,
    data: str | None = None,
    metrics: Sequence[str] | None = None,
    judge: str | None = None,
    judge_api_key_env: str = "OPENAI_API_KEY",
    split: str = "test",
    max_questions: int | None = None,
    template: str | None = None,
    max_length: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    dtype: str = "float32",
    device: str = "auto",
    progress: bool = True,
    log: Log = print,
) -> Evaluation:
    """Answer a QA set with each model (greedy) and score every answer per question.

    `models` are `[LABEL=]REF` (embedded:NAME, a Hugging Face folder or a hub id); `data` defaults to
    embedded:telecom-qa, `split` is `test` (the split a recipe holds out) or `all`. `metrics` are names
    or groups (qa, ngram, embedding, llm, paper, all; default qa, ngram, embedding); the llm metrics are
    graded by `judge` (hf:REF, gguf:PATH, gguf:embedded:NAME, openai:MODEL@URL; default the largest
    embedded model). `template` and `max_length` default to the recipe's. Writes `out` (missing or
    empty) only when every model is done. Equal to `distill2edge evaluate MODEL... --out OUT` with the
    same options. Raises OutputExistsError, JudgeError, MetricUnavailableError, DataError, ValueError.
    """
    from distill2edge.evaluate.run import evaluate_models as run_evaluation

    summary = run_evaluation(
        models, out, data=data, metrics=metrics, judge=judge, judge_api_key_env=judge_api_key_env,
        split=split, max_questions=max_questions, template=template, max_length=max_length,
        max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype, device=device, progress=progress,
        log=log,
    )
    return Evaluation(out_dir=Path(out), summary=summary)
