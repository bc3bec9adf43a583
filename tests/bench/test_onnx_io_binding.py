"""The ONNX bench runner binds the KV cache with IO binding (optimum leaves it off on CPU) and answers as without."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("optimum.onnxruntime")

from distill2edge.bench.runners import OnnxRunner


def test_io_binding_on_cpu_same_tokens(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bound = OnnxRunner(tiny_onnx, threads=1)
    assert bound.model.use_io_binding is True and "io binding" in bound.runtime
    monkeypatch.setattr(OnnxRunner, "io_binding", False)
    plain = OnnxRunner(tiny_onnx, threads=1)
    assert plain.model.use_io_binding is False and "io binding" not in plain.runtime
    ids = [1, 7, 42, 3, 99, 5]
    assert bound.generate(ids, 10).tokens == plain.generate(ids, 10).tokens
