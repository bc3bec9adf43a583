"""Check a converted Hugging Face model against the GGUF it came from, run by llama.cpp.

What is compared, on six short telecom prompts and one ~240-token telecom paragraph:
- tokenization: the HF tokenizer's ids (with its BOS policy) against llama.cpp's, on the prompts and on
  harder strings (digits, runs of spaces, newlines, non-ASCII); must be identical;
- teacher-forced logits on prompt + llama.cpp's greedy continuation (the same ids for both): the rate
  of positions with the same top-1 token, mean KL(llama.cpp || torch) over positions, and the largest
  |logit difference| divided by the largest |logit| (the logit scale). The long paragraph is there
  because position errors (a wrong RoPE base) grow with distance and hide in short prompts;
- greedy continuations of `n_new` tokens from both, and where they first differ. At that step both
  runs have seen the same prefix, so torch's preference margin (its top logit minus its logit for
  llama.cpp's token) says whether the split is a near-tie;
- for models with sliding-window layers: the paragraph again with the window shrunk to 32 tokens on
  both sides (llama.cpp through a metadata override), which exercises the window and `layer_types`
  that a 512-token window never reaches in short prompts.

Why the models cannot match exactly: the weights are dequantized identically, but llama.cpp also
quantizes the *activations* to 8 bits (Q8_0/Q8_1/Q8_K blocks) before every quantized matmul. In torch,
quantizing every nn.Linear input to 8 bits per 32-value block moves SmolLM2's logits by as much as the
llama.cpp comparison shows (max |dlogit| 0.9-1.3, mean KL 0.004-0.007, top-1 0.89-1.0), so that noise
alone explains the figures in `ParityThresholds`; greedy paths then split at near-ties.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.logit_compare import compare_rows
from distill2edge.runtimes import llamacpp, torch_lm

LONG_PROMPT = (
    "In a 5G standalone network, a device that powers on first searches for a synchronization signal "
    "block, reads the master information block and the first system information block, and then starts "
    "the random access procedure to reach the gNB. After the RRC connection is set up, the device "
    "registers with the core network: the AMF authenticates the subscriber with help from the AUSF and "
    "the UDM, sets up the security context, and allocates a temporary identifier. When the device needs "
    "data, the SMF selects a UPF and establishes a PDU session with one or more QoS flows, each marked by "
    "a QoS flow identifier that the radio layer maps onto data radio bearers. As the device moves, the "
    "gNB configures measurement reports; when a neighbouring cell becomes stronger than the serving cell "
    "by an offset for the time-to-trigger, the source gNB prepares a handover with the target over the Xn "
    "interface, and the user plane path is switched at the UPF once the device has arrived. If the device "
    "stays idle, the network releases the connection to RRC_INACTIVE, keeping the context so that the "
    "connection can be resumed quickly when new data arrives."
)
VERIFY_PROMPTS: tuple[str, ...] = (
    "The eNodeB hands over the UE to a neighbouring cell when",
    "In 5G NR, the gNB schedules uplink resources using",
    "Question: What does RSRP measure in LTE?\nAnswer:",
    "A network slice is",
    "The Access and Mobility Management Function (AMF) is responsible for",
    "During the random access procedure, the UE first transmits",
    LONG_PROMPT,
)
TOKENIZER_TEXTS: tuple[str, ...] = VERIFY_PROMPTS + (
    "3GPP TS 38.331 v15.3.0 (Release 15, 2018): 1,000,000 UEs at -110 dBm",
    "Hello  world\n\n   indented\tTab line\n\n\nend",
    "Ünïcödé — ‘quotes’ ½ µs · 😀 x=[1,2,3]; y={'k': v}",
    " leading space and trailing  ",
)
PROBE_WINDOW = 32
"""Sliding window used by the sliding-window probe (much shorter than LONG_PROMPT)."""


@dataclass(frozen=True)
class ParityThresholds:
    """Gates of a conversion check, from measurements (llama.cpp 0.3.36, F32 KV cache, x86 CPU).

    Correct conversions, whole check (~425 positions): SmolLM2-135M Q4_1 top-1 0.963, mean KL 0.0042,
    max |dlogit|/scale 0.037; Gemma-3-270M Q4_K_M top-1 0.967, mean KL 0.0063, ratio 0.079, and KL
    0.0078 in the 32-token sliding-window probe.
    Deliberately broken, whole check: SmolLM2 with rope_theta 10000 (transformers' default) top-1 0.78,
    KL 0.080; with rope_theta 500000 top-1 0.895, KL 0.028; Gemma-3 with layer_types shifted by one
    layer top-1 0.86, KL 0.074, probe KL 1.1. On the long paragraph alone: Gemma-3 with rope_theta 1e4
    KL 0.055, local RoPE base 1e6 KL 0.76, query scale 1/sqrt(160) KL 0.061; the probe without a window
    on the HF side KL 0.38, off by one token 0.018-0.021.
    So mean KL separates best (correct <= 0.008 < 0.02 <= broken 0.028); top-1 and the logit ratio are
    coarser second gates.
    """

    min_top1: float = 0.9
    max_mean_kl: float = 0.02
    max_rel_logit_diff: float = 0.15
    near_tie: float = 1.5
    """A greedy split is acceptable at any position when torch's margin is below this many logits.
    Measured splits: margins 0.009-0.47, at tokens 2-10 (SmolLM2 split at token 2 on a 0.18 margin)."""
    min_agreeing_tokens: int = 8
    """A split that is not a near-tie fails the check if it comes before this many generated tokens."""


@dataclass
class _LlamaRun:
    """llama.cpp's side of one prompt: prompt ids, greedy continuation, logits [len(ids) + n_new, V]."""

    prompt: str
    ids: list[int]
    gen: list[int]
    logits: np.ndarray


def _llama_greedy(llm: Any, prompt: str, n_new: int) -> _LlamaRun:
    ids = llamacpp.tokenize(llm, prompt)
    gen = llamacpp.greedy(llm, ids, n_new)
    return _LlamaRun(prompt, ids, gen, np.array(llm.scores[: llm.n_tokens], dtype=np.float32))


def _compare_run(run: _LlamaRun, model: PreTrainedModel, tok: PreTrainedTokenizerBase
                 ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Torch's side: teacher-forced logits on llama.cpp's sequence, and its own greedy continuation.

    Returns (JSON row, top-1 hits [T], KL per position [T]).
    """
    ref, got = run.logits, torch_lm.logits(model, run.ids + run.gen)
    cmp = compare_rows(ref, got)
    ours = torch_lm.greedy(model, run.ids, len(run.gen))
    split = next((i for i, (a, b) in enumerate(zip(ours, run.gen)) if a != b), None)
    prompt = run.prompt if len(run.prompt) < 120 else run.prompt[:117] + "..."
    row: dict[str, Any] = {
        "prompt": prompt, "prompt_tokens": len(run.ids),
        "llama_cpp": tok.decode(run.gen), "torch": tok.decode(ours), "first_divergence": split,
        "top1_agreement": round(cmp.same_top_token, 4), "mean_kl": round(cmp.mean_kld, 6),
        "max_abs_logit_diff": round(cmp.max_abs_logit_diff, 4), "logit_scale": round(cmp.logit_scale, 4),
        "rel_logit_diff": round(cmp.rel_logit_diff, 4),
    }
    if split is not None:
        pos = len(run.ids) + split - 1  # the row predicting generated token `split`
        row["torch_margin_at_divergence"] = round(float(got[pos, ours[split]] - got[pos, run.gen[split]]), 4)
    return row, cmp.same_top, cmp.kl


@contextlib.contextmanager
def _window(model: PreTrainedModel, size: int) -> Iterator[None]:
    """Temporarily shrink the sliding window of `model` (config and its sliding attention modules)."""
    # Any: `sliding_window` is a plain int attribute, which nn.Module's typing (Tensor | Module) does not know.
    modules: list[Any] = [m for m in model.modules()
                          if m is not model and getattr(m, "sliding_window", None) is not None]
    saved = model.config.sliding_window, [m.sliding_window for m in modules]
    model.config.sliding_window = size
    for m in modules:
        m.sliding_window = size
    try:
        yield
    finally:
        model.config.sliding_window = saved[0]
        for m, w in zip(modules, saved[1]):
            m.sliding_window = w


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def compare_with_llama_cpp(
    gguf_path: Path, model: PreTrainedModel, tok: PreTrainedTokenizerBase, *,
    prompts: Sequence[str] = VERIFY_PROMPTS, n_new: int = 16, n_threads: int = 1,
) -> dict[str, Any]:
    """Run both models on `prompts`; returns the figures described in the module docstring (JSON-ready).

    All llama.cpp work runs first and its context is closed before torch starts, and both use
    `n_threads` threads (torch's setting is restored after). Both thread pools spin while waiting, so
    they degrade badly when a core is taken: on the 2-core machine, with another process busy, the
    SmolLM2 check took 248 s with 2 threads and 52 s with 1 (idle machine: 9 s and 14 s). The figures
    were identical with 1 and 2 threads.
    """
    from gguf import GGUFReader

    layer_types = getattr(model.config, "layer_types", None) or []
    sliding = bool(getattr(model.config, "sliding_window", None)) and "sliding_attention" in layer_types
    llm = llamacpp.open_gguf(gguf_path, threads=n_threads, exact=True)
    try:
        token_mismatches = []
        for text in TOKENIZER_TEXTS:
            ours = tok(text)["input_ids"]
            theirs = llamacpp.tokenize(llm, text)
            if ours != theirs:
                token_mismatches.append({"text": text[:80], "hf": ours[:40], "llama_cpp": theirs[:40]})
        runs = [_llama_greedy(llm, prompt, n_new) for prompt in prompts]
        long_ids = llamacpp.tokenize(llm, LONG_PROMPT)
    finally:
        llm.close()
    probe_ref = None
    if sliding:  # the same paragraph with a 32-token window, through a metadata override
        arch = GGUFReader(str(gguf_path)).fields["general.architecture"].contents()
        llm = llamacpp.open_gguf(gguf_path, threads=n_threads, exact=True,
                                 overrides={f"{arch}.attention.sliding_window": PROBE_WINDOW})
        try:
            probe_ref = llamacpp.all_logits(llm, long_ids)
        finally:
            llm.close()

    model.eval()
    rows, hits, kls = [], [], []
    probe = None
    with _torch_threads(n_threads):
        for run in runs:
            row, top1, kl = _compare_run(run, model, tok)
            rows.append(row)
            hits.append(top1)
            kls.append(kl)
        if probe_ref is not None:
            with _window(model, PROBE_WINDOW):
                got = torch_lm.logits(model, long_ids)
            cmp = compare_rows(probe_ref, got)
            probe = {"window": PROBE_WINDOW, "positions": len(long_ids), "mean_kl": round(cmp.mean_kld, 6),
                     "top1_agreement": round(cmp.same_top_token, 4)}
    return {
        "runtime": f"{llamacpp.runtime_name()}, F32 KV cache, {n_threads} thread(s) each",
        "n_new_tokens": n_new,
        "tokenizer_texts": len(TOKENIZER_TEXTS),
        "tokenizer_mismatches": token_mismatches,
        "positions": int(sum(len(h) for h in hits)),
        "top1_agreement": round(float(np.concatenate(hits).mean()), 4),
        "mean_kl": round(float(np.concatenate(kls).mean()), 6),
        "max_rel_logit_diff": max(r["rel_logit_diff"] for r in rows),
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in rows),
        "greedy_identical": sum(r["first_divergence"] is None for r in rows),
        "prompts": rows,
        "sliding_window_probe": probe,
    }


def parity_failures(report: dict[str, Any], gate: ParityThresholds = ParityThresholds()) -> list[str]:
    """Why `report` fails `gate` (empty list: it passes)."""
    fails = []
    if report["tokenizer_mismatches"]:
        fails.append(f"tokenizer differs from llama.cpp on {len(report['tokenizer_mismatches'])} texts, "
                     f"first: {report['tokenizer_mismatches'][0]}")
    if report["top1_agreement"] < gate.min_top1:
        fails.append(f"top-1 agreement {report['top1_agreement']} < {gate.min_top1}")
    if report["mean_kl"] > gate.max_mean_kl:
        fails.append(f"mean KL {report['mean_kl']} > {gate.max_mean_kl}")
    if report["max_rel_logit_diff"] > gate.max_rel_logit_diff:
        fails.append(f"max |dlogit| / logit scale {report['max_rel_logit_diff']} > {gate.max_rel_logit_diff}")
    probe = report.get("sliding_window_probe")
    if probe and probe["mean_kl"] > gate.max_mean_kl:
        fails.append(f"with a {probe['window']}-token sliding window, mean KL {probe['mean_kl']} > "
                     f"{gate.max_mean_kl}: sliding_window or layer_types disagree with llama.cpp")
    for r in report["prompts"]:
        split = r["first_divergence"]
        early = split is not None and split < gate.min_agreeing_tokens
        if early and r["torch_margin_at_divergence"] > gate.near_tie:
            fails.append(f"greedy continuation of {r['prompt']!r} differs at token {split} and it is not a "
                         f"near-tie (torch margin {r['torch_margin_at_divergence']} > {gate.near_tie})")
    return fails
