"""onnxruntime through optimum: the one place the project opens an ONNX folder as a causal LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_ort_lm(
    folder: Path | str, *, provider: str = "CPUExecutionProvider", threads: int | None = None,
    io_binding: bool | None = None,
) -> Any:
    """optimum's `ORTModelForCausalLM` on `folder` (an `export onnx` folder), with the KV cache.

    `threads`: onnxruntime's intra-op threads (inter-op 1; None leaves onnxruntime's default).
    `io_binding`: bind inputs, the KV cache and output buffers to the session instead of copying them
    through numpy at every step; None is optimum's default (on for CUDA only).
    """
    try:
        import onnxruntime
        from optimum.onnxruntime import ORTModelForCausalLM
    except ImportError as exc:
        raise ImportError(f"running ONNX needs the `onnx` extra: pip install 'distill2edge[onnx]' ({exc})") from exc
    opts = None
    if threads is not None:
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ORTModelForCausalLM.from_pretrained(
        folder, provider=provider, session_options=opts, use_cache=True, use_io_binding=io_binding
    )


def runtime_name(model: Any) -> str:
    """`onnxruntime X.Y.Z (provider[, io binding])` for a model from `open_ort_lm`."""
    import onnxruntime

    extras = [str(getattr(model, "provider", "?"))]
    if getattr(model, "use_io_binding", False):
        extras.append("io binding")
    return f"onnxruntime {onnxruntime.__version__} ({', '.join(extras)})"
