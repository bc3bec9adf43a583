"""`evaluate_models`: answer a QA set with several models and score every answer, writing one folder.

This is what `distill2edge evaluate` runs (the command only parses its arguments and prints) and what
`distill2edge.evaluate` (the public API) calls. Writes, only when every model is done (the folder
appears complete or not at all):

    OUT/summary.json           data, metrics, judge, and per model: metric means, latency, folder
    OUT/summary.md             the same as a Markdown table
    OUT/<label>/predictions.jsonl   id, prompt, question, reference(s), prediction, latency per question
    OUT/<label>/scores.csv          question x metric
    OUT/<label>/summary.json
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_METRICS = ("qa,ngram,embedding",)
"""The metric groups scored when none are named."""


class OutputExistsError(ValueError):
    """The output folder exists and is not empty: evaluation never writes into a folder it did not make."""


class PromptSettingsError(ValueError):
    """The models to score come from recipe runs with different prompt settings, and none were given."""


def model_label(spec: str, taken: set[str]) -> tuple[str, str]:
    """(folder label, model reference) from `[LABEL=]REF`; labels are made unique and file-safe."""
    label, sep, ref = spec.partition("=")
    if not sep or "/" in label or not label:
        label, ref = Path(spec.rstrip("/")).name.removeprefix("embedded:") or "model", spec
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label)
    base, k = label, 2
    while label in taken:
        label, k = f"{base}-{k}", k + 1
    taken.add(label)
    return label, ref


def recipe_prompt_settings(refs: Sequence[str]) -> tuple[int | None, str | None, str | None]:
    """(max_length, prompt_template, manifest path) of the recipe run that trained the local models among
    `refs` (`[LABEL=]REF`), read from the run manifest above each model folder; (None, None, None) when
    none has one. A model is best scored at the prompt length it was trained at: the recipe cuts contexts
    to `data.max_length`, and a longer prompt changes its answers. Raises PromptSettingsError when two models'
    recipes disagree: the caller must then choose the settings."""
    from distill2edge.export.lineage import find_manifest

    found: dict[tuple[int, str], str] = {}
    for spec in refs:
        ref = model_label(spec, set())[1]
        folder = Path(ref)
        manifest = find_manifest(folder.resolve()) if folder.is_dir() else None
        if manifest is None:
            continue
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))["config"]["data"]
            found.setdefault((int(data["max_length"]), str(data["prompt_template"])), str(manifest))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a manifest of another shape: the model is scored at the defaults
    if len(found) > 1:
        shown = "; ".join(f"{path}: max_length {n}" for (n, _t), path in found.items())
        raise PromptSettingsError(f"the models come from recipes with different prompt settings ({shown}); "
                         "choose --max-length and --template")
    if not found:
        return None, None, None
    (n, template), path = next(iter(found.items()))
    return n, template, path


def summary_markdown(record: dict[str, Any]) -> str:
    """summary.md: one row per model, one column per metric, plus ms per answer."""
    metrics = record["metrics"]
    lines = [f"# Evaluation on {record['data']} ({record['split']} split, {record['n']} questions)", ""]
    if record.get("judge"):
        lines += [f"Oracle-LLM metrics judged by `{record['judge']}`.", ""]
    lines.append("| Model | " + " | ".join(metrics) + " | ms / answer |")
    lines.append("|---|" + "---|" * (len(metrics) + 1))
    for label, m in record["models"].items():
        lines.append(f"| {label} | " + " | ".join(f"{m[k]:.4f}" for k in metrics) + f" | {m['latency_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def evaluate_models(
    models: Sequence[str],
    out: str | os.PathLike[str],
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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Answer the `split` ("test" or "all") of `data` with each of `models` (`[LABEL=]REF`) and score
    the answers with `metrics` (names or groups, each entry may be comma-separated; default
    qa,ngram,embedding). `template` and `max_length` default to those of the recipe run that trained
    the models (`recipe_prompt_settings`), else, like `data`, to the recipe defaults (`DataConfig`). Writes `out` (which must be missing or empty) atomically and returns the content of
    its summary.json. Raises OutputExistsError, PromptSettingsError, JudgeError, MetricUnavailableError, DataError,
    ModelLoadError or ValueError (unknown metric); nothing is written then."""
    from distill2edge.atomic import write_dir_atomic
    from distill2edge.config import DataConfig

    defaults = DataConfig()
    data = defaults.source if data is None else data
    if template is None or max_length is None:
        run_length, run_template, manifest = recipe_prompt_settings(models)
        if manifest is not None:
            log(f"prompt settings of the models' recipe run ({manifest}): "
                f"max_length {run_length if max_length is None else max_length}")
        template = template if template is not None else run_template or defaults.prompt_template
        max_length = max_length if max_length is not None else run_length or defaults.max_length
    if split not in ("test", "all"):
        raise ValueError(f"split {split!r}: choose test or all")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"--out {out} exists and is not an empty folder; choose a new one")
    holder: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        record = _evaluate_all(
            list(models), tmp, data=data, metrics=metrics, judge=judge, judge_api_key_env=judge_api_key_env,
            split=split, max_questions=max_questions, template=template, max_length=max_length,
            max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype, device=device,
            progress=progress, log=log,
        )
        (tmp / "summary.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(record), encoding="utf-8")
        holder["record"] = record

    if out.exists():
        out.rmdir()  # empty: replaced by the complete folder
    write_dir_atomic(out, write)
    return holder["record"]


def _evaluate_all(
    models: list[str], out: Path, *, data: str, metrics: Sequence[str] | None, judge: str | None,
    judge_api_key_env: str, split: str, max_questions: int | None, template: str, max_length: int,
    max_new_tokens: int, batch_size: int, dtype: str, device: str, progress: bool, log: Callable[[str], None],
) -> dict[str, Any]:

    from distill2edge.config import DataConfig
    from distill2edge.data.qa import load_examples, prepare_splits
    from distill2edge.evaluate.generate import evaluate_model
    from distill2edge.evaluate.registry import metric_group, resolve_metrics
    from distill2edge.models import DTYPES, load_model
    from distill2edge.models.placement import resolve_device

    names = resolve_metrics([n.strip() for arg in (metrics or DEFAULT_METRICS) for n in arg.split(",") if n.strip()])
    cfg = DataConfig(source=data, prompt_template=template, max_length=max_length)
    examples = prepare_splits(cfg)["test"] if split == "test" else load_examples(cfg)
    if max_questions:
        examples = examples[:max_questions]
    device = str(resolve_device(device))
    grader = None
    if any(metric_group(n) == "llm" for n in names):
        from distill2edge.evaluate.judge import DEFAULT_JUDGE, make_judge

        grader = make_judge(judge or DEFAULT_JUDGE, device=device, api_key_env=judge_api_key_env)
        log(f"judge: {grader.name}")
    record: dict[str, Any] = {"data": data, "split": split, "n": len(examples), "metrics": names,
                              "judge": grader.name if grader else None, "max_length": max_length,
                              "template": template, "models": {}}
    taken: set[str] = set()
    for spec in models:
        label, ref = model_label(spec, taken)
        model, tok = load_model(ref, dtype=DTYPES[dtype], device=device)
        summary = evaluate_model(
            model, tok, examples, out / label, template=template, max_length=max_length,
            max_new_tokens=max_new_tokens, metrics=names, batch_size=batch_size, device=device,
            progress=progress, desc=f"evaluate {label}", judge=grader,
        )
        summary.update(model=ref, dir=label)
        (out / label / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        record["models"][label] = summary
        log(f"{label}: " + "  ".join(f"{m} {summary[m]:.4f}" for m in names))
        if summary["answers_cut"]:
            log(f"warning: {label}: cutting the contexts to max_length {max_length} dropped the reference answer "
                f"from {summary['answers_cut']} of {len(examples)} prompts; a larger --max-length keeps more")
        del model
    return record
