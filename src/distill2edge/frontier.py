"""The accuracy-latency frontier: one recipe, students of several sizes, each scored and timed the way a
user would ship it.

For every layer count the recipe runs in its own run folder `L<n>/` (so each is resumable and reusable
on its own) with `student.num_layers = n`. The first size also fine-tunes the teachers; later sizes take
the first run's SFT teacher folder as their (already fine-tuned) teacher, so the teacher is trained once
and every student learns from the same one. Each size's best distilled student and the teacher are
exported to GGUF at one quantization (each export gated on parity with torch, as `distill2edge export`)
and timed side by side in llama.cpp on the same questions (`bench.run_bench`). Test-split accuracy comes
from each run's evaluation stage. Writes `frontier.json`, `frontier.md` and `frontier.png`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill2edge.config import Recipe, RecipeError

Log = Callable[[str], None]


def size_recipe(base: Recipe, layers: int, teacher_dirs: dict[str, str] | None) -> Recipe:
    """`base` with a student of `layers` layers, evaluating its students (and, on the first size, the
    teachers), without the recipe's own exports and bench (the frontier exports and times every size
    at one quantization itself). `teacher_dirs` (teacher name -> SFT model folder) replaces each
    teacher's SFT stage with the folder an earlier size produced."""
    if base.student.init_from is None:
        raise RecipeError("frontier: the recipe's student must be cut from a model (student.init_from)")
    data = base.model_dump(mode="json")
    # A recipe's named strategy is kept; a recipe that lists its layers gets the measured choice that is
    # quick at every size (block influence; answer_ce would take ~20 minutes a size on 2 CPU cores).
    strategy = base.student.layers if isinstance(base.student.layers, str) else "block_influence"
    data["student"].update(num_layers=layers, layers=strategy)
    roles = [f"distilled.{n}" for n in base.distill]
    if teacher_dirs is None:
        used = {t for d in base.distill.values() for t in d.teacher_names()}
        roles = [*(f"teacher_sft.{t}" for t in used), *roles]
    else:
        for t, path in teacher_dirs.items():
            data["teachers"][t]["path"] = path
        source = base.student.source_teacher()
        if source is not None:  # cut from the fine-tuned teacher an earlier size produced
            data["student"]["init_from"] = teacher_dirs[source]
        for d in data["distill"].values():
            if d.get("teacher_state", "sft") == "sft":
                d["teacher_state"] = "base"  # the teacher folder is already the SFT model
    data["evaluate"]["models"] = roles
    data["export"] = {"models": [], "profiles": []}
    data["bench"] = {**data.get("bench", {}), "enabled": False}
    data["name"] = f"{base.name}-L{layers}"
    return Recipe.model_validate(data)


def _best(metrics: dict[str, Any], metric: str) -> tuple[str, dict[str, Any]]:
    scored = {r: m for r, m in metrics["models"].items() if r.startswith("distilled.") and metric in m}
    if not scored:
        raise RecipeError("frontier: the recipe evaluated no distilled student")
    return max(scored.items(), key=lambda kv: kv[1][metric])


