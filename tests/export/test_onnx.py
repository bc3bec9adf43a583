"""ONNX export through optimum: parity with torch, int8 gate, nothing left behind on failure."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("optimum.onnxruntime")

from distill2edge.cli.export_cmd import add_export_parser, run_export
from distill2edge.export.onnx import export_onnx


@pytest.mark.parametrize(("fixture", "method"), [("tiny_llama", "weight_only"), ("tiny_mistral", "dynamic")])
def test_fp32_and_int8_match_torch(
    fixture: str, method: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import torch
    from huggingface_hub import ModelCard
    from optimum.onnxruntime import ORTModelForCausalLM

    model = request.getfixturevalue(fixture)
    rec = export_onnx(model, tmp_path / "onnx", int8=True, int8_method=method)
    fp32, int8 = rec["gates"]["fp32"], rec["gates"]["int8"]
    assert fp32["max_abs_logit_diff"] <= 1e-4 and fp32["greedy_identical"] is True
    assert int8["mean_kld"] < 0.01 and int8["passed"] and rec["dtype"] == f"int8 ({method})"
    saved = json.loads((tmp_path / "onnx" / "parity.json").read_text())
    assert saved["profile"]["onnx"]["int8"] is True and saved["profile"]["onnx"]["int8_method"] == method
    assert set(saved["sha256"]) == {p.name for p in (tmp_path / "onnx").glob("*.onnx*")}
    card = ModelCard.load(tmp_path / "onnx" / "README.md").data.to_dict()
    assert card["library_name"] == "onnx" and "onnx" in card["tags"] and card["pipeline_tag"] == "text-generation"
    if method == "weight_only":  # the tied head untied and quantized, the embedding Gather int8 too
        import onnx
        from onnx import numpy_helper

        assert rec["tied_int8_heads"] == 1 and rec["int8_gathers"] == 1 and rec["untied_heads"] == 0
        graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
        floats = [t for t in graph.initializer if numpy_helper.to_array(t).dtype.kind == "f" and len(t.dims) == 2]
        fp32_mats = [t.name for t in floats if not t.name.endswith("scales")]  # per-block scales stay float
        assert fp32_mats == [] and {n.op_type for n in graph.node} >= {"MatMulNBits", "GatherBlockQuantized"}
    ort = ORTModelForCausalLM.from_pretrained(tmp_path / "onnx")
    x = torch.tensor([[1, 2, 3]])
    assert ort(input_ids=x, attention_mask=torch.ones_like(x)).logits.shape[:2] == (1, 3)


def test_forced_failure_leaves_no_folder(tiny_llama: Path, tmp_path: Path) -> None:
    prof = tmp_path / "strict.yaml"
    prof.write_text("format: onnx\nonnx:\n  fp32_gate: {max_rel_logit: 1.0e-12}\n")
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["export", "onnx", str(tiny_llama), "--out", str(tmp_path / "o"), "--profile", str(prof)]
    )
    assert run_export(args) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strict.yaml"]  # no folder, no temp left
