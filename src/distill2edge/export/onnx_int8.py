"""int8 or int4 weights for an exported ONNX decoder, the tied head and the embedding (int8) included.

optimum exports a tied `lm_head` as `MatMul(hidden, Transpose(embed_tokens))`: its weight is not an
initializer, so onnxruntime's weight-only quantizer skips it, and the embedding `Gather` is never
quantized either; half of a small model's parameters then stay fp32. `quantize_gathers` stores the
embedding as int8 blocks of 32 behind onnxruntime's `GatherBlockQuantized` (com.microsoft, uint8 data,
bits=8, symmetric around the default zero point 128) in MatMulNBits' layout, and `tie_heads` makes the
head a MatMulNBits on those same bytes, so the weights exist once, as in a GGUF. A head transposing some
other initializer is untied instead (`untie_head`: its own copy, quantized like every MatMul).

With `bits=4` the MatMuls are 4-bit (MatMulNBits, symmetric blocks of `block_size`) while the embedding
and a head tied to it stay int8, as llama.cpp keeps a small model's token embedding at Q8_0.

`accuracy_level` is MatMulNBits' compute type. onnxruntime's CPU kernel for 8-bit weights exists only
for level 4 (activations quantized to int8 per block, int32 accumulation): at level 0 every 8-bit
MatMulNBits falls back to "unpacked compute", de-quantizing its whole weight to fp32 on every call
(onnxruntime logs "Falling back to using unpacked compute mode" at INFO) - for a 49k x 576 tied head
that is 28M weights per decoded token, which is why the int8 export decoded 5x slower than fp32.
4-bit weights have an fp32-compute kernel too (level 0 or 1); level 4 is the faster one on x86/ARM.
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


def quantize_gathers(model: Any) -> dict[str, tuple[str, str, int]]:
    """Replace `Gather(2-D float initializer E [V, H], ids)` on axis 0 by an int8 GatherBlockQuantized.

    The int8 data is stored as `[V, H / 32, 32]`, the layout MatMulNBits reads, so a tied head can use the
    very same initializer (`tie_heads`); a Reshape restores the `[..., H]` output. Returns
    {name of E: (int8 data name, MatMulNBits scales name, H)}."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    done: dict[str, tuple[str, str, int]] = {}
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in inits:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        w = numpy_helper.to_array(inits[node.input[0]])
        if axis != 0 or w.ndim != 2 or w.dtype != np.float32 or w.shape[1] % BLOCK:
            continue
        (rows, cols), q, scales = w.shape, *quantize_rows(w)
        qname, out = f"{node.input[0]}.int8", node.output[0]
        graph.initializer.extend([
            numpy_helper.from_array(q.reshape(rows, cols // BLOCK, BLOCK), qname),
            numpy_helper.from_array(scales[..., None], f"{qname}.gather_scales"),
            numpy_helper.from_array(scales.reshape(-1), f"{qname}.matmul_scales"),
            numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{qname}.shape"),
        ])  # fmt: skip
        gather = helper.make_node(
            "GatherBlockQuantized", [qname, node.input[1], f"{qname}.gather_scales"], [f"{out}.blocks"],
            name=f"{node.name}_int8", domain="com.microsoft",
            bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=2,
        )  # fmt: skip
        reshape = helper.make_node("Reshape", [f"{out}.blocks", f"{qname}.shape"], [out], name=f"{node.name}_rs")
        idx = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(idx, reshape)
        graph.node.insert(idx, gather)
        done[node.input[0]] = (qname, f"{qname}.matmul_scales", cols)
    if done and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done


def tie_heads(model: Any, embeddings: dict[str, tuple[str, str, int]], accuracy_level: int = 0) -> int:
    """Turn every `MatMul(x, Transpose(E))` whose E was quantized by `quantize_gathers` into a MatMulNBits
    reading E's int8 blocks (the head stays tied: one copy of the weights); returns how many."""
    from onnx import helper

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    tied = 0
    for node in list(graph.node):
        tr = producers.get(node.input[1]) if node.op_type == "MatMul" else None
        if tr is None or tr.op_type != "Transpose" or tr.input[0] not in embeddings:
            continue
        qname, scales, k = embeddings[tr.input[0]]
        n = next(t for t in graph.initializer if t.name == qname).dims[0]
        extra: dict[str, Any] = {"accuracy_level": accuracy_level} if accuracy_level else {}
        new = helper.make_node(
            "MatMulNBits", [node.input[0], qname, scales], list(node.output), name=f"{node.name}_int8",
            domain="com.microsoft", K=k, N=n, bits=8, block_size=BLOCK, **extra,
        )  # fmt: skip
        idx = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(idx, new)
        if not any(tr.output[0] in x.input for x in graph.node):
            graph.node.remove(tr)
        tied += 1
    return tied


def _drop_unused(model: Any) -> None:
    used = {x for n in model.graph.node for x in n.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)  # the fp32 embedding, now that neither Gather nor head reads it


def weight_only(
    src: Path, dst: Path, big: bool, bits: int = 8, block_size: int = BLOCK, accuracy_level: int = 4
) -> dict[str, int]:
    """MatMul weights to MatMulNBits (`bits`, symmetric blocks of `block_size`), embedding Gathers to
    int8, a tied head to an int8 MatMulNBits on the embedding's blocks; write `dst` (external data when
    `big`). Returns counts."""
    import onnx

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    except ImportError as exc:
        raise ExportError(f"weight-only quantization needs onnx-ir: pip install onnx-ir ({exc})") from exc
    model = onnx.load(str(src))
    cfg = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=True, bits=bits, accuracy_level=accuracy_level or None
    )
    quantizer = MatMulNBitsQuantizer(model, algo_config=cfg)
    quantizer.process()
    qmodel = quantizer.model.model
    embeddings = quantize_gathers(qmodel)
    tied = tie_heads(qmodel, embeddings, accuracy_level)
    untied = untie_head(qmodel)  # a head tied to something else than a quantized Gather: its own copy
    if untied:  # quantize the untied copies like the other MatMuls
        quantizer = MatMulNBitsQuantizer(qmodel, algo_config=cfg)
        quantizer.process()
        qmodel = quantizer.model.model
    _drop_unused(qmodel)
    if big:
        onnx.save_model(qmodel, str(dst), save_as_external_data=True, location=f"{dst.name}_data")
    else:
        onnx.save_model(qmodel, str(dst))
    nbits = sum(n.op_type == "MatMulNBits" for n in qmodel.graph.node)
    return {"tied_int8_heads": tied, "untied_heads": untied, "int8_gathers": len(embeddings), "matmulnbits": nbits}


def weight_only_int8(src: Path, dst: Path, big: bool, accuracy_level: int = 4) -> dict[str, int]:
    """`weight_only` with 8-bit MatMuls (blocks of 32)."""
    return weight_only(src, dst, big, bits=8, accuracy_level=accuracy_level)
