"""Memory-bandwidth roofline for decoding: how fast could a model decode if every weight byte had to
come from memory once per token, and what fraction of that it reaches.

Bytes read per decoded token (one sequence, batch 1):

    bytes/token = W + KV * ctx
    W   = bytes of all weight tensors, except tables that are only gathered from (an untied input
          embedding: one row per token is read, not the table; a tied one is read whole as the LM head)
    KV  = 2 (K and V) * layers * kv_heads * head_dim * bytes per cache element, per context position
    ctx = mean context length while decoding (prompt tokens + half the new tokens)

The KV cache element is the runtime's: the model dtype for torch and ONNX, F16 for llama.cpp (its
default). Sliding-window layers are counted as full attention (an upper bound for Gemma-3).

Two read bandwidths, two ceilings (ceiling tokens/s = bandwidth / bytes per token):
- DRAM: measured once per run on a buffer of 1 GiB or 4x the last-level cache, whichever is larger, so
  it cannot be served from a cache (`measure_bandwidth`). Kept as `dram_*` for reference.
- Working set (the ceiling that counts, `ceiling_tokens_per_s` and `fraction`): decoding streams the
  same bytes/token again for every token, so the bound for a model is how fast this machine re-reads a
  buffer of exactly that size. A model much smaller than the last-level cache is re-read from the
  cache, faster than from DRAM, and against the DRAM ceiling it would reach more than 100%. The
  working-set bandwidth is measured the same way on a buffer of bytes/token rounded to the MiB, once
  per (threads, size) in a process (`working_set_bandwidth`); from the DRAM buffer's size up, the DRAM
  figure is used as is. The fraction is not clamped: above 1 means the runtime streamed its bytes
  faster than these float32 torch kernels did, or noise in either measurement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    """Static facts of a loaded model (see the module docstring for the byte counts)."""

    params: int
    file_bytes: int
    weight_bytes_per_token: int
    kv_bytes_per_position: int
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kv_bytes_per_position(config: Any, elem_bytes: int) -> int:
    """K+V bytes one context position occupies across all layers: 2 * layers * kv_heads * head_dim * bytes."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return 2 * cfg.num_hidden_layers * kv_heads * head_dim * elem_bytes


def _weight_files(folder: Path, patterns: tuple[str, ...]) -> int:
    return sum(f.stat().st_size for p in patterns for f in folder.glob(p) if f.is_file())


def torch_facts(model: Any, folder: Path) -> ModelFacts:
    """Facts of a transformers model: parameters counted once when tied, bytes at their dtype."""
    params = list(model.parameters())  # shared (tied) tensors appear once
    n = sum(p.numel() for p in params)
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    if out is None or out.weight is not emb:  # untied: one embedding row is gathered per token
        weight_bytes -= (emb.shape[0] - 1) * emb.shape[1] * emb.element_size()
    return ModelFacts(
        params=n,
        file_bytes=_weight_files(folder, ("*.safetensors", "pytorch_model*.bin")),
        weight_bytes_per_token=weight_bytes,
        kv_bytes_per_position=kv_bytes_per_position(model.config, emb.element_size()),
        dtype=str(emb.dtype).removeprefix("torch."),
    )