def run_frontier(
    base: Recipe, sizes: Sequence[int], out_dir: Path, *, quant: str = "q8_0", max_questions: int = 20,
    threads: int = 2, progress: bool = True, log: Log = print,
) -> dict[str, Any]:
    """Train, evaluate, export and time a student per size in `sizes`; returns frontier.json's content."""
    from distill2edge.bench import BenchModel
    from distill2edge.bench.api import run_bench, settings_for_recipe
    from distill2edge.data.examples import QAExample, examples_of
    from distill2edge.data.splits import read_data
    from distill2edge.export.gguf import export_gguf
    from distill2edge.pipeline import run_recipe

    if not sizes or len(set(sizes)) != len(sizes):
        raise RecipeError(f"frontier: give distinct layer counts, got {list(sizes)}")
    metric = "token_f1" if "token_f1" in base.evaluate.metrics else base.evaluate.metrics[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    teacher_dirs: dict[str, str] | None = None
    teacher_row: dict[str, Any] | None = None
    for n in sizes:
        run_dir = out_dir / f"L{n}"
        log(f"[frontier] {n} layers -> {run_dir}")
        metrics = run_recipe(size_recipe(base, n, teacher_dirs), run_dir, progress=progress, log=log)
        if teacher_dirs is None:
            teacher_dirs = {t: str(run_dir / "stages" / f"sft_teacher.{t}" / "model")
                            for t in base.teachers if (run_dir / "stages" / f"sft_teacher.{t}" / "model").exists()}
            t_role, teacher_row = max(((r, m) for r, m in metrics["models"].items() if r.startswith("teacher_sft.")),
                                      key=lambda kv: kv[1].get(metric, 0.0))
            teacher_row = {**teacher_row, "role": t_role, "model_dir": teacher_dirs[t_role.split(".", 1)[1]]}
        role, best = _best(metrics, metric)
        rows.append({"layers": n, "role": role, "run_dir": str(run_dir), "model_dir": best["model"],
                     "params": best["params"], metric: best[metric], "rouge_l": best.get("rouge_l"),
                     "answer_ce": best.get("answer_ce"), "ms_per_answer_torch": best.get("latency_ms")})
    if teacher_row is None:
        raise RecipeError("frontier: the first size produced no SFT teacher")
    gguf_dir = out_dir / "gguf"
    gguf_dir.mkdir(exist_ok=True)
    entries = [("teacher", teacher_row["model_dir"], f"teacher.{quant}")]
    entries += [("student", r["model_dir"], f"L{r['layers']}.{quant}") for r in rows]
    for _role, model_dir, name in entries:
        target = gguf_dir / f"{name}.gguf"
        if not target.exists():
            log(f"[frontier] export {name}")
            export_gguf(model_dir, target, quant=quant, threads=threads)
    splits = read_data(base.data, out_dir / f"L{sizes[0]}" / "stages" / "data")
    questions = examples_of(splits["test"][:max_questions], QAExample, base.data.task)  # llama.cpp answers QA
    bench = run_bench(
        [BenchModel(gguf_dir / f"{name}.gguf", role, name=name) for role, _m, name in entries],
        questions, out_dir / "bench", settings=settings_for_recipe(base, threads=threads,
                                                                                          batch_size=0), log=log,
    )
    speed = {rec["name"]: rec for rec in bench["models"]}
    t_speed = speed[f"teacher.{quant}"]
    for r in [teacher_row, *rows]:
        name = f"teacher.{quant}" if r is teacher_row else f"L{r['layers']}.{quant}"
        rec = speed[name]
        r.update(gguf=str(gguf_dir / f"{name}.gguf"), file_mb=rec["file_bytes"] / 1e6,
                 decode_tokens_per_s=rec["decode_tokens_per_s"], ms_per_answer=rec["answer_ms"]["mean"],
                 speedup_vs_teacher=rec["decode_tokens_per_s"] / t_speed["decode_tokens_per_s"],
                 kept=r[metric] / teacher_row[metric] if teacher_row[metric] else None)
    result = {"recipe": base.name, "metric": metric, "quant": quant, "threads": threads,
              "teacher": teacher_row, "students": rows, "bench_questions": len(splits["test"][:max_questions]),
              "wall_time_s": round(time.perf_counter() - t0, 1)}
    (out_dir / "frontier.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out_dir / "frontier.md").write_text(frontier_markdown(result), encoding="utf-8")
    plot_frontier(result, out_dir / "frontier.png")
    return result


def frontier_markdown(result: dict[str, Any]) -> str:
    m, q = result["metric"], result["quant"]
    t = result["teacher"]
    lines = [f"# Accuracy-latency frontier: {result['recipe']}", "",
             (f"Test-split {m} of each size's best distilled student; decode speed and size of its GGUF ({q}) in "
              f"llama.cpp ({result['threads']} threads), timed beside the teacher's GGUF at the same quantization on "
              f"{result['bench_questions']} questions."), "",
             f"| Model | Layers | Params (M) | {m} | kept | GGUF (MB) | decode tok/s | x teacher | ms / answer |",
             "|---|---|---|---|---|---|---|---|---|",
             (f"| {t['role']} | – | {t['params'] / 1e6:.1f} | {t[m]:.3f} | 100% | {t['file_mb']:.0f} | "
              f"{t['decode_tokens_per_s']:.0f} | 1.0x | {t['ms_per_answer']:.0f} |")]
    for r in result["students"]:
        kept = "–" if r["kept"] is None else f"{r['kept']:.0%}"
        lines.append(f"| {r['role']} | {r['layers']} | {r['params'] / 1e6:.1f} | {r[m]:.3f} | {kept} | "
                     f"{r['file_mb']:.0f} | {r['decode_tokens_per_s']:.0f} | {r['speedup_vs_teacher']:.1f}x | "
                     f"{r['ms_per_answer']:.0f} |")
    return "\n".join(lines + ["", "![frontier](frontier.png)", ""])


def plot_frontier(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result["metric"]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["decode_tokens_per_s"] for r in result["students"]]
    ys = [r[m] for r in result["students"]]
    ax.plot(xs, ys, "o-", label="distilled students")
    for r in result["students"]:
        ax.annotate(f"{r['layers']} layers", (r["decode_tokens_per_s"], r[m]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    t = result["teacher"]
    ax.plot([t["decode_tokens_per_s"]], [t[m]], "s", color="black", label="teacher")
    ax.set_xlabel(f"decode tokens/s, llama.cpp {result['quant']}")
    ax.set_ylabel(f"test {m}")
    ax.set_title("What each layer costs and buys")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
