"""The embedded SmolLM2-135M-Instruct and its 8-layer student exported to every format (minutes)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from distill2edge.export.gguf import export_gguf
from distill2edge.runtimes.llamacpp import open_gguf

# A student cut from 30 to 8 layers and not yet distilled is far more fragile under quantization than a
# trained model (measured: Q8_0 mean KLD 0.044, Q4_K_M 0.77, ONNX int8 0.8, against 0.009 / 0.10 for the
# teacher), so its quantized gates here only catch broken files; the teacher runs the default gates.
STUDENT_PROFILE = """format: gguf
gguf:
  gates:
    q8_0: {max_kld: 0.2, min_same_top: 0.7}
    q6_k: {max_kld: 0.5, min_same_top: 0.5}
    q4_k_m: {max_kld: 2.0, min_same_top: 0.3}
onnx:
  int8_gate: {max_kld: 2.0, min_same_top: 0.3}
"""


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    models = pytest.importorskip("distill2edge.models")
    teacher = models.ensure_embedded("smollm2-135m-instruct", progress=False)
    student = models.init_student_from_teacher(
        str(teacher), tmp_path_factory.mktemp("s") / "student", num_layers=8
    )
    assert json.loads((teacher / "config.json").read_text())["rope_theta"] == 100000.0
    return teacher, student


@pytest.mark.slow
def test_student_every_gguf_type(smollm2: tuple[Path, Path], tmp_path: Path) -> None:
    _, student = smollm2
    prof = tmp_path / "student.yaml"
    prof.write_text(STUDENT_PROFILE)
    sizes = {}
    # The float types and the ones the profile above gates. The untrained 8-layer cut has nearly flat logits,
    # so the legacy 4/5-bit types (q4_0, q4_1, iq4_nl, q5_0, q5_1: mean KLD above 1 here) fail any gate a
    # real model should meet; their table and gates are measured on a trained student (issue 16's note).
    for quant in ("f32", "f16", "bf16", "q8_0", "q6_k", "q4_k_m"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = export_gguf(student, tmp_path / quant / "student.gguf", quant=quant, profile=str(prof))
        sizes[quant] = rec["effective_bpw"]
        f32 = rec["gates"]["f32"]
        # Same top token at all but near-ties: llama.cpp's f32 kernels and torch's round differently per CPU,
        # and on the CI machine of 2026-12-04 one of ~814 positions (a near-tie) flipped.
        assert f32["max_abs_logit_diff"] <= 1e-4 * f32["logit_scale"] and f32["same_top_token"] >= 0.995
        if quant in ("q6_k", "q4_k_m"):  # hidden 576 is not a multiple of 256: llama.cpp falls back
            assert rec["fallback"] and any("K-quants need rows" in str(w.message) for w in caught)
        assert (tmp_path / quant / "student.Modelfile").read_text().count("<|im_start|>") >= 1
    assert sizes["f16"] == pytest.approx(sizes["bf16"], abs=0.1)
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"] > sizes["q4_k_m"]
    assert sizes["q4_k_m"] > 6.0  # the fallback: barely smaller than Q8_0's 8.5


@pytest.mark.slow
def test_teacher_default_gates_and_tokenizer(smollm2: tuple[Path, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    teacher, _ = smollm2
    for quant in ("q8_0", "q4_k_m"):
        assert export_gguf(teacher, tmp_path / f"t.{quant}.gguf", quant=quant)["passed"]
    tok = AutoTokenizer.from_pretrained(teacher)
    llm = open_gguf(tmp_path / "t.q8_0.gguf", vocab_only=True)
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("export_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("export_conftest", mod)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    strings = mod.tokenizer_test_strings()
    bad = [s for s in strings if tok(s)["input_ids"] != llm.tokenize(s.encode(), add_bos=True, special=True)]
    llm.close()
    assert not bad, bad[:3]


@pytest.mark.slow
def test_student_onnx_fp32_and_int8(smollm2: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("optimum.onnxruntime")
    from distill2edge.export.onnx import export_onnx

    _, student = smollm2
    prof = tmp_path / "student.yaml"
    prof.write_text(STUDENT_PROFILE)
    rec = export_onnx(student, tmp_path / "onnx", int8=True, profile=str(prof))
    fp32 = rec["gates"]["fp32"]
    assert fp32["max_abs_logit_diff"] <= 1e-4 * fp32["logit_scale"] and fp32["greedy_identical"]
