"""Export for one device profile: one model, one profile, one folder (the body of the recipe's export stages).

`export_for_profile` runs the same exporter and parity gates as `distill2edge export`. A recipe should
not lose hours of training because one quantization misses its gate, so a gate failure is recorded
(status, the numbers, nothing exported) instead of raised, unless the caller asks for failures to
raise. A profile that needs a device this machine lacks (an ONNX profile on the CUDA provider without
CUDA) is recorded as skipped, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill2edge.export.common import ParityError
from distill2edge.export.profiles import Profile, load_profile


def _gate_summary(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("max_abs_logit_diff", "mean_kld", "same_top_token", "passed")
    return {name: {k: g.get(k) for k in keep} for name, g in record.get("gates", {}).items()}


def _cuda_provider_available() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        return False


def export_for_profile(model_dir: Path, profile: str | Profile, out_dir: Path, *, raise_on_gate: bool = False) -> dict[str, Any]:
    """Export `model_dir` per `profile` into `out_dir` (GGUF: `out_dir/model.<quant>.gguf` with its
    sidecars; ONNX: `out_dir/onnx/`). Returns stage metrics: status (`exported`, `gate failed`,
    `skipped`), format, artifact path, size, effective bits per weight and each gate's figures."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    base: dict[str, Any] = {"profile": prof.name, "format": prof.format}
    if prof.format == "onnx" and prof.onnx.provider == "CUDAExecutionProvider" and not _cuda_provider_available():
        return {**base, "status": "skipped", "reason": "the profile runs on onnxruntime's CUDA provider; none here"}
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if prof.format == "gguf":
            from distill2edge.export.gguf import export_gguf

            artifact = out_dir / f"model.{prof.gguf.quant}.gguf"
            record = export_gguf(model_dir, artifact, profile=prof)
            size = artifact.stat().st_size
        else:
            from distill2edge.export.onnx import export_onnx

            artifact = out_dir / "onnx"
            record = export_onnx(model_dir, artifact, profile=prof)
            size = sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())
    except ParityError as exc:
        if raise_on_gate:
            raise
        (out_dir / "gate_failure.json").write_text(json.dumps(exc.record, indent=2) + "\n")
        return {**base, "status": "gate failed", "error": str(exc), "gates": _gate_summary(exc.record)}
    return {
        **base, "status": "exported", "artifact": artifact.name, "bytes": size,
        "effective_bpw": record.get("effective_bpw"), "quant": record.get("quant"), "gates": _gate_summary(record),
    }
