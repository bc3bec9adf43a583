"""Tiny exports of `tiny_llama_dir` for the runner tests: an F32 GGUF, an fp32 ONNX folder and an fp32
onnxruntime-genai folder (session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    from distill2edge.export.gguf import export_gguf

    out = tmp_path_factory.mktemp("tiny-gguf") / "tiny.f32.gguf"
    export_gguf(tiny_llama_dir, out, quant="f32", threads=2)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    pytest.importorskip("optimum.onnxruntime")
    from distill2edge.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("tiny-onnx") / "onnx"
    export_onnx(tiny_llama_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_genai(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    """`tiny_llama_dir` built by onnxruntime-genai's builder (fp32), gated in optimum and onnxruntime-genai."""
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("optimum.onnxruntime")
    from distill2edge.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("tiny-genai") / "genai"
    export_onnx(tiny_llama_dir, out, genai=True)
    return out
