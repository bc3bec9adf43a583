"""Quantize a GGUF with llama.cpp and measure what it really produced (types, bits per weight).

K-quants (and IQ4_XS) pack rows in super-blocks of 256 values; a tensor whose rows are not a multiple of
256 (e.g. SmolLM2's hidden size 576) cannot use them and llama.cpp silently picks Q5_0/Q8_0 instead, so
a "Q4_K_M" file may be barely smaller than Q8_0. Q4_0, Q4_1 and IQ4_NL (and Q5_0/Q5_1) use blocks of
32 and fit any width divisible by 32. With tied embeddings the token embedding is also the output head,
and llama.cpp keeps it at Q8_0 (Q6_K at widths divisible by 256) whatever the type; `embedding_type`
chooses its type instead. We report bits per weight of the tensors and of the whole file, and warn.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import gguf
import llama_cpp

from distill2edge.export.common import ExportError

#: Quantized output types: (llama ftype, tensor types a 2-D weight is expected to get).
QUANT_TYPES: dict[str, tuple[int, frozenset[str]]] = {
    "q8_0": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, frozenset({"Q8_0"})),
    "q6_k": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K, frozenset({"Q6_K"})),
    "q5_1": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_1, frozenset({"Q5_1"})),
    "q5_0": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0, frozenset({"Q5_0"})),
    "q4_k_m": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, frozenset({"Q4_K", "Q5_K", "Q6_K"})),
    "q4_1": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1, frozenset({"Q4_1"})),
    "q4_0": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, frozenset({"Q4_0"})),
    "iq4_nl": (llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL, frozenset({"IQ4_NL", "Q5_K"})),  # Q5_K: its mix, not a fallback
}
#: Types a profile may give the token embedding (`gguf.embedding_type`); "auto" leaves llama.cpp's choice.
EMBEDDING_TYPES: dict[str, int] = {
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q6_k": llama_cpp.GGML_TYPE_Q6_K,
    "q5_1": llama_cpp.GGML_TYPE_Q5_1,
    "q5_0": llama_cpp.GGML_TYPE_Q5_0,
    "q4_1": llama_cpp.GGML_TYPE_Q4_1,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
    "iq4_nl": llama_cpp.GGML_TYPE_IQ4_NL,
}
_HEAD = ("token_embd.weight", "output.weight")
FLOAT_EXPECTED = {"f32": frozenset({"F32"}), "f16": frozenset({"F16"}), "bf16": frozenset({"BF16"})}


def quantize(src: Path, dst: Path, quant: str, threads: int, embedding_type: str = "auto") -> None:
    """Run llama.cpp's quantizer (src must be F32/F16/BF16); `embedding_type` other than "auto" sets the
    token embedding's type (and the output head's, when it is a separate tensor)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant][0]
    params.nthread = threads
    if embedding_type != "auto":
        params.token_embedding_type = params.output_tensor_type = EMBEDDING_TYPES[embedding_type]
    from distill2edge.runtimes.llamacpp import quiet_stderr  # llama.cpp prints one line per fallback

    with quiet_stderr():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ExportError(f"llama.cpp failed to quantize {src} to {quant} (code {rc})")


def kquant_friendly_width(width: int, block: int = 256) -> int:
    """The nearest multiple of `block` to `width` (>= block): a hidden/intermediate size whose rows K-quants
    can pack (e.g. 576 -> 512; SmolLM2's 576 falls back to Q5_0/Q8_0)."""
    return max(block, round(width / block) * block)


def kquant_misfits(config: object) -> dict[str, int]:
    """Config sizes that are row lengths of weight matrices but not multiples of 256 (K-quant fallback)."""
    keys = ("hidden_size", "intermediate_size")
    return {k: v for k in keys if isinstance(v := getattr(config, k, None), int) and v % 256}


def inspect_gguf(path: Path, quant: str) -> dict[str, object]:
    """Tensor-type counts, bits per weight, the embedding's type and fallback tensors of a GGUF file.

    `effective_bpw` = 8 * (bytes of all tensors) / (number of weights), so F32 norms count too;
    `file_bpw` counts the whole file (metadata, vocabulary, alignment) over the same weights. The token
    embedding / output head is reported as `embedding_type`, not as a fallback (its type is a policy).
    """
    reader = gguf.GGUFReader(str(path))
    expected = QUANT_TYPES[quant][1] if quant in QUANT_TYPES else FLOAT_EXPECTED[quant]
    types: Counter[str] = Counter()
    fallback: Counter[str] = Counter()
    n_bytes = n_weights = 0
    embedding = None
    for t in reader.tensors:
        kind = t.tensor_type.name
        types[kind] += 1
        n_bytes += int(t.n_bytes)
        n_weights += int(t.n_elements)
        if t.name in _HEAD:
            embedding = kind
        elif len(t.shape) >= 2 and int(t.shape[1]) > 1 and kind not in expected:
            fallback[kind] += 1
    report: dict[str, object] = {
        "tensor_types": dict(types),
        "embedding_type": embedding,
        "effective_bpw": 8.0 * n_bytes / max(n_weights, 1),
        "file_bpw": 8.0 * path.stat().st_size / max(n_weights, 1),
        "n_weights": n_weights,
        "tensor_bytes": n_bytes,
        "file_bytes": path.stat().st_size,
        "fallback": dict(fallback),
    }
    if fallback:
        n_2d = sum(1 for t in reader.tensors if len(t.shape) >= 2 and int(t.shape[1]) > 1 and t.name not in _HEAD)
        warnings.warn(
            f"{path.name}: requested {quant} but {sum(fallback.values())} of {n_2d} weight tensors were "
            f"stored as {dict(fallback)} (K-quants need rows divisible by 256); "
            f"{report['effective_bpw']:.2f} bits per weight in tensors, {report['file_bpw']:.2f} in the file",
            stacklevel=2,
        )
    return report
