"""Device profiles: shipped ones validate, NAME|FILE lookup, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill2edge.export import ExportError
from distill2edge.export.profiles import list_profiles, load_profile


def test_shipped_profiles() -> None:
    names = set(list_profiles())
    assert {"cpu-laptop", "raspberry-pi-5", "jetson-orin", "android-onnx-int8"} <= names
    for name in names:
        load_profile(name)
    pi = load_profile("raspberry-pi-5")
    assert (pi.format, pi.gguf.quant, pi.gguf.threads) == ("gguf", "q4_k_m", 4)
    orin = load_profile("jetson-orin")
    assert (orin.onnx.dtype, orin.onnx.provider) == ("fp16", "CUDAExecutionProvider")
    android = load_profile("android-onnx-int8")
    assert android.onnx.int8 and android.onnx.int8_method == "weight_only"
    assert "dynamic" not in android.description and "MatMulNBits" in android.description


def test_file_profile_keeps_default_gates(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("format: gguf\ngguf:\n  quant: q6_k\n  gates:\n    q6_k: {max_kld: 0.5}\n")
    p = load_profile(str(f))
    assert p.gguf.gate_for("q6_k").max_kld == 0.5 and p.gguf.gate_for("f32").max_rel_logit == 1e-4


def test_invalid_profiles(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("format: gguf\ngguf:\n  quant: q4_k_m\n  thread: 4\n")
    with pytest.raises(ExportError, match="thread"):
        load_profile(str(f))
    with pytest.raises(ExportError, match="raspberry-pi-5"):
        load_profile("no-such-profile")
