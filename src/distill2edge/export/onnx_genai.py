"""ONNX Runtime GenAI: the decoder built by onnxruntime-genai's model builder, and that runtime's reads.

`export onnx --genai` builds the folder with onnxruntime-genai's builder (`onnxruntime_genai.models.builder`)
instead of optimum's exporter. The builder writes the graph onnxruntime's CPU kernels are fastest on:
GroupQueryAttention with a KV cache that past and present share (no copy per token), fused
SkipSimplifiedLayerNormalization and rotary inside the attention op, MatMulNBits for int4/int8 weights,
and a `genai_config.json` that onnxruntime-genai's C++ generation loop reads. distill2edge also asks it
to prune the LM head during prefill (`prune_lm_head`: a prompt's logits are computed for its last position
only; on the 16-layer student and a 159-token prompt the first token comes 34% sooner). The gate reads the
graph the way users run it, through onnxruntime-genai itself: logits at every position (fed one token at
a time, the cached decode path) and greedy continuations of whole prompts (the prefill path). The
config.json and generation_config.json of the source are copied beside it, so the folder also generates
with optimum's `ORTModelForCausalLM` (which warns that the graph has no `position_ids` input; with the
pruned head a forward pass returns the last position's logits only).

Why a subprocess for the builder: it prints a progress line per tensor and loads the model a second time;
run in its own process its output can be kept and shown only when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill2edge.export.common import ExportError, ParityReport, gate
from distill2edge.export.profiles import ONNXSettings

#: onnxruntime-genai versions whose builder imports with the transformers this project pins (0.16 and
#: later import transformers 5 classes at module level)
GENAI_REQUIREMENT = "onnxruntime-genai>=0.15,<0.16"
_COPIED = ("config.json", "generation_config.json")


def require_genai() -> Any:
    """The onnxruntime_genai module, or an ExportError saying how to install it."""
    try:
        import onnxruntime_genai as og
    except ImportError as exc:
        raise ExportError(f"--genai needs onnxruntime-genai: pip install '{GENAI_REQUIREMENT}' ({exc})") from exc
    return og


def genai_precision(cfg: ONNXSettings) -> str:
    """The builder's `--precision` for `cfg`; raises ExportError for settings the builder does not take."""
    if cfg.optimize:
        raise ExportError("onnx: --genai writes fused operators already; drop --optimize")
    if cfg.int8 and cfg.int8_method == "dynamic":
        raise ExportError("onnx: --genai quantizes weight-only (MatMulNBits); int8_method dynamic does not apply")
    if cfg.dtype == "fp16":
        raise ExportError("onnx: --genai is built for the CPU provider here (fp32, int8, int4); fp16 is not gated")
    return "int4" if cfg.int4 else "int8" if cfg.int8 else "fp32"


def build_genai(src: Path, work: Path, cfg: ONNXSettings, cache: Path) -> dict[str, Any]:
    """Build the GenAI folder `work` from the HF folder `src`; returns what the record says about it."""
    precision = genai_precision(cfg)
    og = require_genai()
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(work),
           "-p", precision, "-e", "cpu", "-c", str(cache)]  # fmt: skip
    extra: dict[str, Any] = {"prune_lm_head": True}  # prefill: the head for the last position only
    if precision in ("int4", "int8"):
        block = cfg.int4_block_size if precision == "int4" else 32
        extra = {"block_size": block, "accuracy_level": cfg.accuracy_level}
    if precision == "int8":  # 0.15's int8 with a shared (tied) table writes a head that refers to a missing tensor
        extra["shared_embeddings"] = False
    extra.update(cfg.genai_options)
    if extra:
        cmd += ["--extra_options", *(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items())]
    # One OpenMP thread for the builder's torch: with two, the first `Tensor.cos()` of a fresh torch 2.13 CPU
    # process returned values off by up to 1.5e-4 for the elements of the second thread (5 of 15 processes
    # here), which put cos_cache rows 128+ off and failed the fp32 gate by 1.3e-4 of the logit scale.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0 or not (work / "genai_config.json").is_file():
        tail = (proc.stderr or proc.stdout)[-1500:]
        raise ExportError(f"onnxruntime-genai's builder could not build {src} ({precision}):\n{tail}")
    for name in _COPIED:
        if (src / name).is_file():
            shutil.copy2(src / name, work / name)
    return {"builder": f"onnxruntime-genai {og.__version__}", "precision": precision, **extra}


