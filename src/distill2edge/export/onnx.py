"""HF folder -> ONNX through optimum (text generation with past key values), gated against torch.

    export_onnx("student/", Path("out/student-onnx"), int8=True)

The folder loads with `optimum.onnxruntime.ORTModelForCausalLM.from_pretrained(DIR)`. It appears only
when the gates pass: fp32 (or fp16) logits against torch relative to the logit scale plus identical
greedy generations; with `optimize` the same gate again on the graph onnxruntime's transformer optimizer
fused (onnx_optimize.py); for `int8` / `int4` a mean-KLD / same-top-token gate on the quantized model
(weight-only MatMulNBits by default, onnxruntime's dynamic int8 quantization on request: see `_quantize`).
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
from distill2edge.data.tokenize import pad_token_id
from distill2edge.export.card import parity_record, write_sidecars
from distill2edge.export.common import (
    GATE_PASSAGES,
    SAMPLE_PROMPTS,
    ExportError,
    ParityError,
    ParityReport,
    check_model_dir,
    check_output,
    encode_prompts,
    export_tempdir,
    gate,
    load_torch,
    torch_logits,
)
from distill2edge.export.onnx_genai import build_genai, eos_ids, genai_gate, genai_precision
from distill2edge.export.onnx_int8 import weight_only
from distill2edge.export.onnx_optimize import check_optimizable, optimize_decoder
from distill2edge.export.profiles import Gate, ONNXSettings, Profile, default_gate, load_profile
from distill2edge.logit_compare import compare_logits


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
    import torch

    from distill2edge.runtimes.onnx import open_ort_lm, runtime_name

    ort = open_ort_lm(folder, provider=provider)
    got = []
    with torch.no_grad():
        for seq in ids:
            x = torch.tensor([seq])
            got.append(ort(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float().numpy())
    report = ParityReport(
        runtime=runtime_name(ort),
        n_prompts=len(ids),
        n_positions=sum(map(len, ids)),
        **compare_logits(ref, got).metrics(),
    )
    if check_greedy and n_new:
        report.greedy_identical = _greedy(ort, ids[: len(ref_greedy)], n_new, pad) == ref_greedy
    return gate(report, max_rel_logit=g.max_rel_logit, max_kld=g.max_kld, min_same_top=g.min_same_top)


def _quantize(folder: Path, cfg: ONNXSettings) -> dict[str, Any]:
    """Replace folder/model.onnx by an int8 or int4 version; returns what `weight_only` changed.

    `weight_only` (int8, and int4 always): MatMul weights to MatMulNBits blocks, activations stay float;
    the tied head and the embedding Gather int8 (see onnx_int8.py). `dynamic` (int8 only): onnxruntime's
    quantize_dynamic, int8 weights (per channel) with activations quantized per tensor at run time -
    measured on SmolLM2-135M-Instruct: mean KLD 0.83 and 54% same top token (activation outliers), against
    0.015 / 93% for weight-only on the 8-layer student.
    The result is written into a fresh sibling folder first, so an external-data file keeps the name the
    graph refers to; then it replaces the float graph and its data.
    """
    qdir = folder.parent / f"{folder.name}.quant"
    qdir.mkdir()
    counts: dict[str, Any] = {}
    big = _is_big(folder)
    if cfg.int8 and cfg.int8_method == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            folder / "model.onnx",
            qdir / "model.onnx",
            weight_type=QuantType.QInt8,
            per_channel=True,
            use_external_data_format=big,
        )
    else:
        bits, block = (4, cfg.int4_block_size) if cfg.int4 else (8, 32)
        counts = weight_only(folder / "model.onnx", qdir / "model.onnx", big, bits, block, cfg.accuracy_level)
        counts.update(bits=bits, block_size=block, accuracy_level=cfg.accuracy_level)
    for old in folder.glob("model.onnx*"):
        old.unlink()
    for new in qdir.iterdir():
        new.rename(folder / new.name)
    qdir.rmdir()
    return counts


def _is_big(folder: Path) -> bool:
    """Whether folder/model.onnx needs (or has) external data."""
    return any(folder.glob("model.onnx_data*")) or (folder / "model.onnx").stat().st_size > 2**31 - 2**26


def _file_facts(folder: Path, n_params: int) -> dict[str, Any]:
    """Size, bits per parameter and sha256 of each graph / data file of the exported folder."""
    files = sorted(folder.glob("*.onnx*"))
    size = sum(f.stat().st_size for f in files)
    digests = {f.name: file_digest(f) for f in files}
    return {"file_bytes": size, "bits_per_parameter": 8.0 * size / n_params, "sha256": digests}


def _settings(
    profile: Profile | str | None,
    int8: bool | None,
    int8_method: str | None,
    int4: bool | None,
    optimize: bool | None,
    genai: bool | None = None,
) -> Profile:
    """The profile with the call's overrides applied (the record says what was used, not the defaults);
    raises ExportError for combinations that cannot be exported."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile, "onnx")
    cfg = prof.onnx
    asked = {"int8": int8, "int8_method": int8_method, "int4": int4, "optimize": optimize, "genai": genai}
    update = {k: v for k, v in asked.items() if v is not None}
    if int4 and int8 is None:
        update["int8"] = False  # --int4 on an int8 profile: int4 instead
    cfg = cfg.model_copy(update=update)
    if cfg.int8 and cfg.int4:
        raise ExportError("onnx: int8 and int4 exclude each other; choose one")
    if cfg.int4 and int8_method is not None:
        raise ExportError("onnx: --int8-method applies to int8 only (int4 is always weight-only MatMulNBits)")
    if cfg.dtype == "fp16" and cfg.provider == "CPUExecutionProvider":
        raise ExportError("profile: onnx.dtype fp16 needs a GPU provider (e.g. CUDAExecutionProvider)")
    if cfg.dtype == "fp16" and (cfg.int4 or cfg.optimize):
        what = "int4" if cfg.int4 else "optimize"
        raise ExportError(f"onnx: {what} needs dtype fp32 (the optimizer's and quantizer's fp16 paths are not gated here)")
    if cfg.optimize and cfg.int8 and cfg.int8_method == "dynamic":
        raise ExportError("onnx: optimize does not combine with int8_method dynamic; use weight_only")
    if cfg.genai:
        genai_precision(cfg)  # raises for what the builder does not take
    return prof.model_copy(update={"onnx": cfg})


