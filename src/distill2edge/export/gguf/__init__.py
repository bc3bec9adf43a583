"""HF folder -> GGUF (F32/F16/BF16 by our writer, K/Q types by llama.cpp), gated against torch.

    export_gguf("student/", Path("out/student.q4_k_m.gguf"), quant="q4_k_m")

writes the file plus its sidecars beside it, named after it (`student.q4_k_m.parity.json`, the model
card `student.q4_k_m.md`, an Ollama `student.q4_k_m.Modelfile`; never over a file the user wrote), only
when every gate passes: F32 conversion against torch (catches a wrong tensor map, RoPE permutation or
rope base) and, for other types, the requested file against torch with that type's thresholds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill2edge.content_keys import file_digest
from distill2edge.export.card import check_sidecars, parity_record, write_sidecars
from distill2edge.export.common import (
    SAMPLE_PROMPTS,
    ExportError,
    ParityError,
    ParityReport,
    TorchReference,
    check_model_dir,
    check_output,
    export_tempdir,
    gate,
    load_torch,
    torch_reference,
)
from distill2edge.export.gguf.parity import gguf_parity
from distill2edge.export.gguf.quantize import EMBEDDING_TYPES, QUANT_TYPES, inspect_gguf, quantize
from distill2edge.export.gguf.registry import arch_for, supported_architectures
from distill2edge.export.gguf.writer import FLOAT_TYPES, write_float_gguf
from distill2edge.export.lineage import lineage
from distill2edge.export.ollama import ollama_modelfile
from distill2edge.export.profiles import Profile, load_profile

__all__ = ["GGUF_TYPES", "export_gguf", "supported_architectures"]
GGUF_TYPES: tuple[str, ...] = (*FLOAT_TYPES, *QUANT_TYPES)


def export_gguf(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    quant: str | None = None,
    profile: Profile | str | None = None,
    prompts: Sequence[str] = SAMPLE_PROMPTS,
    threads: int | None = None,
    embedding_type: str | None = None,
) -> dict[str, Any]:
    """Export, gate and publish; returns the parity record. Raises ParityError (nothing written) on failure."""
    src = check_model_dir(model_dir)
    prof = _effective(profile, quant, threads, embedding_type)
    out = Path(out)
    check_output(out, folder=False)
    check_sidecars(out)

    from transformers import AutoConfig

    arch = arch_for(AutoConfig.from_pretrained(src))  # unsupported architecture: fail before loading weights
    model, tok = load_torch(src)
    ref = torch_reference(model, tok, prompts, prof.gguf.greedy_tokens)
    lin, n_params = lineage(src), sum(p.numel() for p in model.parameters())
    quant = prof.gguf.quant
    out.parent.mkdir(parents=True, exist_ok=True)
    with export_tempdir(out) as tmp:
        work = Path(tmp)
        f32 = work / "model.f32.gguf"
        summary = write_float_gguf(model, tok, src, f32, "f32", lin)
        if quant in FLOAT_TYPES and quant != "f32":  # written by us, straight from the torch weights
            write_float_gguf(model, tok, src, work / out.name, quant, lin)
        del model
        gates = {"f32": _gate(f32, ref, prof, "f32", n_params, arch.f32_rel_logit_floor)}
        final = work / out.name
        if quant == "f32":
            f32.rename(final)
        else:
            if quant not in FLOAT_TYPES:
                quantize(f32, final, quant, prof.gguf.threads, prof.gguf.embedding_type)
            f32.unlink()
            gates[quant] = _gate(final, ref, prof, quant, n_params)
        info = {**inspect_gguf(final, quant), "sha256": file_digest(final)}
        gate_dicts = {k: g.to_dict() for k, g in gates.items()}
        record = parity_record("gguf", src, out.name, prof, gate_dicts, {**summary, "quant": quant, **info})
        failed = {k: g.failures for k, g in gates.items() if not g.passed}
        if failed:
            raise ParityError(f"GGUF parity gate failed for {out.name}: {failed}", record)
        modelfile = ollama_modelfile(out.name, tok, prof.gguf.threads, prof.gguf.context_length)
        check_sidecars(out)  # again: a file may have appeared during the export
        for path in write_sidecars(work, out, record, modelfile).values():
            os.replace(path, out.parent / path.name)
        os.replace(final, out)  # last: the GGUF appears only when complete and gated
    return record


def _effective(
    profile: Profile | str | None, quant: str | None, threads: int | None, embedding_type: str | None
) -> Profile:
    """The profile with the arguments' overrides applied, so the record says what was used."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile, "gguf")
    quant = (quant or prof.gguf.quant).lower()
    if quant not in GGUF_TYPES:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(GGUF_TYPES)}")
    emb = embedding_type or prof.gguf.embedding_type
    if emb != "auto" and emb not in EMBEDDING_TYPES:
        raise ExportError(f"--embedding-type {emb!r}: choose auto or one of {', '.join(EMBEDDING_TYPES)}")
    update = {"quant": quant, "threads": threads or prof.gguf.threads, "embedding_type": emb}
    return prof.model_copy(update={"gguf": prof.gguf.model_copy(update=update)})


def _gate(
    path: Path, ref: TorchReference, prof: Profile, quant: str, n_params: int, rel_floor: float = 0.0
) -> ParityReport:
    """Run the file in llama.cpp and apply the gate for `quant` (the profile's, else the model's size
    class; F32: at least `rel_floor`). Greedy continuations are compared for every type; they must be
    identical for F32 only (a lossy type may split at a near-tie; its KLD and same-top thresholds judge)."""
    g, source = prof.gguf.gate_for(quant, n_params)
    rel = None if g.max_rel_logit is None else max(g.max_rel_logit, rel_floor)
    report = gguf_parity(path, ref, prof.gguf.threads)
    report.gate_source = source
    return gate(
        report, max_rel_logit=rel, max_kld=g.max_kld, min_same_top=g.min_same_top, require_greedy=quant == "f32"
    )
