"""The report's opening answer to "is it worth it": accuracy kept, size and speed against the teacher,
and the learning curve of every training stage (validation answer cross-entropy against steps).

A falling training loss says little about a distilled student (KD losses fall while the student still
answers nothing), so the curves plot the one quantity every stage shares: the cross-entropy of the gold
answer tokens on the validation split (`val_ce` in each stage's history, the untrained student's value
from the student_init stage at step 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill2edge.config import Recipe
from distill2edge.report.figures import report_axes, save_figure
from distill2edge.stats import paired
from distill2edge.stats.table3 import load_grid_scores


def _pick_metric(recipe: Recipe) -> str | None:
    names = list(recipe.evaluate.metrics)
    return next((m for m in ("token_f1", "macro_f1", "rouge_l", *names) if m in names), None)


def _teacher_row(models: dict[str, dict[str, Any]], recipe: Recipe, metric: str) -> dict[str, Any] | None:
    found = [models.get(f"teacher_sft.{t}") or models.get(f"teacher.{t}") for t in recipe.teachers]
    rows = [r for r in found if r and r.get(metric) is not None]
    return max(rows, key=lambda r: r[metric]) if rows else None


def _bench_speed(metrics: dict[str, Any], teacher_role: str, student_role: str) -> list[str]:
    """Decode speed of the exported student against the teacher, from the bench stage (when it ran)."""
    bench = (metrics.get("bench") or {}).get("models") or []
    teacher = next((b for b in bench if b.get("name") == teacher_role), None)
    if teacher is None or not teacher.get("decode_tokens_per_s"):
        return []
    same_bits = {r["model"]: r for r in (metrics.get("bench") or {}).get("same_bits") or []}
    lines = []
    for b in bench:
        if b.get("name", "").startswith(student_role) and b.get("decode_tokens_per_s"):
            ratio = b["decode_tokens_per_s"] / teacher["decode_tokens_per_s"]
            eq = same_bits.get(b["name"])
            eq_text = (f"; {eq['decode_speedup']:.1f}x {eq['teacher']} at equal bits"
                       if eq and eq.get("decode_speedup") and eq["teacher"] != teacher_role else "")
            lines.append(f"{b['name']}: {b['decode_tokens_per_s']:.0f} tokens/s decode, {ratio:.1f}x the teacher in "
                         f"torch ({teacher['decode_tokens_per_s']:.0f}){eq_text}")
    return lines


def kept_interval(run_dir: Path, teacher_role: str, student_role: str, metric: str) -> paired.Interval | None:
    """The fraction of the teacher's `metric` the student keeps, with its paired bootstrap interval over the
    test questions (`stats.paired.kept`), from the two evaluation stages' `scores.csv`; None when either is
    missing or does not score `metric` per question (macro F1 is not a mean over questions)."""
    files = {r: run_dir / "stages" / f"evaluate_{r}" / "scores.csv" for r in (teacher_role, student_role)}
    if not all(f.is_file() for f in files.values()):
        return None
    scores = load_grid_scores(files)
    if not all(metric in s for s in scores.values()):
        return None
    return paired.kept(scores[student_role][metric], scores[teacher_role][metric])


def _verdict(kept_value: float | None, interval: paired.Interval | None) -> str:
    """yes: at least half the teacher's score, even at the interval's low end; probably: at least half, but
    the interval reaches below it; not yet: under half."""
    if kept_value is None or kept_value < 0.5:
        return "not yet"
    return "probably" if interval is not None and interval.low < 0.5 else "yes"


def verdict_lines(recipe: Recipe, metrics: dict[str, Any], run_dir: Path | None = None) -> list[str]:
    """Markdown lines: the best distilled student against its teacher and the labels-only student; with
    `run_dir`, the fraction kept carries its paired bootstrap interval and the verdict weighs it."""
    models = metrics.get("models") or {}
    metric = _pick_metric(recipe)
    if metric is None:
        return []
    teacher = _teacher_row(models, recipe, metric)
    students = {r: m for r, m in models.items() if r.startswith("distilled.") and m.get(metric) is not None}
    if teacher is None or not students:
        return []
    best_role, best = max(students.items(), key=lambda kv: kv[1][metric])
    ref = teacher[metric]
    kept = best[metric] / ref if ref else None
    t_params = max(teacher.get("params", 1), 1)
    table = [f"| | Model | {metric} | kept | Params (M) | size | ms / answer (torch) | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [("teacher", teacher), ("best distilled", best)]
    baseline = models.get("student_sft", {}).get(metric)
    if baseline is not None:
        rows.append(("labels only", models["student_sft"]))
    for what, r in rows:
        lat_t, lat = teacher.get("latency_ms"), r.get("latency_ms")
        table.append(
            f"| {what} | {r['role']} | {r[metric]:.3f} | {f'{r[metric] / ref:.0%}' if ref else '–'} | "
            f"{r.get('params', 0) / 1e6:.1f} | {r.get('params', 0) / t_params:.0%} | "
            f"{'–' if lat is None else round(lat)} | {f'{lat_t / lat:.1f}x' if lat_t and lat else '–'} |")
    teacher_role = next((k for k, v in models.items() if v is teacher), "")
    interval = kept_interval(run_dir, teacher_role, best_role, metric) if run_dir is not None else None
    spread = (f" ({interval.level:.0%} interval {interval.low:.0%}-{interval.high:.0%}, paired bootstrap over "
              f"{interval.n} test questions)" if interval is not None else "")
    lines = ["## Is it worth it?", "",
             f"**{_verdict(kept, interval)}**: the best distilled student (`{best_role}`) keeps "
             f"{'–' if kept is None else f'{kept:.0%}'}{spread} of the teacher's {metric} with "
             f"{best.get('params', 0) / t_params:.0%} of its parameters"
             + ("." if baseline is None else
                f"; the student trained on the labels alone scores {baseline:.3f}"
                + (" (the distilled student is better)." if best[metric] > baseline else ".")),
             "", *table, ""]
    if trim := (metrics.get("vocabulary") or {}).get(best_role):
        lines[3:3] = ["", f"Its vocabulary is trimmed to the tokens of its domain (`student.vocabulary`): "
                      f"{trim['kept']:,} of {trim['original_size']:,} tokens, "
                      f"{trim['parameters_before'] / 1e6:.1f}M -> {trim['parameters_after'] / 1e6:.1f}M parameters."]
    speed = _bench_speed(metrics, teacher_role, best_role)
    if speed:
        lines += ["Exported student (bench stage, same questions):", "", *(f"- {s}" for s in speed), ""]
    return lines


def _history(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    path = run_dir / "stages" / stage / "model" / "train_history.json"
    return json.loads(path.read_text())["history"] if path.exists() else []


def learning_curves(run_dir: Path, metrics: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Per training stage, (step, validation answer CE) pairs; student stages that start from the cut student
    begin at its untrained value (step 0)."""
    start = (metrics.get("student_init") or {}).get("val_answer_ce")
    curves: dict[str, list[tuple[int, float]]] = {}
    for stage, info in (metrics.get("training") or {}).items():
        points = [(h["step"], h["val_ce"]) for h in _history(run_dir, stage) if "val_ce" in h]
        if not points:
            continue
        if start is not None and info.get("starts_from") == "student_base":
            points.insert(0, (0, start))
        curves[stage] = points
    return curves


