"""Student-over-teacher speed ratios: which teacher a student is compared with at *equal bits* (same
runtime, same weight type), the ratios themselves, and the floor check CI gates on.

A student GGUF against the teacher in torch fp32 mixes three effects (fewer layers, fewer bytes per
weight, a faster runtime) and flatters the distillation; against the teacher exported to the same GGUF
type and run in the same llama.cpp, only the model's own size is left. Both are reported; CI gates on
the equal-bits one (bench/test_gate.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def gguf_file_type(path: Path) -> str:
    """The GGUF's `general.file_type` as the exporter spells it (`f16`, `q8_0`, `q4_k_m`, `f32`), else
    the dominant tensor type in lower case."""
    import gguf

    from distill2edge.models.gguf_tokenizer import gguf_field

    reader = gguf.GGUFReader(path)
    ftype = gguf_field(reader, "general.file_type", None)
    known = {int(t) for t in gguf.LlamaFileType}
    if ftype is not None and int(ftype) in known:
        name = gguf.LlamaFileType(int(ftype)).name
        return name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()
    sizes: dict[str, int] = {}
    for t in reader.tensors:
        sizes[t.tensor_type.name] = sizes.get(t.tensor_type.name, 0) + int(t.n_bytes)
    return max(sizes, key=lambda k: sizes[k]).lower()


def weight_type(record: Mapping[str, Any]) -> str:
    """What "same bits" compares in a bench record: the GGUF file type for llama.cpp (recorded as
    `weight_type` by run_bench), else the weights' dtype (`float32`, `float16`, ONNX `float32`...)."""
    return str(record.get("weight_type") or record["dtype"])


def same_bits_teacher(student: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                      prefer: str | None = None) -> Mapping[str, Any] | None:
    """The teacher record in the same format and weight type as `student` (`prefer` names the one to
    take when several match, e.g. the reference model), or None."""
    matches = [r for r in records if r["role"] == "teacher" and r["format"] == student["format"]
               and weight_type(r) == weight_type(student)]
    return next((r for r in matches if r["name"] == prefer), matches[0] if matches else None)


def same_bits_ratios(records: Sequence[Mapping[str, Any]], prefer: str | None = None) -> list[dict[str, Any]]:
    """For every non-teacher record with an equal-bits teacher: its decode tokens/s over the teacher's and
    the teacher's ms per answer over its own (both > 1 when the student is faster)."""
    out = []
    for s in records:
        if s["role"] == "teacher":
            continue
        t = same_bits_teacher(s, records, prefer)
        if t is None:
            continue
        dec_s, dec_t = s.get("decode_tokens_per_s"), t.get("decode_tokens_per_s")
        out.append({
            "model": s["name"], "teacher": t["name"], "format": s["format"], "weight_type": weight_type(s),
            "decode_speedup": dec_s / dec_t if dec_s and dec_t else None,
            "answer_speedup": t["answer_ms"]["mean"] / s["answer_ms"]["mean"],
        })
    return out


@dataclass(frozen=True)
class RatioCheck:
    """One ratio between two timed benchmarks of a session: `reference` time / `fast` time, on the fastest
    rounds (`ratio_min`, what a floor judges) and on the medians; `floor` None: recorded, not gated."""

    fast: str
    reference: str
    ratio_min: float
    ratio_median: float
    floor: float | None
    equal_bits: bool

    @property
    def passed(self) -> bool:
        return self.floor is None or self.ratio_min >= self.floor

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def message(self) -> str:
        return (f"{self.fast} is only {self.ratio_min:.2f}x as fast as {self.reference} (floor {self.floor}x; "
                f"median ratio {self.ratio_median:.2f}x)")


def time_ratio(timings: Mapping[str, Mapping[str, float]], fast: str, reference: str, floor: float | None,
               equal_bits: bool) -> RatioCheck:
    """The ratio of two benchmarks' seconds per round (same tokens per round on both sides, so it is
    also the tokens/s ratio). Raises KeyError naming what was not measured."""
    missing = [k for k in (fast, reference) if k not in timings]
    if missing:
        raise KeyError(f"{missing} not measured in this session")
    return RatioCheck(fast, reference, timings[reference]["min"] / timings[fast]["min"],
                      timings[reference]["median"] / timings[fast]["median"], floor, equal_bits)
