"""Device profiles: which format, quantization, threads and parity thresholds an edge target wants.

Profiles are YAML files (shipped ones in `distill2edge/export_profiles/`); `--profile NAME|FILE` picks
one. Unknown keys are errors, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distill2edge.export.common import ExportError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "export_profiles"
GGUFQuant = Literal["f32", "f16", "bf16", "q8_0", "q6_k", "q5_1", "q5_0", "q4_k_m", "q4_1", "q4_0", "iq4_nl"]
EmbeddingType = Literal["auto", "f16", "q8_0", "q6_k", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"]


class Gate(BaseModel):
    """Parity thresholds; a field left at None is not checked."""

    model_config = ConfigDict(extra="forbid")
    max_rel_logit: float | None = Field(None, gt=0, description="max |Δlogit| / max(1, max |torch logit|)")
    max_kld: float | None = Field(None, ge=0, description="mean KL(p_torch || p_export) over positions, nats")
    min_same_top: float | None = Field(
        None, ge=0, le=1, description="fraction of positions with the same argmax"
    )


#: Size classes by parameter count: (name, upper bound). A small model loses much more to a given
#: quantization than a large one, so one set of thresholds either passes a broken 7B file or fails a
#: healthy 135M one.
SIZE_CLASSES: tuple[tuple[str, float], ...] = (("tiny", 5e8), ("small", 3e9), ("large", float("inf")))

# (max mean KLD, min same top token) per quantized type and size class, on the ~800 gate positions.
# large: about 2x llama.cpp's published LLaMA-3-8B KLDs (Q8_0 0.0014, Q4_K_M 0.031; the
# LLaMA 3 8B scoreboard of `llama-perplexity --kl-divergence` in llama.cpp's perplexity README).
# tiny: about 2x the KLD that SmolLM2-135M-Instruct and its 14-layer distilled student (78M) measure,
# the same-top floor 5-10 points under theirs (`export gguf-table`, issue 16): Q8_0 0.006 / 93-95%,
# Q5_0 0.08-0.11 / 81-82%, Q4_K_M (falling back at width 576) 0.07 / 80-85%, Q4_0 with a Q4_0 embedding
# 0.47 / 51-61%, IQ4_NL with an IQ4_NL embedding 0.33-0.34 / 59-67%. A broken file (wrong tensor layout,
# RoPE) measures KLD 3-8 and fails all of them. small: between the two.
_LOSSY: dict[str, dict[str, tuple[float, float]]] = {
    "q8_0": {"tiny": (0.015, 0.88), "small": (0.006, 0.94), "large": (0.003, 0.98)},
    "q6_k": {"tiny": (0.06, 0.8), "small": (0.025, 0.9), "large": (0.01, 0.96)},
    "q5_1": {"tiny": (0.2, 0.72), "small": (0.07, 0.85), "large": (0.025, 0.95)},
    "q5_0": {"tiny": (0.2, 0.72), "small": (0.07, 0.85), "large": (0.025, 0.95)},
    "q4_k_m": {"tiny": (0.2, 0.7), "small": (0.1, 0.82), "large": (0.06, 0.92)},
    "q4_1": {"tiny": (0.9, 0.45), "small": (0.3, 0.7), "large": (0.1, 0.9)},
    "q4_0": {"tiny": (0.9, 0.45), "small": (0.3, 0.7), "large": (0.12, 0.88)},
    "iq4_nl": {"tiny": (0.7, 0.5), "small": (0.2, 0.75), "large": (0.07, 0.92)},
}
# Lossless or nearly: F32 must match torch to float rounding (SmolLM2-135M: 2.8e-5 of the logit scale);
# F16/BF16 only round the weights, whatever the size.
_LOSSLESS: dict[str, Gate] = {
    "f32": Gate(max_rel_logit=1e-4, max_kld=1e-5, min_same_top=0.98),
    "f16": Gate(max_kld=1e-3, min_same_top=0.97),
    "bf16": Gate(max_kld=5e-3, min_same_top=0.93),
}


def size_class(n_params: int) -> str:
    """The size class of a model with `n_params` parameters (see SIZE_CLASSES)."""
    return next(name for name, bound in SIZE_CLASSES if n_params < bound)


def default_gate(quant: str, n_params: int) -> tuple[Gate, str]:
    """The built-in gate for `quant` at this model size, and a line saying where it comes from."""
    if quant in _LOSSLESS:
        return _LOSSLESS[quant], f"built-in {quant} gate"
    cls = size_class(n_params)
    kld, top = _LOSSY[quant][cls]
    return Gate(max_kld=kld, min_same_top=top), f"size class {cls} ({n_params / 1e6:.0f}M parameters)"


class GGUFSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quant: GGUFQuant = "q8_0"
    embedding_type: EmbeddingType = Field(
        "auto",
        description="type of the token embedding (the output head too when tied); auto: llama.cpp's choice "
        "(Q8_0 at widths not divisible by 256, whatever the quant)",
    )
    threads: int = Field(2, ge=1, description="llama.cpp threads for quantizing, the gate and the Modelfile")
    context_length: int = Field(2048, ge=16, description="num_ctx written to the Ollama Modelfile")
    greedy_tokens: int = Field(16, ge=0, description="tokens generated greedily by torch and llama.cpp")
    gates: dict[GGUFQuant, Gate] = Field(
        default_factory=dict, description="per-type gates; a type not listed gets its size class's gate"
    )

    def gate_for(self, quant: str, n_params: int) -> tuple[Gate, str]:
        """The gate for `quant` (the profile's, else the built-in one for the model's size class) and its
        source, recorded in parity.json."""
        if quant in self.gates:
            return self.gates[quant], "profile"
        return default_gate(quant, n_params)


class ONNXSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Literal["fp32", "fp16"] = "fp32"
    int8: bool = Field(False, description="int8 weights with onnxruntime's quantizer")
    int8_method: Literal["weight_only", "dynamic"] = Field(
        "weight_only",
        description="weight_only: MatMulNBits int8 blocks; dynamic: quantize_dynamic (see onnx.py)",
    )
    int4: bool = Field(
        False, description="4-bit MatMul weights (MatMulNBits, symmetric blocks), the embedding and a head tied "
        "to it int8; excludes int8",
    )
    int4_block_size: Literal[16, 32, 64, 128, 256] = Field(32, description="int4 quantization block size")
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4,
        description="MatMulNBits accuracy_level of int8/int4 weight-only models; 4 (int8 activations per "
        "block) is the only level with an 8-bit CPU kernel: below it every int8 MatMul de-quantizes its "
        "weight on each call (see onnx_int8.py)",
    )
    optimize: bool = Field(
        False, description="fuse the graph with onnxruntime's transformer optimizer (RMSNorm, rotary; onnx_optimize.py)"
    )
    genai: bool = Field(
        False, description="build with onnxruntime-genai's model builder (GroupQueryAttention, shared KV cache, "
        "fused norms; fp32, int8 or int4) for onnxruntime-genai's generation loop (onnx_genai.py)",
    )
    genai_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more `--extra_options` for onnxruntime-genai's builder (e.g. algo_config: k_quant); they "
        "override the ones distill2edge sets",
    )
    provider: str = "CPUExecutionProvider"
    fp32_gate: Gate = Gate(max_rel_logit=1e-4)
    fp16_gate: Gate = Gate(max_kld=2e-3, min_same_top=0.95)
    # measured, weight-only int8: 8-layer SmolLM2 student 0.015 / 93%
    int8_gate: Gate = Gate(max_kld=0.05, min_same_top=0.85)
    int4_gate: Gate | None = Field(
        None, description="None: the GGUF q4_0 gate of the model's size class (tiny: KLD 0.9, same top 0.45)"
    )
    greedy_tokens: int = Field(16, ge=0, description="tokens generated greedily by both runtimes; must agree")


class Profile(BaseModel):
    """One device target. `format` says which exporter `distill2edge export` is meant for."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    format: Literal["gguf", "onnx"]
    gguf: GGUFSettings = Field(default_factory=GGUFSettings)
    onnx: ONNXSettings = Field(default_factory=ONNXSettings)


def list_profiles() -> dict[str, Path]:
    """Shipped profiles by name."""
    return {p.stem: p for p in sorted(PROFILE_DIR.glob("*.yaml"))}


def load_profile(
    name_or_file: str | Path | None, default_format: Literal["gguf", "onnx"] = "gguf"
) -> Profile:
    """A shipped profile by name, or a YAML file; None gives the defaults for `default_format`."""
    if name_or_file is None:
        return Profile(name="default", format=default_format)
    path = Path(name_or_file)
    if not path.is_file():
        shipped = list_profiles()
        if str(name_or_file) not in shipped:
            raise ExportError(
                f"profile {name_or_file!r}: no such file or shipped profile (shipped: {', '.join(shipped)})"
            )
        path = shipped[str(name_or_file)]
    try:
        data = yaml.safe_load(path.read_text())
        return Profile.model_validate({"name": path.stem, **(data or {})})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ExportError(f"{path}: invalid profile: {exc}") from exc
