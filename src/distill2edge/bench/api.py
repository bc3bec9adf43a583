"""`run_bench`: benchmark several models on the same questions and write the results.

    from distill2edge.bench import BenchModel, BenchSettings, run_bench
    result = run_bench([BenchModel(Path("teacher"), "teacher"), BenchModel(Path("s.gguf"), "student")],
                       examples, Path("out/bench"), settings=BenchSettings(max_new_tokens=24))

Writes into `out_dir`: `bench.md` (tables), `accuracy_latency.png`, `speedup.png`,
`predictions/<n>-<name>.jsonl` (per question: prediction, timings, scores) and, last, `bench.json`
(machine, settings, bandwidth, one record per model). A failed model raises; `bench.json` then does not
appear, so a folder with `bench.json` is complete. Each record's `roofline` holds the ceiling from the
read bandwidth on a buffer of the model's bytes per token (measured once per size) and, as `dram_*`,
the one from the DRAM bandwidth of `bandwidth` (see roofline.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill2edge.atomic import write_text_atomic
from distill2edge.bench.measure import BenchSettings, bench_any
from distill2edge.bench.ratios import gguf_file_type, same_bits_ratios
from distill2edge.bench.roofline import ModelFacts, measure_bandwidth, model_roofline
from distill2edge.bench.spec import BenchError, BenchModel, check_loadable
from distill2edge.bench.system import machine_info
from distill2edge.bench.tables import markdown_tables, write_plots
from distill2edge.data.qa import QAExample

_FACT_KEYS = ("params", "file_bytes", "weight_bytes_per_token", "kv_bytes_per_position", "dtype")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "model"


def settings_for_recipe(recipe: Any, **overrides: Any) -> BenchSettings:
    """Bench settings that ask questions the way a recipe's evaluation does: its prompt template,
    length budget, new-token count and metrics (`overrides` for the rest, e.g. `threads=4`)."""
    return BenchSettings(**{
        "template": recipe.data.prompt_template, "max_length": recipe.data.max_length,
        "max_new_tokens": recipe.evaluate.max_new_tokens, "metrics": tuple(recipe.evaluate.metrics), **overrides,
    })


def run_bench(
    models: Sequence[BenchModel],
    examples: Sequence[QAExample],
    out_dir: Path,
    *,
    settings: BenchSettings | None = None,
    reference: str | None = None,
    bandwidth: dict[str, Any] | None = None,
    same_bits: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark `models` (torch / ONNX / GGUF, see spec.py) on `examples` and write `out_dir`.

    `reference` names the model speed-ups are taken against (default: the first teacher, else the
    first model). `bandwidth` reuses an earlier `measure_bandwidth` result (the DRAM figure) instead of
    measuring; the working-set bandwidth of each model's size is measured all the same (once per size).
    `same_bits`: export each torch teacher to every GGUF type a student is benchmarked in (into
    `out_dir/same_bits/`, see same_bits.py) and time it too. bench.json's `same_bits` lists every
    student's speed-up over the teacher in the same runtime at the same weight type (ratios.py).
    Returns the content of bench.json.
    """
    settings = settings or BenchSettings()
    if not models:
        raise BenchError("no models to benchmark")
    if not examples:
        raise BenchError("no questions to benchmark on")
    resolved = [m.resolved() for m in models]
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise BenchError(f"two models share a name: {names}; give each a distinct name")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("bench.json",):
        (out_dir / stale).unlink(missing_ok=True)
    for model in resolved:
        check_loadable(model)  # before the bandwidth measurement: a broken model fails in a second
    if same_bits:
        from distill2edge.bench.same_bits import add_same_bits_teachers

        resolved = add_same_bits_teachers(resolved, out_dir / "same_bits", settings.threads, log)
    log(f"[bench] measuring DRAM bandwidth ({settings.threads} threads)")
    bw = bandwidth or measure_bandwidth(settings.threads)
    log(f"[bench] DRAM read {bw['read_gb_s']:.1f} GB/s, copy {bw['copy_gb_s']:.1f} GB/s")
    pred_dir = out_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    records = []
    for i, model in enumerate(resolved):
        log(f"[bench] {model.role} {model.name}: {len(examples)} questions")
        rec = bench_any(model, examples, settings)
        rec["weight_type"] = gguf_file_type(model.path) if model.format == "gguf" else rec["dtype"]
        facts = ModelFacts(**{k: rec[k] for k in _FACT_KEYS})
        ctx = rec["prompt_tokens_mean"] + rec["new_tokens_mean"] / 2
        rec["roofline"] = model_roofline(facts, ctx, rec["decode_tokens_per_s"], bw, settings.threads)
        preds = rec.pop("predictions")
        path = pred_dir / f"{i}-{_slug(model.name)}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for p in preds:
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
        rec["predictions_file"] = str(path.relative_to(out_dir))
        dec, roof = rec["decode_tokens_per_s"], rec["roofline"]
        log(f"[bench]   {rec['answer_ms']['mean']:.0f} ms/answer, decode {dec or 0:.1f} tok/s "
            f"({100 * (roof['fraction'] or 0):.0f}% of the roofline at {roof['read_gb_s']:.1f} GB/s on its "
            f"{roof['working_set_mib']} MiB working set), F1 {rec['accuracy'].get('token_f1', 0):.3f}")
        records.append(rec)
    result = {
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": settings.to_dict(),
        "bandwidth": bw,
        "n_questions": len(examples),
        "reference": reference,
        "models": records,
        "same_bits": same_bits_ratios(records, prefer=reference),
    }
    (out_dir / "bench.md").write_text("# Benchmark\n\n" + markdown_tables(result), encoding="utf-8")
    write_plots(result, out_dir)
    write_text_atomic(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    return result


def load_questions(data: str, split: str = "test", limit: int | None = None) -> list[QAExample]:
    """The questions of `data` (embedded:NAME, a TeleQuAD/SQuAD JSON, a JSONL file or hf:NAME): one split
    ("train", "validation", "test", made by context as a recipe makes them) or "all", the first `limit`."""
    from distill2edge.config import DataConfig
    from distill2edge.data.qa import load_examples, split_by_context

    if split not in ("all", "train", "validation", "test"):
        raise BenchError(f"split {split!r}: choose all, train, validation or test")
    cfg = DataConfig(source=data)
    examples = load_examples(cfg)
    if split != "all":
        examples = split_by_context(examples, cfg.split)[split]
    if limit is not None:
        examples = examples[:limit]
    return examples


def run_bench_specs(
    models: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    roles: Sequence[str] = (),
    data: str = "embedded:telecom-qa",
    split: str = "test",
    limit: int | None = None,
    template: str = BenchSettings.template,
    max_length: int = BenchSettings.max_length,
    max_new_tokens: int = BenchSettings.max_new_tokens,
    threads: int = BenchSettings.threads,
    warmup: int = BenchSettings.warmup,
    batch_size: int = BenchSettings.batch_size,
    stop_at_answer: bool = False,
    isolate: bool = True,
    reference: str | None = None,
    same_bits: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`distill2edge bench` from its arguments: `models` are `[ROLE=]PATH` specs (HF folder, ONNX folder,
    .gguf, embedded:NAME), `roles` label those without `ROLE=` in order (default `model`); the questions
    come from `load_questions(data, split, limit)`; `template` may spell a newline as a literal `\\n`.
    Writes `out_dir` and returns the content of bench.json. Raises BenchError / DataError on bad input."""
    from distill2edge.bench.spec import parse_model_spec

    models, roles = list(models), list(roles)
    if len(roles) > len(models):
        raise BenchError(f"{len(roles)} --role given for {len(models)} models")
    roles += ["model"] * (len(models) - len(roles))
    parsed = [parse_model_spec(spec, role) for spec, role in zip(models, roles)]
    examples = load_questions(data, split, limit)
    if not examples:
        raise BenchError(f"{data}: no questions in split {split!r}")
    for name, value in (("--threads", threads), ("--max-new-tokens", max_new_tokens)):
        if value < 1:
            raise BenchError(f"{name} must be at least 1 (got {value})")
    settings = BenchSettings(
        template=template.replace("\\n", "\n"), max_length=max_length, max_new_tokens=max_new_tokens,
        threads=threads, warmup=warmup, batch_size=batch_size, stop_at_answer=stop_at_answer, isolate=isolate,
    )
    return run_bench(parsed, examples, Path(out_dir), settings=settings, reference=reference, same_bits=same_bits,
                     log=log)
