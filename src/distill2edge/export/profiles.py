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
GGUFQuant = Literal["f32", "f16", "bf16", "q8_0", "q6_k", "q4_k_m"]


class Gate(BaseModel):
    """Parity thresholds; a field left at None is not checked."""

    model_config = ConfigDict(extra="forbid")
    max_rel_logit: float | None = Field(None, gt=0, description="max |Δlogit| / max(1, max |torch logit|)")
    max_kld: float | None = Field(None, ge=0, description="mean KL(p_torch || p_export) over positions, nats")
    min_same_top: float | None = Field(
        None, ge=0, le=1, description="fraction of positions with the same argmax"
    )


def _gguf_gates() -> dict[str, Gate]:
    # F32 must match torch to float rounding (measured: SmolLM2-135M 1.2e-3 at logit scale 41, i.e.
    # 2.8e-5 relative; the 8-layer student 1.5e-4 at 34). Quantized gates: about 2x the KLD measured on
    # SmolLM2-135M-Instruct (F16 1.4e-5 / 100% same top, BF16 5e-4 / 100%, Q8_0 0.009 / 96%,
    # Q6_K 0.029 / 87%, Q4_K_M 0.10 / 81%, the K-quants mostly falling back at width 576); small models
    # lose much more than the LLaMA-3-8B figures in DESIGN.md §5.
    return {
        "f32": Gate(max_rel_logit=1e-4, max_kld=1e-5, min_same_top=0.98),
        "f16": Gate(max_kld=1e-3, min_same_top=0.97),
        "bf16": Gate(max_kld=5e-3, min_same_top=0.93),
        "q8_0": Gate(max_kld=0.03, min_same_top=0.92),
        "q6_k": Gate(max_kld=0.06, min_same_top=0.8),
        "q4_k_m": Gate(max_kld=0.2, min_same_top=0.72),
    }


class GGUFSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quant: GGUFQuant = "q8_0"
    threads: int = Field(2, ge=1, description="llama.cpp threads for quantizing, the gate and the Modelfile")
    context_length: int = Field(2048, ge=16, description="num_ctx written to the Ollama Modelfile")
    greedy_tokens: int = Field(16, ge=0, description="tokens generated greedily by torch and llama.cpp")
    gates: dict[GGUFQuant, Gate] = Field(default_factory=_gguf_gates)

    def gate_for(self, quant: str) -> Gate:
        """The gate for `quant`; a profile that overrides some quant types keeps the defaults of the rest."""
        return self.gates.get(quant) or _gguf_gates()[quant]  # type: ignore[index]


class ONNXSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Literal["fp32", "fp16"] = "fp32"
    int8: bool = Field(False, description="int8 weights with onnxruntime's quantizer")
    int8_method: Literal["weight_only", "dynamic"] = Field(
        "weight_only",
        description="weight_only: MatMulNBits int8 blocks; dynamic: quantize_dynamic (see onnx.py)",
    )
    provider: str = "CPUExecutionProvider"
    fp32_gate: Gate = Gate(max_rel_logit=1e-4)
    fp16_gate: Gate = Gate(max_kld=2e-3, min_same_top=0.95)
    # measured, weight-only int8: 8-layer SmolLM2 student 0.015 / 93%
    int8_gate: Gate = Gate(max_kld=0.05, min_same_top=0.85)
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
