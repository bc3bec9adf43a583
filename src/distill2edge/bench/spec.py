"""What to benchmark: a model path with its runtime format and a role label.

The format follows from the path: a `.gguf` file runs in llama.cpp, a folder with `genai_config.json` in
onnxruntime-genai, one with only `model.onnx` in onnxruntime (optimum), a Hugging Face folder (config.json + weights) in torch. `embedded:NAME` is the
HF folder of an embedded model. On the command line a model may carry its role: `teacher=PATH`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FORMATS: tuple[str, ...] = ("torch", "onnx", "onnx-genai", "gguf")
ROLES: tuple[str, ...] = ("teacher", "student", "baseline", "model")

_ROLE_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.+)$")


class BenchError(ValueError):
    """A model or data input the benchmark cannot use; the message names the path or field."""


@dataclass(frozen=True)
class BenchModel:
    """One model to benchmark. `name` labels it in tables (default: folder or file name + format)."""

    path: Path
    role: str = "model"
    format: str = ""
    name: str = ""

    def resolved(self) -> BenchModel:
        """A copy with `format` detected and `name` filled in (raises BenchError on a bad path)."""
        fmt = self.format or detect_format(self.path)
        if fmt not in FORMATS:
            raise BenchError(f"{self.path}: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        name = self.name or f"{self.path.stem if fmt == 'gguf' else self.path.name} ({fmt})"
        return BenchModel(Path(self.path), self.role, fmt, name)


def detect_format(path: Path) -> str:
    """`gguf` for a GGUF file, `onnx-genai` for a folder with genai_config.json + model.onnx (`export onnx
    --genai`), `onnx` for a folder with model.onnx, `torch` for a HF folder."""
    path = Path(path)
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(4) == b"GGUF":
                return "gguf"
        raise BenchError(f"{path}: a file that is not GGUF; give a .gguf file, an ONNX or a Hugging Face folder")
    if not path.is_dir():
        raise BenchError(f"{path}: no such file or folder")
    if (path / "model.onnx").is_file():
        if not (path / "config.json").is_file():
            raise BenchError(f"{path}: model.onnx without config.json (export with `distill2edge export onnx`)")
        return "onnx-genai" if (path / "genai_config.json").is_file() else "onnx"
    if (path / "config.json").is_file() and (
        any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    ):
        return "torch"
    raise BenchError(f"{path}: neither a Hugging Face folder (config.json + weights) nor an ONNX folder")


def check_loadable(model: BenchModel) -> None:
    """Read what loading `model` will read first (its config through transformers, the headers of its
    weights), so a broken model fails in a second, before the bandwidth measurement and the other models."""
    import json
    import struct

    path = Path(model.path)
    if model.format == "gguf":
        if path.stat().st_size < 24:
            raise BenchError(f"{path}: truncated GGUF file ({path.stat().st_size} bytes)")
        return
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - transformers raises several types for one meaning
        raise BenchError(f"{path}: config.json cannot be loaded: {type(e).__name__}: {e}") from None
    if model.format in ("onnx", "onnx-genai"):
        if (path / "model.onnx").stat().st_size == 0:
            raise BenchError(f"{path / 'model.onnx'}: empty file")
        return
    for weights in sorted(path.glob("*.safetensors")):
        try:
            with weights.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                if size > weights.stat().st_size:
                    raise ValueError("header longer than the file")
                json.loads(fh.read(size))
        except (struct.error, ValueError, MemoryError, OverflowError):
            raise BenchError(f"{weights}: not a readable safetensors file (truncated or corrupt header)") from None


def resolve_path(ref: str) -> Path:
    """`embedded:NAME` -> the embedded model's HF folder (prepared on first use); else the path itself."""
    if ref.startswith("embedded:"):
        from distill2edge.models.embedded import ensure_embedded

        return ensure_embedded(ref.removeprefix("embedded:"), progress=False)
    return Path(ref).expanduser()


def parse_model_spec(spec: str, default_role: str = "model") -> BenchModel:
    """`PATH`, `ROLE=PATH` (e.g. `teacher=runs/x/teacher`) -> BenchModel with format detected."""
    role = default_role
    m = _ROLE_PREFIX.match(spec)
    if m and not Path(spec).exists():
        role, spec = m.group(1), m.group(2)
    return BenchModel(resolve_path(spec), role=role).resolved()
