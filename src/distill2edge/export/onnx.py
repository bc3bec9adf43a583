"""HF folder -> ONNX through optimum (text generation with past key values), gated against torch.

    export_onnx("student/", Path("out/student-onnx"), int8=True)

The folder loads with `optimum.onnxruntime.ORTModelForCausalLM.from_pretrained(DIR)`. It appears only
when the gates pass: fp32 (or fp16) logits against torch relative to the logit scale plus identical
greedy generations, and for `int8` a mean-KLD / same-top-token gate on the int8 model (weight-only by
default, onnxruntime's dynamic quantization on request: see `_quantize_int8`).
optimum only warns on a mismatch; here a mismatch raises ParityError and nothing is left behind.
Models over 2 GB are written with external data (`model.onnx_data`) by the exporter itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill2edge.content_keys import file_digest
from distill2edge.export.card import parity_record, write_sidecars
from distill2edge.export.common import (
    GATE_PASSAGES,
    SAMPLE_PROMPTS,
    ExportError,
    ParityError,
    ParityReport,
    check_model_dir,
    check_output,
    compare_logits,
    encode_prompts,
    export_tempdir,
    gate,
    load_torch,
    torch_logits,
)
from distill2edge.export.onnx_int8 import weight_only_int8
from distill2edge.export.profiles import Gate, Profile, load_profile


def _require_optimum() -> None:
    try:
        import onnxruntime  # noqa: F401
        import optimum.onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the `onnx` extra: pip install 'distill2edge[onnx]' ({exc})"
        ) from exc


def _greedy(model: Any, ids: Sequence[Sequence[int]], n_new: int, pad: int | None) -> list[list[int]]:
    """Greedy continuations (token ids) of each prompt; works for torch and ORT models alike."""
    import torch

    out = []
    for seq in ids:
        x = torch.tensor([list(seq)])
        y = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n_new,
            min_new_tokens=n_new,
            do_sample=False,
            pad_token_id=pad,
        )
        out.append(y[0, len(seq) :].tolist())
    return out


def _ort_parity(
    folder: Path,
    provider: str,
    ids: list[list[int]],
    ref: list[np.ndarray],
    ref_greedy: list[list[int]],
    n_new: int,
    pad: int | None,
    g: Gate,
    check_greedy: bool,
) -> ParityReport:
    import onnxruntime
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    ort = ORTModelForCausalLM.from_pretrained(folder, provider=provider, use_cache=True)
    got = []
    with torch.no_grad():
        for seq in ids:
            x = torch.tensor([seq])
            got.append(ort(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float().numpy())
    report = ParityReport(
        runtime=f"onnxruntime {onnxruntime.__version__} ({provider})",
        n_prompts=len(ids),
        n_positions=sum(map(len, ids)),
        **compare_logits(ref, got),
    )
    if check_greedy and n_new:
        report.greedy_identical = _greedy(ort, ids[: len(ref_greedy)], n_new, pad) == ref_greedy
    return gate(report, max_rel_logit=g.max_rel_logit, max_kld=g.max_kld, min_same_top=g.min_same_top)


def _quantize_int8(folder: Path, method: str) -> dict[str, int]:
    """Replace folder/model.onnx by an int8 version; returns what `weight_only_int8` changed.

    `weight_only`: MatMul weights to int8 in blocks of 32 (MatMulNBits), activations stay float; the tied
    head is untied and quantized too, the embedding Gather becomes an int8 GatherBlockQuantized (see
    onnx_int8.py). `dynamic`: onnxruntime's quantize_dynamic, int8 weights (per channel) with
    activations quantized per tensor at run time - measured on SmolLM2-135M-Instruct: mean KLD 0.83 and
    54% same top token (activation outliers), against 0.015 / 93% for weight-only on the 8-layer student.
    The result is written into a fresh sibling folder first, so an external-data file keeps the name the
    graph refers to; then it replaces the fp32 graph and its data.
    """
    qdir = folder.parent / f"{folder.name}.int8"
    qdir.mkdir()
    counts: dict[str, int] = {}
    big = any(folder.glob("model.onnx_data*")) or (folder / "model.onnx").stat().st_size > 2**31 - 2**26
    if method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            folder / "model.onnx",
            qdir / "model.onnx",
            weight_type=QuantType.QInt8,
            per_channel=True,
            use_external_data_format=big,
        )
    else:
        counts = weight_only_int8(folder / "model.onnx", qdir / "model.onnx", big)
    for old in folder.glob("model.onnx*"):
        old.unlink()
    for new in qdir.iterdir():
        new.rename(folder / new.name)
    qdir.rmdir()
    return counts


def _file_facts(folder: Path, n_params: int) -> dict[str, Any]:
    """Size, bits per parameter and sha256 of each graph / data file of the exported folder."""
    files = sorted(folder.glob("*.onnx*"))
    size = sum(f.stat().st_size for f in files)
    digests = {f.name: file_digest(f) for f in files}
    return {"file_bytes": size, "bits_per_parameter": 8.0 * size / n_params, "sha256": digests}


def export_onnx(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    int8: bool | None = None,
    profile: Profile | str | None = None,
    prompts: Sequence[str] = SAMPLE_PROMPTS,
    int8_method: str | None = None,
) -> dict[str, Any]:
    """Export, gate and publish the folder `out`; returns the parity record (raises ParityError on failure)."""
    _require_optimum()
    from optimum.exporters.onnx import main_export

    src = check_model_dir(model_dir)
    prof = profile if isinstance(profile, Profile) else load_profile(profile, "onnx")
    cfg = prof.onnx
    int8 = cfg.int8 if int8 is None else int8
    cfg = cfg.model_copy(update={"int8": int8, "int8_method": int8_method or cfg.int8_method})
    prof = prof.model_copy(update={"onnx": cfg})  # the record says what was used, not the defaults
    out = Path(out)
    check_output(out, folder=True)
    if cfg.dtype == "fp16" and cfg.provider == "CPUExecutionProvider":
        raise ExportError("profile: onnx.dtype fp16 needs a GPU provider (e.g. CUDAExecutionProvider)")

    model, tok = load_torch(src)
    ids = encode_prompts(tok, [*prompts, *GATE_PASSAGES])  # logits on ~800 positions, greedy on the prompts
    ref = torch_logits(model, ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ref_greedy = _greedy(model, ids[: len(prompts)], cfg.greedy_tokens, pad)
    n_params = sum(p.numel() for p in model.parameters())
    del model

    out.parent.mkdir(parents=True, exist_ok=True)
    with export_tempdir(out) as tmp:
        work = Path(tmp) / out.name
        device = "cpu" if cfg.provider == "CPUExecutionProvider" else "cuda"
        try:
            main_export(
                str(src),
                work,
                task="text-generation-with-past",
                device=device,
                dtype="fp16" if cfg.dtype == "fp16" else None,
                do_validation=False,
                local_files_only=True,
            )
        except Exception as exc:
            raise ExportError(f"optimum could not export {src}: {type(exc).__name__}: {exc}") from exc
        first = "fp16" if cfg.dtype == "fp16" else "fp32"
        run = functools.partial(_ort_parity, work, cfg.provider, ids, ref, ref_greedy, cfg.greedy_tokens, pad)
        gates = {first: run(cfg.fp16_gate if first == "fp16" else cfg.fp32_gate, check_greedy=True)}
        int8_counts: dict[str, int] = {}
        if int8:
            int8_counts = _quantize_int8(work, cfg.int8_method)
            gates["int8"] = run(cfg.int8_gate, check_greedy=False)
        facts = {
            "dtype": f"int8 ({cfg.int8_method})" if int8 else first,
            **_file_facts(work, n_params),
            **int8_counts,
        }
        record = parity_record("onnx", src, out.name, prof, {k: g.to_dict() for k, g in gates.items()}, facts)
        failed = {k: g.failures for k, g in gates.items() if not g.passed}
        if failed:
            raise ParityError(f"ONNX parity gate failed for {out.name}: {failed}", record)
        write_sidecars(work, out, record)
        if out.exists():
            raise ExportError(f"--out {out}: already exists; remove it or choose another folder")
        os.replace(work, out)  # the folder appears only when complete and gated
    return record
