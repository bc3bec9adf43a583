"""onnxruntime's transformer optimizer on an exported decoder: fused RMSNorm, Skip-RMSNorm, rotary embedding.

    optimize_decoder(folder, config)   # rewrites folder/model.onnx in place; returns what was fused

`onnxruntime.transformers.optimizer.optimize_model` rewrites subgraphs into com.microsoft fused ops by
pattern matching (Python fusions only, `opt_level=0`: the graph stays portable, onnxruntime's own graph
optimizations still run when a session loads it). The model type comes from optimum's table
(llama, mistral -> `gpt2`) or onnxruntime's own (`qwen3`). On optimum's llama export (onnxruntime 1.32)
the RMSNorms, the residual adds before them and the rotary embeddings fuse; the attention does not
(`Attention`/`MultiHeadAttention`/`GroupQueryAttention`: 0 - the GQA pattern of the torchscript export,
repeat_kv and the Where-built causal mask, is not one onnxruntime's fusions match). The record says
which operators were fused and how many, and names those that were not.

The RotaryEmbedding fusion stores cos/sin caches for 131072 positions (33 MB at head size 64, more than a
4-bit 8-layer SmolLM2 student's weights); they are cut to the model's `max_position_embeddings` (at least
`min_positions`, what the gate runs). The op refuses positions past its cache ("Updating cos_cache and
sin_cache in RotaryEmbedding is not currently supported"), so the optimized model has a hard context
limit of that many positions, recorded as `rotary_cache_positions`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from distill2edge.export.common import ExportError

#: Fused operators reported by the optimizer that matter for a decoder; each is recorded with its count.
DECODER_FUSIONS = (
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "RotaryEmbedding",
    "Attention",
    "MultiHeadAttention",
    "GroupQueryAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
)


def ort_model_type(config: dict[str, Any]) -> str:
    """onnxruntime's optimizer model type for a HF config: its own if it has one (`qwen3`), else optimum's
    mapping (llama, mistral, granite... -> `gpt2`). Raises ExportError for an architecture neither knows."""
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    hf_type = str(config.get("model_type", ""))
    if hf_type in MODEL_TYPES:
        return hf_type
    try:
        from optimum.onnxruntime.utils import ORTConfigManager

        return str(ORTConfigManager.get_model_ort_type(hf_type))
    except (ImportError, KeyError):
        raise ExportError(
            f"--optimize: onnxruntime's transformer optimizer has no model type for {hf_type!r} "
            f"(onnxruntime knows {', '.join(MODEL_TYPES)}; optimum maps llama, mistral, granite, gpt2 and more)"
        ) from None


def check_optimizable(model_dir: Path) -> str:
    """The optimizer model type for `model_dir` (checked before any model is loaded)."""
    return ort_model_type(json.loads((model_dir / "config.json").read_text()))


def _trim_rotary_caches(model: Any, max_positions: int) -> int:
    """Cut the fused RotaryEmbedding's cos/sin caches to `max_positions` rows; returns the rows kept (0 if
    there was nothing to cut)."""
    from onnx import numpy_helper

    rotary_inputs = {x for n in model.graph.node if n.op_type == "RotaryEmbedding" for x in n.input[2:4]}
    kept = 0
    for i, t in enumerate(model.graph.initializer):
        if t.name not in rotary_inputs or len(t.dims) != 2 or t.dims[0] <= max_positions:
            continue
        arr = numpy_helper.to_array(t)[:max_positions]
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), t.name))
        kept = max_positions
    return kept


def optimize_decoder(folder: Path, config: dict[str, Any], big: bool, min_positions: int = 0) -> dict[str, Any]:
    """Fuse folder/model.onnx with onnxruntime's transformer optimizer, in place (the un-optimized graph and
    its data are removed). Returns the record: model type, fused operator counts, what did not fuse."""
    import onnxruntime
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = ort_model_type(config)
    src = folder / "model.onnx"
    try:
        opt = optimize_model(
            str(src),
            model_type=model_type,
            num_heads=int(config.get("num_attention_heads", 0)),
            hidden_size=int(config.get("hidden_size", 0)),
            opt_level=0,
            use_gpu=False,
        )
        stats = {k: int(v) for k, v in (opt.get_fused_operator_statistics() or {}).items()}
    except Exception as exc:
        raise ExportError(f"--optimize: onnxruntime's optimizer failed: {type(exc).__name__}: {exc}") from exc
    model = opt.model
    counts = {op: sum(n.op_type == op for n in model.graph.node) for op in DECODER_FUSIONS}
    max_positions = int(config.get("max_position_embeddings", 0) or 2**31)
    rotary_rows = _trim_rotary_caches(model, max(max_positions, min_positions))
    tmp = folder / "model.optimized.onnx"
    opt.save_model_to_file(str(tmp), use_external_data_format=big, all_tensors_to_one_file=True)
    for old in folder.glob("model.onnx*"):
        old.unlink()
    _rename_graph(tmp, src, big)
    fused = {op: n for op, n in counts.items() if n}
    attention = [op for op in ("Attention", "MultiHeadAttention", "GroupQueryAttention") if op in fused]
    return {
        "tool": f"onnxruntime.transformers.optimizer {onnxruntime.__version__}",
        "model_type": model_type,
        "opt_level": 0,
        "fused_operators": fused,
        "optimizer_statistics": {k: v for k, v in stats.items() if v},
        "not_fused": [] if attention else ["attention: no Attention, MultiHeadAttention or GroupQueryAttention"],
        "rotary_cache_positions": rotary_rows or None,
    }


def _rename_graph(tmp: Path, dst: Path, big: bool) -> None:
    """Move the optimized graph to `dst`; with external data, rewrite it so the data file is `dst`_data."""
    import onnx

    if not big:
        tmp.rename(dst)
        return
    model = onnx.load(str(tmp))  # loads the external data next to tmp
    onnx.save_model(model, str(dst), save_as_external_data=True, location=f"{dst.name}_data")
    for f in tmp.parent.glob(f"{tmp.name}*"):
        f.unlink()
