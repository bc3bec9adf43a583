"""Equal-bits teachers for a benchmark: when a student runs as GGUF and a teacher only as a Hugging Face
folder, export the teacher to the student's GGUF type (through `distill2edge.export`, parity-gated) so
that both are timed in the same llama.cpp at the same quantization (see ratios.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from distill2edge.bench.ratios import gguf_file_type
from distill2edge.bench.spec import BenchModel


def _base_name(model: BenchModel) -> str:
    return model.name.removesuffix(f" ({model.format})")


def add_same_bits_teachers(
    models: Sequence[BenchModel], out_dir: Path, threads: int, log: Callable[[str], None] = print,
) -> list[BenchModel]:
    """`models` plus, for each torch teacher and each GGUF type among the students that no teacher GGUF
    of that type already covers, the teacher exported to that type under `out_dir` (reused when already
    there), role `teacher`, named `<teacher> (<type> gguf)`. An export whose parity gate fails is logged
    and left out; the benchmark goes on without that row."""
    from distill2edge.export.common import ParityError
    from distill2edge.export.gguf import GGUF_TYPES, export_gguf

    resolved = [m.resolved() for m in models]
    student_types = dict.fromkeys(
        gguf_file_type(m.path) for m in resolved if m.role != "teacher" and m.format == "gguf")
    teacher_types = {gguf_file_type(m.path) for m in resolved if m.role == "teacher" and m.format == "gguf"}
    wanted = [q for q in student_types if q not in teacher_types and q in GGUF_TYPES]
    added: list[BenchModel] = []
    teachers = [m for m in resolved if m.role == "teacher" and m.format == "torch"]
    for i, teacher in enumerate(teachers):
        for quant in wanted:
            out = Path(out_dir) / f"{i}-{_slug(_base_name(teacher))}.{quant}.gguf"
            if not out.is_file():
                log(f"[bench] exporting teacher {teacher.name} to GGUF {quant} for the equal-bits comparison")
                try:
                    export_gguf(teacher.path, out, quant=quant, threads=threads)
                except ParityError as exc:
                    log(f"[bench]   skipped: {exc}")
                    continue
            added.append(BenchModel(out, "teacher", "gguf", f"{_base_name(teacher)} ({quant} gguf)"))
    return [*resolved, *added]


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "teacher"