def _plot_stage_curves(
    curves: dict[str, list[tuple[float, float]]], path: Path, *, xlabel: str, ylabel: str, title: str, log_y: bool,
) -> bool:
    """One line per stage to `path`; False (nothing written) without curves."""
    if not curves:
        return False
    with report_axes() as (fig, ax):
        for stage, points in curves.items():
            ax.plot(*zip(*points), "o-", markersize=3, label=stage)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.set_title(title)
        save_figure(fig, path)
    return True


def plot_learning_curves(curves: dict[str, list[tuple[int, float]]], path: Path) -> bool:
    """Plot each stage's validation answer CE against steps to `path`; False (nothing written) without curves."""
    return _plot_stage_curves(
        {k: [(float(x), y) for x, y in v] for k, v in curves.items()}, path, xlabel="optimizer step",
        ylabel="validation answer CE (nats / token)", log_y=True,
        title="Learning curves: cross-entropy of the gold answers on the validation split",
    )


def curve_lines(curves: dict[str, list[tuple[int, float]]]) -> list[str]:
    """A compact table: each stage's validation answer CE at its start, best point and end."""
    if not curves:
        return []
    lines = ["| Stage | first (step) | best (step) | last (step) |", "|---|---|---|---|"]
    for stage, pts in curves.items():
        best = min(pts, key=lambda p: p[1])
        lines.append(f"| {stage} | {pts[0][1]:.3f} ({pts[0][0]}) | {best[1]:.3f} ({best[0]}) | "
                     f"{pts[-1][1]:.3f} ({pts[-1][0]}) |")
    return lines


def f1_curves(run_dir: Path, metrics: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Per training stage that probed answers (`train.eval_answers`), (minutes of training, validation
    token F1) pairs: what each minute of training buys in accuracy."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for stage in metrics.get("training") or {}:
        points = [(h["time_s"] / 60, h["val_token_f1"]) for h in _history(run_dir, stage)
                  if "val_token_f1" in h and "time_s" in h]
        if points:
            curves[stage] = points
    return curves


def plot_f1_curves(curves: dict[str, list[tuple[float, float]]], path: Path) -> bool:
    """Plot each stage's validation token F1 against wall-clock minutes to `path`; False without curves."""
    return _plot_stage_curves(
        curves, path, xlabel="minutes of training (validation included)",
        ylabel="validation token F1 (greedy answers)", title="Accuracy against training time", log_y=False,
    )


def f1_curve_lines(curves: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Each probed stage's validation token F1, minute by minute of its validations."""
    lines = []
    for stage, pts in curves.items():
        lines.append(f"- {stage}: " + ", ".join(f"{f1:.3f} at {m:.1f} min" for m, f1 in pts))
    return lines

