"""Write an HF model as an unquantized GGUF (F32, F16 or BF16) with gguf-py's GGUFWriter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

from distill2edge.export.gguf.registry import arch_for
from distill2edge.export.gguf.tokenizer import write_tokenizer
from distill2edge.export.lineage import Lineage

#: Unquantized output types: (tensor type for 2-D weights, general.file_type).
FLOAT_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}


def gguf_metadata(lin: Lineage, n_params: int) -> gguf.Metadata:
    """The `general.*` keys llama.cpp's convert_hf_to_gguf.py writes (through gguf-py's Metadata): name,
    basename, finetune, organization, size_label (gguf.size_label of the parameter count), license and
    base models, taken from the model's lineage rather than its folder name."""
    meta = gguf.Metadata()
    meta.name, meta.basename, meta.finetune = lin.name, lin.basename, lin.finetune
    meta.organization, meta.license = lin.organization, lin.license
    meta.size_label = gguf.size_label(n_params, 0, 0, 0)
    meta.base_models = []
    for ref in lin.base_models:
        entry: dict[str, str] = {"name": ref}
        if "/" in ref and not Path(ref).exists():  # a Hub id
            entry = {"name": ref.split("/", 1)[1], "organization": ref.split("/", 1)[0]}
            entry["repo_url"] = f"https://huggingface.co/{ref}"
        meta.base_models.append(entry)
    meta.base_models = meta.base_models or None
    meta.tags = ["distillation"] if lin.distilled else None
    return meta


def write_float_gguf(
    model: Any, tok: Any, model_dir: Path, out: Path, dtype: str, lin: Lineage
) -> dict[str, Any]:
    """Write `model` (a loaded HF causal LM) and its tokenizer to `out` with 2-D weights in `dtype`.

    Norms and other 1-D tensors stay F32 (llama.cpp requires it). Returns a summary for the model card.
    """
    qtype, ftype = FLOAT_TYPES[dtype]
    arch = arch_for(model.config)
    w = gguf.GGUFWriter(str(out), arch.arch_name)
    w.add_type(gguf.GGUFType.MODEL)
    gguf_metadata(lin, sum(p.numel() for p in model.parameters())).set_gguf_meta_model(w)
    w.add_file_type(int(ftype))
    arch.write_hparams(w)
    tok_kind = write_tokenizer(w, model_dir, tok, model.config.vocab_size)
    n_params = 0
    for tname, data in arch.tensors(model.state_dict()):
        n_params += data.size
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(tname, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(tname, data.astype(np.float16))
        else:
            w.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)  # byte shape in
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"architecture": arch.arch_name, "tokenizer": tok_kind, "n_params": n_params}
