"""The run report: a Markdown table of every evaluated model, training summaries and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill2edge.atomic import write_text_atomic
from distill2edge.config import Recipe
from distill2edge.report.figures import report_axes, save_figure
from distill2edge.report.verdict import (
    curve_lines,
    f1_curve_lines,
    f1_curves,
    learning_curves,
    plot_f1_curves,
    plot_learning_curves,
    verdict_lines,
)
from distill2edge.tasks import get_task
from distill2edge.tasks.spec import TaskSpec

_METRIC_LABELS = {
    "exact_match": "EM", "token_f1": "F1", "rouge_l": "ROUGE-L", "answer_ce": "answer CE (nats)",
    "accuracy": "Accuracy", "macro_f1": "macro-F1",
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def results_table(
    models: dict[str, dict[str, Any]], metric_names: list[str], spec: TaskSpec, labels: list[str] | None = None,
) -> str:
    """One row per evaluated model; the latency column as the task (`spec`) times it. With `labels`
    (classification) a column shows the share of test sentences predicted as each label (a collapsed
    model predicts one)."""
    if any("answer_ce" in r for r in models.values()) and "answer_ce" not in metric_names:
        metric_names = [*metric_names, "answer_ce"]
    head = ["Role", "Params (M)", *(_METRIC_LABELS.get(m, m) for m in metric_names), spec.latency_column]
    head += [f"predicted ({' / '.join(labels)})"] if labels else []
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in models.values():
        cells = [r["role"], f"{r.get('params', 0) / 1e6:.1f}", *(_fmt(r.get(m)) for m in metric_names)]
        cells.append(_fmt(r.get("latency_ms"), spec.latency_digits))
        if labels:
            cells.append(" / ".join(_fmt(r.get(f"predicted/{c}"), 2) for c in labels))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def kept_fraction(models: dict[str, dict[str, Any]], metric: str, distilled: str, teachers: list[str]) -> str | None:
    """How much of its (best) teacher's score (SFT version if evaluated, else base) a distilled student keeps."""
    found = [models.get(f"teacher_sft.{t}") or models.get(f"teacher.{t}") for t in teachers]
    scored = [t for t in found if t and t.get(metric)]
    s = models.get(f"distilled.{distilled}")
    if not scored or not s:
        return None
    t = max(scored, key=lambda r: r[metric])
    return (
        f"`{distilled}` keeps {100 * s[metric] / t[metric]:.0f}% of the {t['role']}'s "
        f"{_METRIC_LABELS.get(metric, metric)} with {100 * s['params'] / t['params']:.0f}% of its parameters, "
        f"running {t['latency_ms'] / max(s['latency_ms'], 1e-9):.1f}x as fast (torch on this machine, as timed by "
        "the evaluation stages; a reused stage keeps the timing of the run that made it)."
    )


def answers_cut_line(models: dict[str, dict[str, Any]], max_length: int) -> str | None:
    """The report's sentence on test prompts whose context cut dropped the reference answer (each model's
    `answers_cut`; trimmed vocabularies tokenize differently, so counts can differ), or None when none did."""
    cuts = sorted({m["answers_cut"] for m in models.values() if m.get("answers_cut")})
    if not cuts:
        return None
    n = max(int(m.get("n") or 0) for m in models.values())
    count = str(cuts[0]) if len(cuts) == 1 else f"{cuts[0]}-{cuts[-1]}"
    return (f"Cutting the contexts to `data.max_length` {max_length} dropped the reference answer from {count} of "
            f"{n} test prompts (`answers_cut`): no model can read it there; a larger `max_length` keeps more.")


