"""int8 weights for an exported ONNX decoder, the tied head and the embedding included.

optimum exports a tied `lm_head` as `MatMul(hidden, Transpose(embed_tokens))`: its weight is not an
initializer, so onnxruntime's weight-only quantizer skips it, and the embedding `Gather` is never
quantized either; half of a small model's parameters then stay fp32. `untie_head` gives the head its own
initializer (the transposed embedding) so MatMulNBits quantizes it like every other MatMul, and
`quantize_gathers` stores the embedding as int8 blocks of 32 behind onnxruntime's `GatherBlockQuantized`
(com.microsoft, uint8 data, bits=8, symmetric around the default zero point 128).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distill2edge.export.common import ExportError

BLOCK = 32


def untie_head(model: Any) -> int:
    """Give every `MatMul(x, Transpose(initializer))` its own transposed initializer; returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    untied = 0
    for node in list(graph.node):
        if node.op_type != "MatMul" or node.input[1] in inits:
            continue
        tr = producers.get(node.input[1])
        if tr is None or tr.op_type != "Transpose" or tr.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        weight = numpy_helper.to_array(inits[tr.input[0]])
        if weight.ndim != 2 or perm not in (None, [1, 0]):
            continue
        name = f"{tr.input[0]}.untied_T"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), name))
        node.input[1] = name
        untied += 1
        if not any(tr.output[0] in n.input for n in graph.node if n is not node):
            graph.node.remove(tr)
    return untied


def quantize_rows(w: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per block of `block` values along each row: (uint8 data = q + 128, float scales)."""
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // block, block).astype(np.float32)
    scales = np.abs(blocks).max(-1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(blocks / scales[..., None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8).reshape(rows, cols), scales.astype(np.float32)


def quantize_gathers(model: Any) -> int:
    """Replace `Gather(2-D float initializer, ids)` on axis 0 by an int8 GatherBlockQuantized; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    done = 0
    for i, node in enumerate(list(graph.node)):
        if node.op_type != "Gather" or node.input[0] not in inits:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        w = numpy_helper.to_array(inits[node.input[0]])
        if axis != 0 or w.ndim != 2 or w.dtype != np.float32 or w.shape[1] % BLOCK:
            continue
        q, scales = quantize_rows(w)
        qname = f"{node.input[0]}.int8"
        graph.initializer.extend(
            [numpy_helper.from_array(q, qname), numpy_helper.from_array(scales, f"{qname}.scales")]
        )
        new = helper.make_node(
            "GatherBlockQuantized", [qname, node.input[1], f"{qname}.scales"], list(node.output),
            name=f"{node.name}_int8", domain="com.microsoft",
            bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=1,
        )  # fmt: skip
        idx = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(idx, new)
        done += 1
    used = {x for n in graph.node for x in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)  # the fp32 embedding, now that neither the Gather nor the head reads it
    if done and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done


def weight_only_int8(src: Path, dst: Path, big: bool) -> dict[str, int]:
    """Untie the head, MatMul weights to MatMulNBits int8 (blocks of 32), embedding Gathers to int8;
    write `dst` (external data when `big`). Returns counts of untied heads and quantized gathers."""
    import onnx

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    except ImportError as exc:
        raise ExportError(f"weight-only int8 needs onnx-ir: pip install onnx-ir ({exc})") from exc
    model = onnx.load(str(src))
    untied = untie_head(model)
    cfg = DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=True, bits=8)
    quantizer = MatMulNBitsQuantizer(model, algo_config=cfg)
    quantizer.process()
    qmodel = quantizer.model.model
    gathers = quantize_gathers(qmodel)
    if big:
        onnx.save_model(qmodel, str(dst), save_as_external_data=True, location=f"{dst.name}_data")
    else:
        onnx.save_model(qmodel, str(dst))
    return {"untied_heads": untied, "int8_gathers": gathers}