def _variant(cfg: ONNXSettings) -> str:
    """The variant's name, e.g. `fp32+optimize+int4` or `genai+fp32+int4-b32`."""
    parts = [*(["genai"] if cfg.genai else []), cfg.dtype, *(["optimize"] if cfg.optimize else [])]
    if cfg.int8:
        parts.append("int8" if cfg.int8_method == "weight_only" else "int8-dynamic")
    if cfg.int4:
        parts.append(f"int4-b{cfg.int4_block_size}")
    return "+".join(parts)


def export_onnx(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    int8: bool | None = None,
    profile: Profile | str | None = None,
    prompts: Sequence[str] = SAMPLE_PROMPTS,
    int8_method: str | None = None,
    optimize: bool | None = None,
    int4: bool | None = None,
    genai: bool | None = None,
) -> dict[str, Any]:
    """Export, gate and publish the folder `out`; returns the parity record (raises ParityError on failure).

    `optimize` fuses the graph (onnx_optimize.py) and gates the fused graph like the exported one; `int8`
    / `int4` quantize it afterwards, each with its own gate (int4: the profile's, else GGUF q4_0's for
    the model's size class). `genai` builds the folder with onnxruntime-genai's builder instead
    (onnx_genai.py; fp32, int8 or int4) and gates it in onnxruntime-genai."""
    _require_optimum()
    from optimum.exporters.onnx import main_export

    src = check_model_dir(model_dir)
    prof = _settings(profile, int8, int8_method, int4, optimize, genai)
    cfg = prof.onnx
    if cfg.optimize:
        check_optimizable(src)
    out = Path(out)
    check_output(out, folder=True)

    model, tok = load_torch(src)
    ids = encode_prompts(tok, [*prompts, *GATE_PASSAGES])  # logits on ~800 positions, greedy on the prompts
    if cfg.genai:  # the builder's rotary tables stop at max_position_embeddings; torch's extrapolate past it
        keep = int(getattr(model.config, "max_position_embeddings", 0) or 0) - cfg.greedy_tokens - 1
        ids = [seq[:keep] for seq in ids] if keep > 0 else ids
    ref = torch_logits(model, ids)
    pad = pad_token_id(tok)
    ref_greedy = _greedy(model, ids[: len(prompts)], cfg.greedy_tokens, pad)
    n_params = sum(p.numel() for p in model.parameters())
    hf_config = model.config.to_dict()
    eos = eos_ids(src, tok)
    del model

    out.parent.mkdir(parents=True, exist_ok=True)
    with export_tempdir(out) as tmp:
        work = Path(tmp) / out.name
        run = functools.partial(_ort_parity, work, cfg.provider, ids, ref, ref_greedy, cfg.greedy_tokens, pad)
        if cfg.genai:
            built = build_genai(src, work, cfg, Path(tmp) / "genai-cache")
            runtime_gate = functools.partial(genai_gate, work, ids, ref, ref_greedy, cfg.greedy_tokens, eos)
            gates, facts = _gate_genai(cfg, runtime_gate, n_params)
            facts["genai"] = built
        else:
            _optimum_export(main_export, src, work, cfg)
            longest = max(map(len, ids)) + cfg.greedy_tokens
            gates, facts = _transform_and_gate(work, cfg, run, hf_config, n_params, longest)
        facts = {"variant": _variant(cfg), "dtype": facts.pop("dtype"), **_file_facts(work, n_params), **facts}
        record = parity_record("onnx", src, out.name, prof, {k: g.to_dict() for k, g in gates.items()}, facts)
        failed = {k: g.failures for k, g in gates.items() if not g.passed}
        if failed:
            raise ParityError(f"ONNX parity gate failed for {out.name}: {failed}", record)
        write_sidecars(work, out, record)
        if out.exists():
            raise ExportError(f"--out {out}: already exists; remove it or choose another folder")
        os.replace(work, out)  # the folder appears only when complete and gated
    return record


