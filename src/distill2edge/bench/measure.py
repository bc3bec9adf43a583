"""Benchmark one model on a list of questions: warm-up, sequential greedy answers (timed), a batched
pass where the runtime has one, and accuracy of the sequential answers.

With `isolate=True` (the default) each model runs in a fresh spawned process, so its peak RSS
(VmHWM, the high-water mark of that process's resident set) is its own and thread settings or allocator
state cannot leak from one model into the next. `peak_rss_mb` covers the whole process (Python, the
runtime's libraries, weights, caches); `model_rss_mb` subtracts the resident size measured after the
runtime was imported and before the model was loaded. In-process runs report neither.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from distill2edge.bench.spec import BenchError, BenchModel
from distill2edge.data.qa import QAExample
from distill2edge.evaluate.metrics import DEFAULT_METRICS, score_predictions, summarize

DEFAULT_TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
_RUNTIME_MODULES = {"torch": ("torch", "transformers"), "onnx": ("torch", "transformers", "onnxruntime",
                    "optimum.onnxruntime"), "onnx-genai": ("transformers", "onnxruntime", "onnxruntime_genai"),
                    "gguf": ("llama_cpp",)}


@dataclass(frozen=True)
class BenchSettings:
    """How every model is run; the same settings for all models of one benchmark."""

    template: str = DEFAULT_TEMPLATE
    """Prompt template (the recipe's `data.prompt_template`)."""
    max_length: int = 256
    """Prompt + answer token budget; long contexts are cut at their end (the recipe's `data.max_length`)."""
    max_new_tokens: int = 24
    threads: int = 2
    warmup: int = 2
    """Untimed answers before timing (first questions, repeated if there are fewer)."""
    batch_size: int = 8
    """Questions per batch for batched questions/s (torch and ONNX); 0 skips the batched pass."""
    stop_at_answer: bool = False
    """False: exactly max_new_tokens per answer (same work for every model); True: stop at EOS/newline."""
    isolate: bool = True
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": list(self.metrics)}


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, median and 90th percentile (linear interpolation), in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"mean": float(ms.mean()), "median": float(np.median(ms)), "p90": float(np.percentile(ms, 90))}


def _rss_mb(field: str = "VmRSS") -> float | None:
    """`VmRSS` (current) or `VmHWM` (peak) resident set size of this process (Linux /proc), in MB.

    VmHWM belongs to this process's own address space; getrusage's ru_maxrss would not do for a spawned
    child, because Linux carries the parent's peak across the fork + exec that starts it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def bench_model(model: BenchModel, examples: Sequence[QAExample], settings: BenchSettings) -> dict[str, Any]:
    """Run `model` on `examples` in this process; returns its record with `predictions` (list of dicts)."""
    from distill2edge.bench.runners import open_runner
    from distill2edge.data.tokenize import encode_for_generation

    if not examples:
        raise ValueError("no questions to benchmark")
    n_new = settings.max_new_tokens
    t0 = time.perf_counter()
    try:
        context = max(8, settings.max_length - n_new) + n_new  # the prompt budget of encode_for_generation
        runner = open_runner(model.format, model.path, settings.threads, context)
    except ImportError:
        raise
    except Exception as exc:  # any loader failure: name the model and the runtime
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BenchError(f"{model.path}: could not load it in the {model.format} runner: "
                         f"{type(exc).__name__}: {first}") from exc
    try:
        load_s = time.perf_counter() - t0
        prompts = [
            encode_for_generation(runner.tokenizer, ex, settings.template, settings.max_length, n_new)
            for ex in examples
        ]
        for i in range(settings.warmup):
            runner.generate(prompts[i % len(prompts)], n_new, settings.stop_at_answer)
        gens = [runner.generate(p, n_new, settings.stop_at_answer) for p in prompts]
        batched_s = batched_agree = None
        if settings.batch_size > 0:
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # little padding
            outs: dict[int, list[int]] = {}
            tb = time.perf_counter()
            for s in range(0, len(order), settings.batch_size):
                idx = order[s : s + settings.batch_size]
                got = runner.generate_batch([prompts[i] for i in idx], n_new)
                if got is None:
                    break
                outs.update(zip(idx, got))
            else:
                batched_s = time.perf_counter() - tb
                batched_agree = float(np.mean([
                    runner.answer_text(outs[i]) == runner.answer_text(g.tokens) for i, g in enumerate(gens)
                ]))
        predictions = [runner.answer_text(g.tokens) for g in gens]
        facts = runner.facts()
        runtime, threads = runner.runtime, runner.threads
    finally:
        runner.close()
    scores = score_predictions(predictions, [list(ex.answers) for ex in examples], settings.metrics)
    decoded = [g for g in gens if len(g.tokens) > 1]
    decode_time = sum(g.total_s - g.ttft_s for g in decoded)
    total = sum(g.total_s for g in gens)
    return {
        "role": model.role, "name": model.name, "format": model.format, "path": str(model.path),
        "runtime": runtime, "threads": threads, **facts.to_dict(), "load_s": load_s,
        "n_questions": len(examples),
        "prompt_tokens_mean": float(np.mean([len(p) for p in prompts])),
        "new_tokens_mean": float(np.mean([len(g.tokens) for g in gens])),
        "ttft_ms": latency_stats([g.ttft_s for g in gens]),
        "answer_ms": latency_stats([g.total_s for g in gens]),
        "decode_tokens_per_s": (sum(len(g.tokens) - 1 for g in decoded) / decode_time) if decode_time > 0 else None,
        "questions_per_s": len(gens) / total,
        "questions_per_s_batched": None if batched_s is None else len(gens) / batched_s,
        "batched_same_answer": batched_agree,
        "accuracy": summarize(scores),
        "predictions": [
            {"id": ex.id, "question": ex.question, "references": list(ex.answers), "prediction": pred,
             "prompt_tokens": len(p), "new_tokens": len(g.tokens), "ttft_s": g.ttft_s, "latency_s": g.total_s,
             **{m: scores[m][i] for m in settings.metrics}}
            for i, (ex, p, g, pred) in enumerate(zip(examples, prompts, gens, predictions))
        ],
    }


def _bench_in_child(model: BenchModel, examples: Sequence[QAExample], settings: BenchSettings) -> dict[str, Any]:
    """Entry point of the spawned process: import the runtime, note the RSS, benchmark, note the peak."""
    import importlib

    for mod in _RUNTIME_MODULES.get(model.format, ()):
        importlib.import_module(mod)
    base = _rss_mb()
    record = bench_model(model, examples, settings)
    peak = _rss_mb("VmHWM")
    record["peak_rss_mb"] = peak
    record["model_rss_mb"] = None if base is None or peak is None else peak - base
    return record


def bench_isolated(model: BenchModel, examples: Sequence[QAExample], settings: BenchSettings) -> dict[str, Any]:
    """`bench_model` in a fresh spawned process (one model per process), with its peak RSS."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_bench_in_child, model, list(examples), settings).result()


def bench_any(model: BenchModel, examples: Sequence[QAExample], settings: BenchSettings) -> dict[str, Any]:
    """Isolated or in-process according to `settings.isolate`; `rss_measured` says which."""
    if settings.isolate:
        rec = bench_isolated(model, examples, settings)
        rec["rss_measured"] = "own spawned process: /proc VmHWM"
    else:
        rec = bench_model(model, examples, settings)
        rec.update(peak_rss_mb=None, model_rss_mb=None, rss_measured="not measured (in-process run)")
    return rec
