"""Export a Hugging Face causal LM to edge formats (GGUF for llama.cpp/Ollama, ONNX for onnxruntime).

Every export is gated: the exported file is run in its own runtime and compared with torch on sample
prompts; a failed gate raises :class:`ParityError` and leaves nothing behind (thresholds per quantized type
and model size: `export.profiles`).
"""

from distill2edge.export.common import ExportError, ParityError

__all__ = ["ExportError", "ParityError"]