def _meta_params(folder: Path) -> int:
    """Parameter count from config.json alone (model built on the meta device, no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return model.num_parameters()


def _gathers_rows(node: Any, name: str) -> bool:
    """Whether `node` only gathers rows of the initializer `name`: a Gather of its data, or a
    GatherBlockQuantized (onnxruntime-genai's quantized embedding) of its data, scales or zero points."""
    if node.op_type == "Gather":
        return bool(node.input[0] == name)
    inputs = list(node.input)  # data, indices, scales, zero points
    return node.op_type == "GatherBlockQuantized" and name in (inputs[:1] + inputs[2:4])


def onnx_facts(folder: Path) -> ModelFacts:
    """Facts of an ONNX folder (optimum's or onnxruntime-genai's) from its graph (initializer shapes and types; no weights loaded)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype
    from transformers import AutoConfig

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    sizes = {
        t.name: math.prod(t.dims) * tensor_dtype_to_np_dtype(t.data_type).itemsize for t in graph.initializer
    }
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name in sizes:
                users.setdefault(name, []).append(node)
    weight_bytes = sum(sizes.values())
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for name, nodes in users.items():  # tables only gathered from: one row per token is read
        if len(shapes[name]) >= 2 and all(_gathers_rows(n, name) for n in nodes):
            rows = shapes[name][0]
            weight_bytes -= sizes[name] * (rows - 1) // rows
    kv_type = next(
        (i.type.tensor_type.elem_type for i in graph.input if i.name.startswith("past_key_values")),
        onnx.TensorProto.FLOAT,
    )
    elem = tensor_dtype_to_np_dtype(kv_type).itemsize
    dtypes = sorted({tensor_dtype_to_np_dtype(t.data_type).name for t in graph.initializer if math.prod(t.dims) > 1024})
    return ModelFacts(
        params=_meta_params(folder),
        file_bytes=_weight_files(folder, ("model.onnx", "model.onnx_data*", "model.onnx.data")),
        weight_bytes_per_token=weight_bytes,
        kv_bytes_per_position=kv_bytes_per_position(AutoConfig.from_pretrained(folder), elem),
        dtype="+".join(dtypes),
    )


def gguf_facts(path: Path, kv_elem_bytes: int = 2) -> ModelFacts:
    """Facts of a GGUF file from its tensor table and metadata (memory-mapped, nothing computed)."""
    from gguf import GGUFReader

    from distill2edge.models.gguf_tokenizer import gguf_field

    reader = GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    weight_bytes = sum(int(t.n_bytes) for t in tensors.values())
    emb = tensors.get("token_embd.weight")
    if emb is not None and "output.weight" in tensors:  # untied: only a row of token_embd is read
        rows = int(emb.shape[-1])  # GGUF shapes are [ne0 = hidden, ne1 = vocab]
        weight_bytes -= int(emb.n_bytes) * (rows - 1) // rows
    arch = gguf_field(reader, "general.architecture")
    heads = int(gguf_field(reader, f"{arch}.attention.head_count"))
    kv_heads = int(gguf_field(reader, f"{arch}.attention.head_count_kv", heads))
    hidden = int(gguf_field(reader, f"{arch}.embedding_length"))
    head_dim = int(gguf_field(reader, f"{arch}.attention.key_length", hidden // heads))
    layers = int(gguf_field(reader, f"{arch}.block_count"))
    types = sorted({t.tensor_type.name for t in tensors.values() if int(t.n_elements) > 1024})
    return ModelFacts(
        params=sum(int(t.n_elements) for t in tensors.values()),
        file_bytes=Path(path).stat().st_size,
        weight_bytes_per_token=weight_bytes,
        kv_bytes_per_position=2 * layers * kv_heads * head_dim * kv_elem_bytes,
        dtype="+".join(types),
    )


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache (Linux sysfs), or None where it cannot be read."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * mult)
        except ValueError:
            continue
    return max(sizes) if sizes else None


def dram_buffer_mib() -> int:
    """MiB of the DRAM measurement's buffer: 1 GiB, or 4x the last-level cache if that is larger (some
    server CPUs have L3 caches of hundreds of MiB)."""
    return max(1024, 4 * (last_level_cache_bytes() or 0) // 2**20)


def measure_bandwidth(threads: int, mib: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """Sustained memory read bandwidth with `threads` torch threads, best of `repeats`.

    The buffer is `mib` MiB, by default `dram_buffer_mib()` (reads from DRAM). Two read kernels, the
    faster one counts as `read_gb_s`: a float32 matrix-vector product over the buffer (what decoding
    does to its weights) and a float32 sum. `copy_gb_s` (buffer-to-buffer, read + write) is reported
    beside them.
    """
    import torch

    llc = last_level_cache_bytes()
    if mib is None:
        mib = dram_buffer_mib()
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = mib * 2**20 // 4
        cols = 4096
        x = torch.ones(n // cols, cols, dtype=torch.float32)
        v = torch.ones(cols, dtype=torch.float32)
        y = torch.empty_like(x)
        kernels: dict[str, Callable[[], Any]] = {"gemv": lambda: torch.mv(x, v), "sum": x.sum,
                                                 "copy": lambda: y.copy_(x)}
        best = dict.fromkeys(kernels, math.inf)
        for f in kernels.values():  # touch every buffer before timing
            f()
        for name, f in kernels.items():  # each kernel's passes back to back: the buffer stays where the
            f()  # previous pass left it (in cache when it fits), as weights do between decoded tokens
            for _ in range(repeats):
                t0 = time.perf_counter()
                f()
                best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(prev)
    nbytes = n // cols * cols * 4
    gemv, total = nbytes / best["gemv"] / 1e9, nbytes / best["sum"] / 1e9
    return {
        "read_gb_s": max(gemv, total), "gemv_gb_s": gemv, "sum_gb_s": total, "copy_gb_s": 2 * nbytes / best["copy"] / 1e9,
        "buffer_mib": mib, "last_level_cache_mib": None if llc is None else llc / 2**20, "threads": threads,
        "repeats": repeats, "method": "torch float32 mv and sum (read), copy_ (read+write) over a buffer of "
        "buffer_mib MiB (by default the larger of 1 GiB and 4x the last-level cache); per kernel one untimed pass, "
        "then the best of repeats back to back",
    }


def fastest_decode_rate(rounds: Sequence[tuple[int, float, float]]) -> float | None:
    """Decode tokens/s of the fastest of several timed generations, each `(new tokens, seconds to the
    first new token, total seconds)`: the tokens after the first over the time after the first (the
    prompt and the first token are prefill). None when no round decoded more than one token."""
    rates = [(n - 1) / (total - ttft) for n, ttft, total in rounds if n > 1 and total > ttft]
    return max(rates) if rates else None


WORKING_SET_STREAM_MIB = 1024
"""MiB each kernel of a working-set measurement streams in its timed passes (repeats = this / size, 5 to 50).
With the untimed passes and the copy's writes, a model of up to 200 MiB costs about 5 GiB of traffic (a
fraction of a second at 10+ GB/s on an idle machine, seconds under load), one near the DRAM buffer's size
(5 repeats) about 24 times its size; small buffers get enough repeats for a stable best."""

_WORKING_SETS: dict[tuple[int, int], dict[str, Any]] = {}
"""Working-set measurements of this process by (threads, MiB)."""


def working_set_bandwidth(threads: int, nbytes: float, dram: Mapping[str, Any],
                          measure: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Read bandwidth on a buffer of `nbytes` rounded to the MiB (at least 1), with `threads` threads.

    Measured by `measure` (default `measure_bandwidth`) once per (threads, MiB) in this process; later
    calls return the same dict. A size of at least the DRAM buffer (`dram["buffer_mib"]`, else
    `dram_buffer_mib()`) streams from DRAM anyway: a copy of `dram` is returned, nothing is measured (a
    buffer of a 7B model's size would also need that much memory twice over).
    """
    mib = max(1, round(nbytes / 2**20))
    if mib >= (dram.get("buffer_mib") or dram_buffer_mib()):
        return dict(dram)
    key = (threads, mib)
    if key not in _WORKING_SETS:
        repeats = max(5, min(50, WORKING_SET_STREAM_MIB // mib))
        _WORKING_SETS[key] = (measure or measure_bandwidth)(threads, mib=mib, repeats=repeats)
    return _WORKING_SETS[key]


def bytes_per_token(facts: ModelFacts, mean_context: float) -> float:
    """Bytes read per decoded token: weights + KV cache at `mean_context` positions."""
    return facts.weight_bytes_per_token + facts.kv_bytes_per_position * mean_context


def roofline(facts: ModelFacts, mean_context: float, decode_tokens_per_s: float | None, read_gb_s: float,
             working_set_gb_s: float | None = None) -> dict[str, Any]:
    """Bytes per decoded token, the bandwidth ceilings on tokens/s, and the measured fractions of them.

    `read_gb_s` is the DRAM bandwidth (`dram_*` keys), `working_set_gb_s` the one measured on a buffer of
    this model's bytes per token. `ceiling_tokens_per_s`, `fraction` and `read_gb_s` are the working-set
    figures (`ceiling`: "working_set"), or the DRAM ones when `working_set_gb_s` is None (`ceiling`:
    "dram", as in results written before the working-set ceiling; those have no `ceiling` key).
    """
    kv = facts.kv_bytes_per_position * mean_context
    per_token = bytes_per_token(facts, mean_context)

    def rate_and_fraction(gb_s: float) -> tuple[float, float | None]:
        ceiling = gb_s * 1e9 / per_token
        return ceiling, None if decode_tokens_per_s is None else decode_tokens_per_s / ceiling

    dram_ceiling, dram_fraction = rate_and_fraction(read_gb_s)
    basis = "dram" if working_set_gb_s is None else "working_set"
    gb_s = read_gb_s if working_set_gb_s is None else working_set_gb_s
    ceiling, fraction = rate_and_fraction(gb_s)
    return {
        "bytes_per_token": per_token, "weight_bytes_per_token": facts.weight_bytes_per_token,
        "kv_bytes_per_token": kv, "mean_context": mean_context, "ceiling": basis, "read_gb_s": gb_s,
        "ceiling_tokens_per_s": ceiling, "fraction": fraction, "dram_read_gb_s": read_gb_s,
        "dram_ceiling_tokens_per_s": dram_ceiling, "dram_fraction": dram_fraction,
    }


def model_roofline(facts: ModelFacts, mean_context: float, decode_tokens_per_s: float | None,
                   dram: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """`roofline` against both ceilings: `dram` is a `measure_bandwidth` result, the working-set
    bandwidth is measured here with `threads` threads (`working_set_bandwidth`, once per size).
    Adds `working_set_mib` (bytes per token rounded to the MiB) and `working_set_buffer_mib` (the buffer
    the working-set bandwidth was measured on: the same, or the DRAM buffer for a larger model)."""
    per_token = bytes_per_token(facts, mean_context)
    ws = working_set_bandwidth(threads, per_token, dram)
    roof = roofline(facts, mean_context, decode_tokens_per_s, dram["read_gb_s"], working_set_gb_s=ws["read_gb_s"])
    return {**roof, "working_set_mib": max(1, round(per_token / 2**20)), "working_set_buffer_mib": ws.get("buffer_mib")}
