"""ONNX export options: --optimize (onnxruntime's transformer optimizer), --int4 (MatMulNBits 4-bit), the int8
kernel choice (accuracy_level 4, no unpacked fallback), and the combinations refused."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("optimum.onnxruntime")

from distill2edge.cli.export_cmd import add_export_parser, run_export
from distill2edge.export.common import ExportError
from distill2edge.export.onnx import export_onnx

FALLBACK = "Falling back to using unpacked compute mode"


def _ops(folder: Path) -> Counter[str]:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node)


def _generates(folder: Path) -> list[int]:
    """Greedy tokens from ORTModelForCausalLM (KV cache on), as a deployed model would run."""
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    ort = ORTModelForCausalLM.from_pretrained(folder, use_cache=True)
    x = torch.tensor([[1, 5, 9, 14]])
    y = ort.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6, min_new_tokens=6, do_sample=False)
    return y[0, 4:].tolist()


def _unpacked_fallbacks(folder: Path, capfd: pytest.CaptureFixture[str]) -> int:
    """How many MatMulNBits calls onnxruntime ran de-quantized (its INFO log line), on one forward pass."""
    import numpy as np
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 0
    opts.intra_op_num_threads = 1
    sess = onnxruntime.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        if inp.name.startswith("past_key_values"):
            feeds[inp.name] = np.zeros([1, inp.shape[1], 0, inp.shape[3]], dtype=np.float32)
        else:
            feeds[inp.name] = np.array([[0, 1, 2]] if inp.name == "position_ids" else [[1, 1, 1]], dtype=np.int64)
    capfd.readouterr()
    sess.run(None, feeds)
    return capfd.readouterr().err.count(FALLBACK)


def test_optimize_fuses_norms_and_rotary_and_keeps_parity(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    rec = export_onnx(tiny_llama, out, optimize=True)
    assert rec["variant"] == "fp32+optimize" and rec["dtype"] == "fp32"
    opt = rec["gates"]["fp32_optimized"]
    assert opt["passed"] and opt["greedy_identical"] is True and opt["max_abs_logit_diff"] <= 1e-4
    fused = rec["optimization"]["fused_operators"]  # 2 layers: 2 RMSNorms each + the final one, q and k rotary
    assert fused == {"SimplifiedLayerNormalization": 1, "SkipSimplifiedLayerNormalization": 4, "RotaryEmbedding": 4}
    assert rec["optimization"]["model_type"] == "gpt2" and rec["optimization"]["not_fused"]
    ops = _ops(out)
    assert ops["RotaryEmbedding"] == 4 and ops["SkipSimplifiedLayerNormalization"] == 4 and ops["Pow"] == 0
    assert sorted(p.name for p in out.glob("*.onnx*")) == ["model.onnx"]  # the un-optimized graph is gone
    saved = json.loads((out / "parity.json").read_text())
    assert saved["profile"]["onnx"]["optimize"] is True and saved["optimization"]["fused_operators"] == fused
    assert len(_generates(out)) == 6


def test_int4_matmulnbits_gated_with_the_size_class_gate(
    tiny_llama: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import onnx
    from onnx import helper

    out = tmp_path / "onnx"
    rec = export_onnx(tiny_llama, out, int4=True)
    assert rec["variant"] == "fp32+int4-b32" and rec["dtype"] == "int4 (weight_only)"
    g = rec["gates"]["int4"]
    assert g["passed"] and g["gate_source"].startswith("size class tiny")
    assert g["thresholds"] == {"mean_kld": 0.9, "same_top_token": 0.45}  # GGUF q4_0's tiny gate
    assert rec["bits"] == 4 and rec["block_size"] == 32 and rec["tied_int8_heads"] == 1
    nodes = [n for n in onnx.load(str(out / "model.onnx")).graph.node if n.op_type == "MatMulNBits"]
    bits = Counter(helper.get_attribute_value(next(a for a in n.attribute if a.name == "bits")) for n in nodes)
    assert bits == {4: 14, 8: 1}  # 7 MatMuls per layer at 4 bits, the tied head int8
    assert json.loads((out / "parity.json").read_text())["profile"]["onnx"]["int4"] is True
    assert len(_generates(out)) == 6
    assert _unpacked_fallbacks(out, capfd) == 0


def test_optimize_then_int8_runs_packed_kernels(
    tiny_llama: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """int8 MatMulNBits at accuracy_level 4 run onnxruntime's packed kernel; at level 0 every one of them
    de-quantizes its weight on each call (the 5x slower int8 decode)."""
    out = tmp_path / "onnx"
    rec = export_onnx(tiny_llama, out, int8=True, optimize=True)
    assert rec["variant"] == "fp32+optimize+int8" and set(rec["gates"]) == {"fp32", "fp32_optimized", "int8"}
    assert all(g["passed"] for g in rec["gates"].values()) and rec["accuracy_level"] == 4
    assert _ops(out)["RotaryEmbedding"] == 4 and rec["matmulnbits"] == 15
    assert _unpacked_fallbacks(out, capfd) == 0
    assert len(_generates(out)) == 6
    import onnx

    model = onnx.load(str(out / "model.onnx"))  # the same graph at level 0 (what accuracy_level: 0 exports)
    for node in model.graph.node:
        for attr in [a for a in node.attribute if a.name == "accuracy_level"]:
            node.attribute.remove(attr)
    (tmp_path / "level0").mkdir()
    onnx.save(model, str(tmp_path / "level0" / "model.onnx"))
    assert _unpacked_fallbacks(tmp_path / "level0", capfd) == 15


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"int8": True, "int4": True}, "int8 and int4 exclude each other"),
        ({"int4": True, "int8_method": "dynamic"}, "--int8-method applies to int8 only"),
        ({"optimize": True, "int8": True, "int8_method": "dynamic"}, "optimize does not combine"),
    ],
)
def test_bad_combinations_refused_before_any_work(
    kwargs: dict, message: str, tiny_llama: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=message):
        export_onnx(tiny_llama, tmp_path / "o", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_optimize_refuses_an_architecture_the_optimizer_does_not_know(tiny_qwen2: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no model type for 'qwen2'"):
        export_onnx(tiny_qwen2, tmp_path / "o", optimize=True)


def test_fp16_profile_refuses_optimize_and_int4(tiny_llama: Path, tmp_path: Path) -> None:
    prof = tmp_path / "gpu.yaml"
    prof.write_text("format: onnx\nonnx:\n  dtype: fp16\n  provider: CUDAExecutionProvider\n")
    for kw in ({"optimize": True}, {"int4": True}):
        with pytest.raises(ExportError, match="needs dtype fp32"):
            export_onnx(tiny_llama, tmp_path / "o", profile=str(prof), **kw)


def test_cli_int8_with_int4_exits_2(tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "onnx", str(tiny_llama), "--out", str(tmp_path / "o"), "--int8", "--int4"])
    assert args.optimize is None and args.int4 is True
    assert run_export(args) == 2
    assert "int8 and int4 exclude each other" in capsys.readouterr().err
