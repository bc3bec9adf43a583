"""`export onnx --genai`: onnxruntime-genai's builder, gated against torch in onnxruntime-genai."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_genai")
pytest.importorskip("optimum.onnxruntime")

from distill2edge.export import ExportError
from distill2edge.export.onnx import export_onnx


def _ops(folder: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node}


def _rotary_cos_error(folder: Path, src: Path) -> float:
    """Max |cos_cache - cos| over the builder's rotary table (positions, dim / 2), against float64 cos of the
    model's float32 angles."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    cfg = json.loads((src / "config.json").read_text())
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    init = next(i for i in graph.initializer if i.name == "cos_cache")
    onnx.external_data_helper.load_external_data_for_tensor(init, str(folder))
    cache = numpy_helper.to_array(init).astype(np.float64)
    # the angles rounded to float32 as torch forms them (their rounding alone is ~4e-6 at position 255)
    inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, dim, 2).float() / dim)
    angles = torch.outer(torch.arange(cache.shape[0]).float(), inv_freq)
    want = np.cos(angles.double().numpy())
    return float(np.abs(cache - want).max())


def test_fp32_matches_torch_in_genai_and_generates_in_optimum(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM

    out = tmp_path / "genai"
    rec = export_onnx(tiny_llama, out, genai=True)
    assert set(rec["gates"]) == {"fp32"} and rec["variant"] == "genai+fp32"
    g = rec["gates"]["fp32"]
    assert g["runtime"].startswith("onnxruntime-genai 0.15") and g["passed"] and g["greedy_identical"] is True
    assert g["max_abs_logit_diff"] <= 1e-4 * max(g["logit_scale"], 1.0) and g["n_positions"] > 200
    assert rec["genai"]["precision"] == "fp32" and rec["genai"]["prune_lm_head"] is True
    assert (out / "genai_config.json").is_file() and (out / "parity.json").is_file()
    assert {"GroupQueryAttention", "SkipSimplifiedLayerNormalization"} <= _ops(out)
    assert _rotary_cos_error(out, tiny_llama) < 1e-6  # the builder ran on one thread (see build_genai)
    # the same folder generates in optimum too, as torch does
    x = torch.tensor([[1, 5, 9, 40, 2, 17]])
    kw = {"attention_mask": torch.ones_like(x), "max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False}
    want = AutoModelForCausalLM.from_pretrained(tiny_llama).generate(x, **kw)
    got = ORTModelForCausalLM.from_pretrained(out, use_cache=True).generate(x, **kw)
    assert got.tolist() == want.tolist()


def test_int4_is_matmulnbits_gated_at_q4_0(tiny_llama: Path, tmp_path: Path) -> None:
    rec = export_onnx(tiny_llama, tmp_path / "q4", genai=True, int4=True)
    assert set(rec["gates"]) == {"int4"} and rec["dtype"] == "int4 (weight_only)"
    for g in rec["gates"].values():  # no profile gate for int4: GGUF q4_0's for the size class
        assert g["passed"] and g["gate_source"].startswith("size class") and g["greedy_identical"] is None
        assert 0 < g["mean_kld"] <= g["thresholds"]["mean_kld"]
    assert rec["genai"] == {**rec["genai"], "precision": "int4", "block_size": 32, "accuracy_level": 4}
    assert rec["gates"]["int4"]["runtime"].startswith("onnxruntime-genai")
    assert "MatMulNBits" in _ops(tmp_path / "q4") and "MatMul" not in _ops(tmp_path / "q4")
    saved = json.loads((tmp_path / "q4" / "parity.json").read_text())
    assert saved["profile"]["onnx"]["genai"] is True and saved["profile"]["onnx"]["int4"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimize": True}, "drop --optimize"),
        ({"int8": True, "int8_method": "dynamic"}, "weight-only"),
    ],
)
def test_refuses_what_the_builder_does_not_do(tiny_llama: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export_onnx(tiny_llama, tmp_path / "x", genai=True, **kwargs)
    assert not (tmp_path / "x").exists()


def test_builder_failure_names_the_folder_and_leaves_nothing(tiny_llama: Path, tmp_path: Path) -> None:
    from distill2edge.export.profiles import Profile

    prof = Profile(name="bad", format="onnx")
    prof = prof.model_copy(update={"onnx": prof.onnx.model_copy(update={"genai": True, "genai_options": {"algo_config": "no_such_method"}})})
    with pytest.raises(ExportError, match="onnxruntime-genai's builder could not build"):
        export_onnx(tiny_llama, tmp_path / "x", profile=prof)
    assert list(tmp_path.iterdir()) == []
