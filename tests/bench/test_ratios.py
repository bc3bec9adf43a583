"""Equal-bits ratios, the CI gate's ratio check, the decode rate and roofline fraction the CI suite
records, and the same-bits teacher export of `run_bench(same_bits=True)` on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill2edge.bench import BenchModel, BenchSettings, ModelFacts, markdown_tables, roofline, run_bench
from distill2edge.bench.ratios import gguf_file_type, same_bits_ratios, time_ratio
from distill2edge.bench.roofline import fastest_decode_rate
from distill2edge.data.qa import load_jsonl


def _rec(name: str, role: str, fmt: str, wtype: str, tok_s: float | None, ms: float) -> dict[str, Any]:
    return {"name": name, "role": role, "format": fmt, "dtype": "x", "weight_type": wtype,
            "decode_tokens_per_s": tok_s, "answer_ms": {"mean": ms}}


def test_same_bits_pairs_only_same_runtime_and_type() -> None:
    records = [
        _rec("t-torch", "teacher", "torch", "float32", 10.0, 1000.0),
        _rec("t-q8", "teacher", "gguf", "q8_0", 40.0, 400.0),
        _rec("s-torch", "student", "torch", "float32", 25.0, 500.0),
        _rec("s-q8", "student", "gguf", "q8_0", 100.0, 160.0),
        _rec("s-f16", "student", "gguf", "f16", 80.0, 200.0),  # no F16 teacher: no ratio
    ]
    got = {r["model"]: r for r in same_bits_ratios(records)}
    assert set(got) == {"s-torch", "s-q8"}
    assert got["s-q8"]["teacher"] == "t-q8" and got["s-q8"]["decode_speedup"] == pytest.approx(2.5)
    assert got["s-q8"]["answer_speedup"] == pytest.approx(2.5)
    assert got["s-torch"]["teacher"] == "t-torch" and got["s-torch"]["decode_speedup"] == pytest.approx(2.5)
    assert got["s-torch"]["answer_speedup"] == pytest.approx(2.0)


def test_same_bits_prefers_the_named_teacher_and_tolerates_missing_decode() -> None:
    records = [
        _rec("a", "teacher", "gguf", "q8_0", 10.0, 100.0),
        _rec("b", "teacher", "gguf", "q8_0", 20.0, 100.0),
        _rec("s", "student", "gguf", "q8_0", None, 50.0),
    ]
    (only,) = same_bits_ratios(records, prefer="b")
    assert only["teacher"] == "b" and only["decode_speedup"] is None and only["answer_speedup"] == pytest.approx(2.0)
    assert same_bits_ratios(records)[0]["teacher"] == "a"


def test_time_ratio_passes_and_fails_on_the_fastest_rounds() -> None:
    timings = {"decode/s": {"min": 0.5, "median": 0.8}, "decode/t": {"min": 1.4, "median": 1.6}}
    ok = time_ratio(timings, "decode/s", "decode/t", floor=1.5, equal_bits=True)
    assert ok.ratio_min == pytest.approx(2.8) and ok.ratio_median == pytest.approx(2.0) and ok.passed
    # a student that is not really faster: 1.4 / 1.0 = 1.4x < 1.5x fails, and the message says so
    timings["decode/s"] = {"min": 1.0, "median": 1.1}
    bad = time_ratio(timings, "decode/s", "decode/t", floor=1.5, equal_bits=True)
    assert not bad.passed and bad.to_dict()["passed"] is False
    assert "only 1.40x as fast as decode/t (floor 1.5x" in bad.message()
    # recorded only: no floor, never fails
    assert time_ratio(timings, "decode/s", "decode/t", floor=None, equal_bits=False).passed
    with pytest.raises(KeyError, match="decode/missing"):
        time_ratio(timings, "decode/missing", "decode/t", floor=1.5, equal_bits=True)


def test_decode_rate_and_roofline_fraction_on_known_numbers() -> None:
    # 33 tokens: the first at 0.2 s (prefill), 32 more in 0.8 s -> 40 tok/s; a slower round is ignored
    rate = fastest_decode_rate([(33, 0.2, 1.0), (33, 0.3, 1.9), (1, 0.1, 0.1)])
    assert rate == pytest.approx(40.0)
    assert fastest_decode_rate([(1, 0.1, 0.1)]) is None
    # 100 MB of weights + 10 kB of KV per position x 1000 positions = 110 MB per token; 11 GB/s -> 100 tok/s
    facts = ModelFacts(params=0, file_bytes=0, weight_bytes_per_token=100_000_000, kv_bytes_per_position=10_000,
                       dtype="Q8_0")
    r = roofline(facts, 1000.0, rate, read_gb_s=11.0)
    assert r["bytes_per_token"] == pytest.approx(110_000_000)
    assert r["ceiling_tokens_per_s"] == pytest.approx(100.0)
    assert r["fraction"] == pytest.approx(0.4)


def test_run_bench_exports_the_teacher_at_the_students_gguf_type(
    tmp_path: Path, tiny_llama_dir: Path, tiny_gguf: Path, qa_jsonl: Path
) -> None:
    assert gguf_file_type(tiny_gguf) == "f32"
    settings = BenchSettings(max_length=96, max_new_tokens=4, warmup=0, batch_size=0, isolate=False)
    models = [BenchModel(tiny_llama_dir, "teacher", name="t"), BenchModel(tiny_gguf, "student", name="s")]
    result = run_bench(models, load_jsonl(qa_jsonl)[:2], tmp_path / "b", settings=settings, same_bits=True,
                       bandwidth={"read_gb_s": 1.0, "copy_gb_s": 1.0}, log=lambda _: None)
    names = [m["name"] for m in result["models"]]
    assert names == ["t", "s", "t (f32 gguf)"]
    added = result["models"][2]
    assert added["role"] == "teacher" and added["format"] == "gguf" and added["weight_type"] == "f32"
    assert Path(added["path"]).parent == tmp_path / "b" / "same_bits"
    (row,) = result["same_bits"]
    assert row["model"] == "s" and row["teacher"] == "t (f32 gguf)" and row["decode_speedup"] > 0
    assert "Equal bits" in markdown_tables(result) and "| s | t (f32 gguf) | gguf (f32) |" in markdown_tables(result)
