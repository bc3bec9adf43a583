"""Pieces shared by the exporters: errors, work folders, loading the torch reference, parity reports and gates.

The logits themselves are compared by `distill2edge.logit_compare` (the gates' KLD, same top token, max |dlogit|).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Prompts the gates run through both runtimes: prose, code, numbers, unicode, a chat turn.
SAMPLE_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "In 5G networks, the gNodeB communicates with the core over the NG interface, which",
    "Question: what is 17 * 23? Answer:",
    "Les réseaux mobiles — 4G, 5G — utilisent l'OFDM. 日本語のテキストも。",
)

#: Longer passages the logit gates also run, so that a gate compares ~800 positions (SmolLM2's tokenizer)
#: instead of the ~100 of the sample prompts: the same-top-token rate's standard error at 90% is then
#: about 1 point instead of 3. Telecom prose, code, a chat exchange, figures, French.
GATE_PASSAGES: tuple[str, ...] = (
    ("When a user equipment powers on, it scans the supported bands for a synchronization signal block, "
    "decodes the master information block and then the system information that tells it how to access the "
    "cell. It sends a random access preamble, receives a response with a timing advance and an uplink "
    "grant, and completes the RRC connection setup. The core network then authenticates the subscriber, "
    "sets up a PDU session through the SMF and UPF, and the device can finally exchange user-plane data. "
    "Handover between cells is prepared by measurement reports that compare the serving and neighbour "
    "cells' reference signal received power against configured thresholds and hysteresis."),
    ("import math\n\n\nclass Cell:\n    def __init__(self, pci: int, earfcn: int, rsrp: float) -> None:\n"
    "        self.pci = pci\n        self.earfcn = earfcn\n        self.rsrp = rsrp\n\n"
    "    def path_loss(self, tx_power_dbm: float) -> float:\n        return tx_power_dbm - self.rsrp\n\n\n"
    "def best_cell(cells: list[Cell], hysteresis: float = 3.0) -> Cell:\n"
    "    ranked = sorted(cells, key=lambda c: c.rsrp, reverse=True)\n"
    "    if len(ranked) > 1 and ranked[0].rsrp - ranked[1].rsrp < hysteresis:\n"
    "        return min(ranked[:2], key=lambda c: c.pci)\n    return ranked[0]\n"),
    ("User: My phone shows full bars but web pages load very slowly. What could be wrong?\n"
    "Assistant: Full bars only mean the signal from the tower is strong; speed also depends on how many "
    "people share the cell, the backhaul capacity and the band you are on. Try toggling airplane mode to "
    "reattach, check whether another app is downloading in the background, and compare with Wi-Fi.\n"
    "User: It is the same on Wi-Fi at home.\nAssistant: Then the phone itself is the more likely cause."),
    ("Quarterly figures: 2021 revenue 41.2 million, 2022 revenue 47.9 million (+16.3%), 2023 revenue "
    "52.4 million (+9.4%). Average latency fell from 38 ms to 21 ms while the number of sites grew from "
    "1,240 to 1,875; energy per gigabyte dropped 27%. Table 3 lists 3.5 GHz, 700 MHz and 26 GHz "
    "carriers with bandwidths of 100, 20 and 400 MHz, subcarrier spacings 30, 15 and 120 kHz."),
    ("Les opérateurs déploient la 5G autonome pour offrir des tranches de réseau dédiées aux usines, aux "
    "hôpitaux et aux services d'urgence. Chaque tranche garantit un débit, une latence et une fiabilité "
    "définis par contrat, tandis que le cœur de réseau, virtualisé, s'exécute dans des centres de données "
    "régionaux proches des utilisateurs."),
)


class ExportError(RuntimeError):
    """The export cannot run (bad input folder, unsupported architecture, missing dependency)."""


class ParityError(ExportError):
    """The exported model disagrees with torch beyond the tolerance; nothing was written.

    `record` holds the numbers that would have gone into parity.json, for the error report.
    """

    def __init__(self, message: str, record: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.record = record or {}


@dataclass
class ParityReport:
    """Numbers of one gate: torch (reference) against an exported runtime on the sample prompts."""

    runtime: str
    n_prompts: int
    n_positions: int
    max_abs_logit_diff: float
    logit_scale: float  # max |torch logit| over all positions: the scale relative tolerances use
    mean_kld: float  # mean over positions of KL(p_torch || p_export), nats
    same_top_token: float  # fraction of positions whose argmax agrees
    greedy_identical: bool | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    gate_source: str = "profile"  # where the thresholds come from (the profile, or the model's size class)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def gate(
    report: ParityReport,
    *,
    max_rel_logit: float | None = None,
    max_kld: float | None = None,
    min_same_top: float | None = None,
    require_greedy: bool = True,
) -> ParityReport:
    """Fill `report.failures` from the thresholds; a threshold of None is not checked. Differing greedy
    generations fail only with `require_greedy` (lossless types); lossy ones record them as a figure.

    `max_rel_logit` is relative to the logit scale: max |Δlogit| <= max_rel_logit * logit_scale, so the
    same profile fits a tiny random model (logits ~0.5) and a trained one (logits ~30).
    """
    if max_rel_logit is not None:
        allowed = max_rel_logit * max(report.logit_scale, 1.0)
        report.thresholds["max_abs_logit_diff"] = allowed
        if report.max_abs_logit_diff > allowed:
            report.failures.append(
                f"max |Δlogit| {report.max_abs_logit_diff:.3g} > {allowed:.3g} "
                f"({max_rel_logit:g} x logit scale {report.logit_scale:.3g})"
            )
    if max_kld is not None:
        report.thresholds["mean_kld"] = max_kld
        if report.mean_kld > max_kld:
            report.failures.append(f"mean KLD {report.mean_kld:.4g} > {max_kld:g}")
    if min_same_top is not None:
        report.thresholds["same_top_token"] = min_same_top
        if report.same_top_token < min_same_top:
            report.failures.append(f"same top token {report.same_top_token:.3f} < {min_same_top:g}")
    if require_greedy and report.greedy_identical is False:
        report.failures.append("greedy generations differ from torch")
    return report


def check_model_dir(model_dir: str | os.PathLike[str]) -> Path:
    """Check that `model_dir` is a loadable HF folder (config.json with `architectures`, weights)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ExportError(f"{path}: not a folder (expected a Hugging Face model folder)")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ExportError(f"{cfg}: missing (not a Hugging Face model folder)")
    try:
        data = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{cfg}: not valid JSON ({exc})") from exc
    if not data.get("architectures"):
        raise ExportError(f"{cfg}: field `architectures` missing or empty")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ExportError(f"{path}: no *.safetensors or *.bin weights")
    rope = data.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and rope.get("rope_theta") != data.get("rope_theta"):
        warnings.warn(
            f"{cfg}: `rope_parameters.rope_theta`={rope['rope_theta']} is ignored by transformers 4.57, which "
            f"uses rope_theta={data.get('rope_theta', 10000.0)}; the export follows the torch model. Set "
            "`rope_theta` at the top level if the model was trained with the other value.",
            stacklevel=2,
        )
    return path


