"""Device profiles: shipped ones validate, NAME|FILE lookup, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill2edge.export import ExportError
from distill2edge.export.profiles import Gate, default_gate, list_profiles, load_profile, size_class


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
    genai = load_profile("cpu-onnx-genai")
    assert genai.onnx.genai and genai.onnx.int8 and not genai.onnx.int4 and genai.onnx.accuracy_level == 4


def test_file_profile_keeps_default_gates(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("format: gguf\ngguf:\n  quant: q6_k\n  gates:\n    q6_k: {max_kld: 0.5}\n")
    p = load_profile(str(f))
    assert p.gguf.gate_for("q6_k", 10**8) == (Gate(max_kld=0.5), "profile")
    assert p.gguf.gate_for("f32", 10**8)[0].max_rel_logit == 1e-4


def test_gates_follow_size_class() -> None:
    """Without a profile gate, a 7B model is held to ~2x llama.cpp's LLaMA-3-8B figures, a 135M one to its
    own measured class; the source of the thresholds is said."""
    p = load_profile(None)
    tiny, tiny_src = p.gguf.gate_for("q4_k_m", 134_515_008)
    large, large_src = p.gguf.gate_for("q4_k_m", 7_000_000_000)
    assert large.max_kld <= 2 * 0.031 < tiny.max_kld and large.min_same_top > tiny.min_same_top
    assert p.gguf.gate_for("q8_0", 7_000_000_000)[0].max_kld <= 3 * 0.0014
    assert tiny_src.startswith("size class tiny") and large_src.startswith("size class large")
    assert [size_class(n) for n in (10**8, 10**9, 10**10)] == ["tiny", "small", "large"]
    assert all(default_gate(q, 10**8)[0].max_kld for q in ("q4_0", "q4_1", "iq4_nl", "q5_0"))


def test_invalid_profiles(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("format: gguf\ngguf:\n  quant: q4_k_m\n  thread: 4\n")
    with pytest.raises(ExportError, match="thread"):
        load_profile(str(f))
    with pytest.raises(ExportError, match="raspberry-pi-5"):
        load_profile("no-such-profile")