def open_genai(folder: Path, threads: int | None = None) -> Any:
    """An `onnxruntime_genai.Model` of `folder`, on `threads` intra-op threads when given."""
    og = require_genai()
    config = og.Config(str(folder))
    if threads is not None:
        opts = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": opts}}}))
    return og.Model(config)


class GenAIDecoder:
    """One sequence at a time through onnxruntime-genai: feed tokens, read the last position's logits.

    Greedy choice is made here from the logits (`argmax`) rather than by the runtime's search, because the
    search ends at EOS: the benchmark's fixed-length answers and the gate's `min_new_tokens` both need
    decoding to go on past it, as the torch and optimum paths do.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._og = require_genai()
        self._gen: Any = None

    def start(self, max_length: int) -> None:
        """A fresh generator whose KV cache holds `max_length` positions."""
        params = self._og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, do_sample=False)
        self._gen = self._og.Generator(self.model, params)

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        """Run `ids` after what was fed before; returns the logits of the last of them, shape (vocab,)."""
        self._gen.append_tokens(np.asarray([list(ids)], dtype=np.int32))
        return np.asarray(self._gen.get_logits())[0, -1]


def genai_logits(model: Any, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Logits at every position of each prompt, fed one token at a time (the cached decode path);
    per prompt shape (len, vocab), float32."""
    dec = GenAIDecoder(model)
    out = []
    for seq in ids:
        dec.start(len(seq) + 1)
        out.append(np.stack([dec.feed([t]) for t in seq]).astype(np.float32))
    return out


def genai_greedy(model: Any, ids: Sequence[Sequence[int]], n_new: int, eos_ids: Sequence[int]) -> list[list[int]]:
    """Greedy continuations of `n_new` tokens with EOS masked (as transformers' `min_new_tokens` does);
    each prompt fed whole (the prefill path)."""
    dec = GenAIDecoder(model)
    masked = [int(e) for e in eos_ids]
    out = []
    for seq in ids:
        dec.start(len(seq) + n_new + 1)
        logits, new = dec.feed(seq), []
        for i in range(n_new):
            logits[masked] = -np.inf
            new.append(int(np.argmax(logits)))
            if i + 1 < n_new:
                logits = dec.feed(new[-1:])
        out.append(new)
    return out


def genai_gate(
    folder: Path,
    ids: list[list[int]],
    ref: list[np.ndarray],
    ref_greedy: list[list[int]],
    n_new: int,
    eos_ids: Sequence[int],
    thresholds: Any,
    check_greedy: bool,
) -> ParityReport:
    """Torch's logits (`ref`, per prompt (len, vocab)) and greedy continuations against onnxruntime-genai's
    reading of `folder`, gated with `thresholds` (a profile `Gate`)."""
    from distill2edge.logit_compare import compare_logits

    og = require_genai()
    model = open_genai(folder)
    report = ParityReport(
        runtime=f"onnxruntime-genai {og.__version__}", n_prompts=len(ids), n_positions=sum(map(len, ids)),
        **compare_logits(ref, genai_logits(model, ids)).metrics(),
    )  # fmt: skip
    if check_greedy and n_new:
        report.greedy_identical = genai_greedy(model, ids[: len(ref_greedy)], n_new, eos_ids) == ref_greedy
    return gate(report, max_rel_logit=thresholds.max_rel_logit, max_kld=thresholds.max_kld,
                min_same_top=thresholds.min_same_top)  # fmt: skip


def eos_ids(src: Path, tok: Any) -> list[int]:
    """EOS ids transformers stops at for the HF folder `src`: the tokenizer's and generation_config's."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    gen = src / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        ids |= set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())
    return sorted(ids)