def _optimum_export(main_export: Any, src: Path, work: Path, cfg: ONNXSettings) -> None:
    """optimum's text-generation-with-past export of `src` into `work`."""
    try:
        main_export(
            str(src),
            work,
            task="text-generation-with-past",
            device="cpu" if cfg.provider == "CPUExecutionProvider" else "cuda",
            dtype="fp16" if cfg.dtype == "fp16" else None,
            do_validation=False,
            local_files_only=True,
        )
    except Exception as exc:
        raise ExportError(f"optimum could not export {src}: {type(exc).__name__}: {exc}") from exc


def _gate_genai(cfg: ONNXSettings, runtime_gate: Any, n_params: int) -> tuple[dict[str, ParityReport], dict[str, Any]]:
    """Gate a GenAI build in onnxruntime-genai with the thresholds of its precision (logits at every position,
    fed one token at a time; greedy continuations of fp32 must equal torch's, as for the other exports)."""
    precision = genai_precision(cfg)
    thresholds, source, lossless = cfg.fp32_gate, "profile", precision == "fp32"
    if precision == "int8":
        thresholds = cfg.int8_gate
    elif precision == "int4":
        thresholds, source = (cfg.int4_gate, "profile") if cfg.int4_gate else default_gate("q4_0", n_params)
    try:
        report = runtime_gate(thresholds, check_greedy=lossless)
    except ExportError:
        raise
    except Exception as exc:  # onnxruntime(-genai) raise their own types when a graph does not load
        raise ExportError(f"onnxruntime-genai cannot run the graph its builder wrote: {exc}") from exc
    report.gate_source = source
    return {precision: report}, {"dtype": precision if lossless else f"{precision} (weight_only)"}


def _transform_and_gate(
    work: Path, cfg: ONNXSettings, run: Any, hf_config: dict[str, Any], n_params: int, min_positions: int
) -> tuple[dict[str, ParityReport], dict[str, Any]]:
    """Gate the exported graph, then optimize and quantize it as `cfg` says, gating each step. Returns the
    gates by name (`fp32`, `fp32_optimized`, `int8`/`int4`) and the facts for the record."""
    first = "fp16" if cfg.dtype == "fp16" else "fp32"
    first_gate = cfg.fp16_gate if first == "fp16" else cfg.fp32_gate
    gates = {first: run(first_gate, check_greedy=True)}
    facts: dict[str, Any] = {"dtype": first}
    if cfg.optimize and gates[first].passed:
        facts["optimization"] = optimize_decoder(work, hf_config, _is_big(work), min_positions)
        gates[f"{first}_optimized"] = run(first_gate, check_greedy=True)
    if (cfg.int8 or cfg.int4) and all(g.passed for g in gates.values()):
        name = "int4" if cfg.int4 else "int8"
        q_gate, source = cfg.int8_gate, "profile"
        if cfg.int4:
            q_gate, source = (cfg.int4_gate, "profile") if cfg.int4_gate else default_gate("q4_0", n_params)
        facts.update(_quantize(work, cfg))
        gates[name] = run(q_gate, check_greedy=False)
        gates[name].gate_source = source
        facts["dtype"] = f"{name} ({'weight_only' if cfg.int4 else cfg.int8_method})"
    return gates, facts
