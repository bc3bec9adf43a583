"""`distill2edge compare`: the per-question scores of several evaluated models, against a reference model
(the teacher), with paired intervals (`stats.paired`).

Scores come from the `scores.csv` files that `distill2edge evaluate` and a recipe's evaluation stages write;
a path may be such a file, a folder holding one, an `evaluate --out` folder (one model per sub-folder) or a
recipe run folder (its `stages/evaluate_ROLE/`, labelled by role).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distill2edge.evaluate.generate import read_scores_csv
from distill2edge.stats.paired import difference, kept
from distill2edge.stats.table3 import load_grid_scores

SCORES = "scores.csv"
PREFERRED_METRICS = ("token_f1", "correct", "rouge_l")


def _labelled(arg: str) -> tuple[str | None, Path]:
    label, sep, path = arg.partition("=")
    return (label, Path(path)) if sep and label and not Path(arg).exists() else (None, Path(arg))


def find_scores(args: Sequence[str]) -> dict[str, Path]:
    """{label: scores.csv} for `[LABEL=]PATH` arguments; FileNotFoundError naming a path with no scores,
    ValueError when two models would share a label."""
    found: dict[str, Path] = {}
    for arg in args:
        label, path = _labelled(arg)
        if path.is_file():
            files = {path.parent.name: path}
        elif (path / SCORES).is_file():
            files = {path.name: path / SCORES}
        elif (path / "stages").is_dir():
            files = {d.name.removeprefix("evaluate_"): d / SCORES
                     for d in sorted((path / "stages").glob("evaluate_*"))
                     if (d / SCORES).is_file() and d.suffix not in (".tmp", ".work")}  # unfinished stages
        else:
            files = {d.name: d / SCORES for d in sorted(path.iterdir()) if (d / SCORES).is_file()} if path.is_dir() else {}
        if not files:
            raise FileNotFoundError(f"{path}: no {SCORES} there (give a scores.csv, an `evaluate --out` folder, "
                                    "a model's folder inside it, or a recipe run folder)")
        if label is not None:
            if len(files) > 1:
                raise ValueError(f"{arg}: a label names one model, but {path} holds {len(files)} ({', '.join(files)})")
            files = {label: next(iter(files.values()))}
        for name, file in files.items():
            if name in found:
                raise ValueError(f"two models are labelled {name!r} ({found[name]} and {file}); name them LABEL=PATH")
            found[name] = file
    return found


def pick_metric(scores: Mapping[str, Mapping[str, Sequence[float]]], metric: str | None) -> str:
    """`metric`, else the first of token_f1, correct (classification), rouge_l that every model has."""
    common = set.intersection(*(set(m) for m in scores.values()))
    if metric is not None:
        if metric not in common:
            raise ValueError(f"metric {metric!r} is not scored for every model; common metrics: {', '.join(sorted(common))}")
        return metric
    for name in (*PREFERRED_METRICS, *sorted(common)):
        if name in common:
            return name
    raise ValueError("the models share no metric")


def compare_scores(files: Mapping[str, Path], reference: str | None = None, metric: str | None = None, *,
                   level: float = 0.95, by_length: Sequence[int] = ()) -> dict[str, Any]:
    """Each model's mean, the fraction of `reference`'s mean it keeps, and its paired difference from the
    reference; with two or more other models, each against the one before it as well."""
    if len(files) < 2:
        raise ValueError("compare needs at least two models (a reference and one to compare with it)")
    reference = reference or next(iter(files))
    if reference not in files:
        raise ValueError(f"--reference {reference!r} is not among the models: {', '.join(files)}")
    scores = load_grid_scores(files)
    metric = pick_metric(scores, metric)
    ref = scores[reference][metric]
    others = [label for label in files if label != reference]
    rows = {}
    for label in files:
        x = scores[label][metric]
        row: dict[str, Any] = {"mean": sum(x) / len(x), "scores": str(files[label])}
        if label != reference:
            k = kept(x, ref, level=level)
            row["kept"] = None if k is None else k.to_json()
            row["versus_reference"] = difference(x, ref, level=level).to_json()
        rows[label] = row
    steps = [{"model": b, "baseline": a, **difference(scores[b][metric], scores[a][metric], level=level).to_json()}
             for a, b in zip(others, others[1:])]
    result = {"metric": metric, "reference": reference, "n": len(ref), "level": level,
              "method": "paired bootstrap over questions (percentile, 10,000 resamples, seed 0); Wilcoxon signed-rank",
              "models": rows, "steps": steps}
    if by_length:
        result["by_length"] = kept_by_length(files, reference, metric, by_length, level=level)
    return result


def prompt_lengths(scores_csv: Path) -> dict[str, int]:
    """{question id: prompt tokens as the model saw them} from the `predictions.jsonl` beside a `scores.csv`."""
    path = scores_csv.parent / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; --by-length reads the prompt lengths the evaluation recorded")
    out = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            rec = json.loads(line)
            if "prompt_tokens" not in rec:
                raise ValueError(f"{path}:{n}: no prompt_tokens (written by an older distill2edge evaluate)")
            out[str(rec["id"])] = int(rec["prompt_tokens"])
    return out


def kept_by_length(files: Mapping[str, Path], reference: str, metric: str, edges: Sequence[int], *,
                   level: float = 0.95) -> list[dict[str, Any]]:
    """The fraction kept per bucket of prompt length (the reference's prompt tokens, split at `edges`):
    where a student loses its teacher, e.g. on the long documents a short context cuts."""
    lengths = prompt_lengths(files[reference])
    scores = load_grid_scores(files)
    ids = sorted(lengths)
    first_ids, _ = read_scores_csv(next(iter(files.values())))
    pos = {qid: i for i, qid in enumerate(first_ids)}
    if sorted(first_ids) != ids:
        raise ValueError(f"{files[reference].parent / 'predictions.jsonl'}: its question ids differ from the scores'")
    lows = [0, *sorted(edges)]
    highs: list[int | None] = [*sorted(edges), None]
    buckets = []
    for lo, hi in zip(lows, highs):
        rows = [pos[q] for q in ids if lengths[q] > lo and (hi is None or lengths[q] <= hi)]
        name = f"{lo + 1}-{hi}" if hi is not None else f">{lo}"
        bucket: dict[str, Any] = {"prompt_tokens": name, "n": len(rows), "models": {}}
        for label in files:
            x = [scores[label][metric][i] for i in rows]
            ref = [scores[reference][metric][i] for i in rows]
            k = kept(x, ref, level=level) if rows and label != reference else None
            bucket["models"][label] = {"mean": sum(x) / len(x) if x else None, "kept": None if k is None else k.to_json()}
        buckets.append(bucket)
    return buckets


def _ci(iv: Mapping[str, Any], pct: bool) -> str:
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:+.3f}")
    return f"{f(iv['value'])} ({f(iv['low'])} to {f(iv['high'])})"


def compare_markdown(result: Mapping[str, Any]) -> str:
    """The comparison as Markdown: one row per model, then the model-to-model steps."""
    metric, ref, level = result["metric"], result["reference"], result["level"]
    pct = f"{100 * level:g}%"
    lines = [f"{result['n']} questions, metric {metric}, reference `{ref}`; intervals {pct}, {result['method']}.", "",
             f"| model | {metric} | kept of {ref} | minus {ref} | questions that differ | Wilcoxon p |",
             "|---|---|---|---|---|---|"]
    for label, row in result["models"].items():
        if label == ref:
            lines.append(f"| {label} | {row['mean']:.4f} | – | – | – | – |")
            continue
        k, d = row["kept"], row["versus_reference"]
        lines.append(f"| {label} | {row['mean']:.4f} | {'–' if k is None else _ci(k, True)} | "
                     f"{_ci(d['mean'], False)} | {d['n_differ']} | {d['p_two_sided']:.3g} |")
    if result["steps"]:
        lines += ["", "| model | minus | difference | questions that differ | Wilcoxon p |", "|---|---|---|---|---|"]
        lines += [f"| {s['model']} | {s['baseline']} | {_ci(s['mean'], False)} | {s['n_differ']} | {s['p_two_sided']:.3g} |"
                  for s in result["steps"]]
    if result.get("by_length"):
        lines += ["", f"By prompt length (tokens of the reference's prompts): {metric}, kept of {ref}", "",
                  "| prompt tokens | questions | " + " | ".join(m for m in result["models"] if m != ref) + " |",
                  "|---|---|" + "---|" * (len(result["models"]) - 1)]
        for b in result["by_length"]:
            cells = [f"{b['models'][m]['mean']:.3f}, " + ("–" if b["models"][m]["kept"] is None
                     else _ci(b["models"][m]["kept"], True)) if b["n"] else "–"
                     for m in result["models"] if m != ref]
            lines.append(f"| {b['prompt_tokens']} | {b['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