def check_output(out: Path, *, folder: bool) -> None:
    """Check, before any model is loaded, that `out` can be written: not a folder where a file goes (or an
    existing folder where a new one goes), no file among its parents, a writable parent. Creates the
    parent and removes temporaries that killed exports of the same target left there."""
    if folder and out.exists():
        raise ExportError(f"--out {out}: already exists; remove it or choose another folder")
    if not folder and out.is_dir():
        raise ExportError(f"--out {out}: is a folder; give the GGUF file path")
    blocker = next((p for p in out.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ExportError(f"--out {out}: cannot be created under {blocker}, which is a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot create {out.parent}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out}: {out.parent} is not writable")
    remove_stale_temps(out)


def export_tempdir(out: Path) -> tempfile.TemporaryDirectory[str]:
    """The hidden work folder of an export of `out`, beside it: `.NAME.<pid>-XXXXXXXX.tmp`. The PID lets a
    later export tell a killed export's folder (removed) from a running one's (kept)."""
    return tempfile.TemporaryDirectory(prefix=f".{out.name}.{os.getpid()}-", suffix=".tmp", dir=out.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete `.NAME.*.tmp` work folders of exports of `out` whose process is gone (those without a PID
    are from versions that did not record one, and no process can still own them). Returns them."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(?:(\d+)-)?[a-z0-9_]{{8}}\.tmp")
    removed = []
    for path in out.parent.iterdir() if out.parent.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match is None or (match.group(1) and _pid_alive(int(match.group(1)))):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def load_torch(model_dir: Path) -> tuple[Any, Any]:
    """Load the reference (model in float32 eval mode, tokenizer), the way the pinned transformers does."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except Exception as exc:
        raise ExportError(f"{model_dir}: cannot be loaded by transformers: {exc}") from exc
    return model.eval(), tok


def encode_prompts(tok: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids per prompt, as HF tokenizes them (BOS included when the tokenizer adds it)."""
    return [list(tok(p)["input_ids"]) for p in prompts]


@dataclass
class TorchReference:
    """What an export is compared with: torch logits on the gate texts (`ids`: sample prompts, then
    passages) and torch's greedy continuations of the sample prompts (the first `len(greedy)` ids)."""

    ids: list[list[int]]
    logits: list[np.ndarray]
    greedy: list[list[int]]


def torch_reference(
    model: Any, tok: Any, prompts: Sequence[str], n_greedy: int, passages: Sequence[str] = GATE_PASSAGES
) -> TorchReference:
    """Torch's side of every gate: logits on prompts + passages, greedy continuations of the prompts."""
    from distill2edge.runtimes import torch_lm

    ids = encode_prompts(tok, [*prompts, *passages])
    greedy = [torch_lm.greedy(model, s, n_greedy) for s in ids[: len(prompts)]] if n_greedy else []
    return TorchReference(ids, torch_logits(model, ids), greedy)


def torch_logits(model: Any, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Logits `[seq, vocab]` (float32) for each token-id list, one forward pass per prompt."""
    from distill2edge.runtimes import torch_lm

    return [torch_lm.logits(model, seq) for seq in ids]