def exports_table(exports: dict[str, dict[str, Any]]) -> list[str]:
    """One row per export stage: the artifact, its size and bits per weight, and the parity figures."""
    if not exports:
        return []
    rows = [
        "## Exports", "",
        "| Model | Profile | Format | Status | Size (MB) | Bits/weight | Gate | Mean KLD | Same top token | max abs dlogit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in exports.values():
        gates = e.get("gates") or {"–": {}}
        for gate, g in gates.items():
            size = f"{e['bytes'] / 1e6:.1f}" if e.get("bytes") else "–"
            status = e["status"] + (f" ({e['reason']})" if e.get("reason") else "")
            rows.append(
                f"| {e['role']} | {e['profile']} | {e['format']} | {status} | {size} | {_fmt(e.get('effective_bpw'), 2)} | "
                f"{gate} | {_fmt(g.get('mean_kld'), 4)} | {_fmt(g.get('same_top_token'))} | {_fmt(g.get('max_abs_logit_diff'), 4)} |"
            )
    return rows + ["", ("Exports live in `stages/export_*/`; a GGUF's parity record, model card and Ollama Modelfile "
                   "are named after it (`model.q8_0.parity.json`, `.md`, `.Modelfile`), an ONNX folder holds its "
                   "own `parity.json` and `README.md`; a failed gate exports nothing and leaves its figures in `gate_failure.json`."), ""]


def _setup_lines(recipe: Recipe) -> list[str]:
    student = recipe.student
    lines = ["Teachers: " + ", ".join(f"`{n}` = `{t.path}`" for n, t in recipe.teachers.items()) + ". Student: " + (
        f"`{student.path}`." if student.path else
        f"`{student.init_from}` cut to {student.layer_count()} layers."
    ), "", "| Distillation | Algorithm | Teacher | From student | Loss | alpha | T | Extra terms | Data |",
        "|---|---|---|---|---|---|---|---|---|"]
    for name, d in recipe.distill.items():
        teachers = (", ".join(f"{t} w={w.weight:g} kd={w.kd}" for t, w in d.teachers.items()) if d.teachers
                    else str(d.teacher))
        extra = []
        if d.hidden.weight > 0:
            extra.append(f"hidden MSE g={d.hidden.weight:g} ({d.hidden.layer_map if isinstance(d.hidden.layer_map, str) else 'explicit'} map)")
        if d.shortcut.name != "none":
            extra.append(f"{d.shortcut.name} x{d.shortcut.weight:g}")
        if d.loss.hinton_t2:
            extra.append("KD x T² (loss.hinton_t2)")
        data = f"`{d.data.source}`" if d.data is not None and d.data != recipe.data else "recipe data"
        lines.append(
            f"| {name} | {d.algorithm} | {teachers} ({d.teacher_state}) | {d.student} | {d.loss.name} | "
            f"{d.loss.alpha} | {d.loss.temperature} | {'; '.join(extra) or '–'} | {data} |"
        )
    return lines


def plot_results(models: dict[str, dict[str, Any]], metric_names: list[str], path: Path) -> None:
    """Bar chart of each model's test scores, one bar per metric, to `path`."""
    roles = [r["role"] for r in models.values()]
    with report_axes() as (fig, ax):
        width = 0.8 / max(len(metric_names), 1)
        for j, m in enumerate(metric_names):
            xs = [i + j * width for i in range(len(roles))]
            ax.bar(xs, [r.get(m, 0.0) for r in models.values()], width, label=_METRIC_LABELS.get(m, m))
        ax.set_xticks([i + width * (len(metric_names) - 1) / 2 for i in range(len(roles))])
        ax.set_xticklabels(roles, rotation=15, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("score (test split)")
        ax.legend()
        ax.set_title("Accuracy of teacher and students")
        save_figure(fig, path)


def plot_losses(run_dir: Path, training: dict[str, Any], path: Path) -> bool:
    """Training and validation loss of every training stage to `path`; False (nothing written) without histories."""
    with report_axes() as (fig, ax):
        drawn = False
        for stage in training:
            hist_file = run_dir / "stages" / stage / "model" / "train_history.json"
            if not hist_file.exists():
                continue
            history = json.loads(hist_file.read_text())["history"]
            steps = [h["step"] for h in history if "loss" in h]
            ax.plot(steps, [h["loss"] for h in history if "loss" in h], label=f"{stage} train")
            val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
            if val:
                ax.plot(*zip(*val), "o--", label=f"{stage} validation")
            drawn = True
        if drawn:
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("loss")
            ax.legend(fontsize=8)
            ax.set_title("Training losses")
            save_figure(fig, path)
    return drawn


def write_report(run_dir: Path, recipe: Recipe, metrics: dict[str, Any], manifest: dict[str, Any]) -> Path:
    """Write report.md (and its PNG plots) into run_dir; returns the report path."""
    models = metrics["models"]
    names = list(recipe.evaluate.metrics)
    task = get_task(recipe.data.task)
    plot_results(models, names, run_dir / "accuracy.png")
    has_losses = plot_losses(run_dir, metrics["training"], run_dir / "losses.png")
    d = metrics["data"]
    lines = [
        f"# {recipe.name}",
        "",
        recipe.description.strip(),
        "",
        *verdict_lines(recipe, metrics, run_dir),
        task.data_line(recipe.data, d),
        *_setup_lines(recipe),
        "",
        "## Results on the test split",
        "",
        results_table(models, names, task.spec, task.report_labels(recipe.data)),
        "",
    ]
    metric = next((m for m in ("token_f1", "macro_f1", "rouge_l", *names) if m in names), None)
    sentences = [kept_fraction(models, metric, n, d.teacher_names()) for n, d in recipe.distill.items()] if metric else []
    sentences.append(answers_cut_line(models, recipe.data.max_length))
    lines += [f"- {s}" for s in sentences if s]
    lines += [""] if any(sentences) else []
    lines += ["![accuracy](accuracy.png)", ""]
    lines += exports_table(metrics.get("exports") or {})
    bench_md = run_dir / "stages" / "bench" / "bench.md"
    if metrics.get("bench") and bench_md.exists():
        body = bench_md.read_text(encoding="utf-8").removeprefix("# Benchmark").strip()
        lines += ["## Benchmark: teachers against the exported student", "", body, ""]
        for png in ("accuracy_latency.png", "speedup.png"):
            if (bench_md.parent / png).exists():
                lines += [f"![{png[:-4]}](stages/bench/{png})", ""]
    lines += ["## Training", "", ("| Stage | Steps | First loss | Last loss | "
              "Best val loss | Trainable params | Seconds |"), "|---|---|---|---|---|---|---|"]
    for stage, t in metrics["training"].items():
        lines.append(
            f"| {stage} | {t.get('steps')} | {_fmt(t.get('first_loss'))} | {_fmt(t.get('last_loss'))} | "
            f"{_fmt(t.get('best_val_loss'))} | {t.get('trainable_params', 0) / 1e6:.2f}M | {_fmt(t.get('train_seconds'), 0)} |"
        )
    curves = learning_curves(run_dir, metrics)
    if plot_learning_curves(curves, run_dir / "learning_curves.png"):
        lines += ["", "Validation answer cross-entropy (nats per gold answer token) of each stage; a student stage "
                  "that starts from the cut student begins at its untrained value (step 0):", "", *curve_lines(curves),
                  "", "![learning curves](learning_curves.png)"]
    f1 = f1_curves(run_dir, metrics)
    if plot_f1_curves(f1, run_dir / "f1_curves.png"):
        lines += ["", "Validation token F1 of greedy answers (`train.eval_answers` questions) against minutes of "
                  "training:", "", *f1_curve_lines(f1), "", "![F1 against minutes](f1_curves.png)"]
    if has_losses:
        lines += ["", "![losses](losses.png)"]
    env = manifest.get("environment", {})
    libs = manifest.get("libraries", {})
    lines += [
        "",
        "## Run",
        "",
        (f"Wall time {metrics.get('wall_time_s')} s on {env.get('processor')} ({env.get('cpu_count')} cores, "
        f"{env.get('torch_threads')} torch threads), device `{manifest.get('device')}`, seed {manifest.get('seed')}, "
        f"config hash `{manifest.get('config_hash')}`."),
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()) + ".",
        "Per-question predictions and scores: `stages/evaluate_*/predictions.jsonl` and `scores.csv`.",
        "",
    ]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
