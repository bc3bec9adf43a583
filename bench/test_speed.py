"""Decode and answer latency of tiny and embedded models in torch, onnxruntime and llama.cpp.

Fixed rounds (`benchmark.pedantic`), one warm-up round each, THREADS threads everywhere:
- `test_decode`: 32 new tokens after a 4-token prompt, so the time is almost all decoding; each model's
  roofline (decode tokens/s of its fastest round against bandwidth / bytes read per token, the bandwidth
  measured on a buffer of that many bytes; the DRAM figure beside it) is recorded;
- `test_answer`: a real telecom-qa question (prompt of ~200 tokens) and 16 new tokens, as in `bench`.
Each student runs right after the teacher in the same runtime at the same weight type, so an equal-bits
pair is measured under the same machine load. The timings (min and median per model) feed the ratios
and gates of test_gate.py (same session, same machine load).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from distill2edge.bench.measure import DEFAULT_TEMPLATE
from distill2edge.bench.roofline import fastest_decode_rate, model_roofline
from distill2edge.bench.runner_base import Generation
from distill2edge.data.qa import load_embedded
from distill2edge.data.tokenize import encode_for_generation

DECODE_TOKENS = 32
ANSWER_TOKENS = 16
TINY = ["tiny-torch", "tiny-onnx", "tiny-gguf"]
PAIRS = [  # (teacher, student) in the same runtime at the same weight type
    ("teacher-torch", "student-torch"),
    ("teacher-onnx", "student-onnx"),
    ("teacher-genai", "student-genai"),
    ("teacher-f16-gguf", "student-f16-gguf"),
    ("teacher-q8_0-gguf", "student-q8_0-gguf"),
]
EMBEDDED = [name for pair in PAIRS for name in pair]
ANSWERED = [name for name in EMBEDDED if name != "teacher-onnx"]  # its answers would only add CI time


def _record(benchmark: Any, timings: dict[str, dict[str, float]], key: str, runner: Any, tokens: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        timings[key] = {"min": stats.stats.min, "median": stats.stats.median}
        benchmark.extra_info.update(tokens_per_round=tokens, tokens_per_s_median=tokens / stats.stats.median)
    benchmark.extra_info.update(runtime=runner.runtime, threads=runner.threads)


@pytest.mark.parametrize("name", TINY + EMBEDDED)
def test_decode(name: str, benchmark: Any, runner_for: Callable[[str], Any], timings: dict[str, dict[str, float]],
                bandwidth: dict[str, Any], rooflines: dict[str, dict[str, Any]]) -> None:
    runner = runner_for(name)
    ids = runner.tokenizer("The base station sends", add_special_tokens=True)["input_ids"]
    rounds: list[Generation] = []

    def decode() -> Generation:
        rounds.append(runner.generate(ids, DECODE_TOKENS))
        return rounds[-1]

    out = benchmark.pedantic(decode, rounds=5, iterations=1, warmup_rounds=1)
    assert len(out.tokens) == DECODE_TOKENS
    _record(benchmark, timings, f"decode/{name}", runner, DECODE_TOKENS)
    facts = runner.facts()
    rate = fastest_decode_rate([(len(g.tokens), g.ttft_s, g.total_s) for g in rounds])
    roof = model_roofline(facts, len(ids) + DECODE_TOKENS / 2, rate, bandwidth, runner.threads)
    rooflines[name] = {"decode_tokens_per_s": rate, "dtype": facts.dtype, **roof}
    benchmark.extra_info.update(roofline=rooflines[name])


@pytest.mark.parametrize("name", TINY + ANSWERED)
def test_answer(name: str, benchmark: Any, runner_for: Callable[[str], Any], timings: dict[str, dict[str, float]]) -> None:
    runner = runner_for(name)
    question = load_embedded()[0]
    ids = encode_for_generation(runner.tokenizer, question, DEFAULT_TEMPLATE, 256, ANSWER_TOKENS)
    out = benchmark.pedantic(runner.generate, args=(ids, ANSWER_TOKENS), rounds=5, iterations=1, warmup_rounds=1)
    assert len(out.tokens) == ANSWER_TOKENS and 0 < out.ttft_s < out.total_s
    _record(benchmark, timings, f"answer/{name}", runner, ANSWER_TOKENS)
