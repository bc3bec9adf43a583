"""Teacher outputs computed once, stored memory-mapped on disk, and read back by the KD objectives.

A frozen teacher gives the same outputs for the same input every epoch, every stage and every grid
cell, so its forward pass need not be repeated, and once its outputs are on disk the teacher need not
be in memory at all while the student trains. Two kinds of entry:

- **top-k** (vanilla KD): for every distilled token, the teacher's k most likely token ids, their
  log-probabilities at temperature T and the log of the mass left over (`losses.sparse`).
- **hidden** (DSKD): the teacher's last hidden state at every answer position of its own tokenization;
  DSKD needs the teacher's embeddings and LM head besides, which are kept (`TeacherEnds`).

An entry lives in `ROOT/<key>/<kind>/`, where `key` is a content hash of the teacher's weights and
config and of the token ids and labels it reads (so dataset, tokenizer and prompt template are all
covered). Arrays are `.npy` files opened with `mmap_mode="r"`: an epoch reads only the rows of its
batches. Entries are written to a temporary folder under a file lock and renamed into place, so a
killed build leaves nothing half-written, and concurrent builders (processes of one multi-process run,
two grid cells) build once. A top-k entry serves any k up to its own (`TopKCache.targets` folds the
dropped entries into the remaining mass).

A top-k entry holds rows for the answer positions, or with `positions="all"` (full-sequence KD) for
every real next-token position of each sample; `all` is part of such an entry's key and meta, so the
two kinds never stand in for each other (answer-only keys are unchanged).

This module keys and reads entries; `train.teacher_cache_build` builds them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill2edge.atomic import write_json_atomic
from distill2edge.data.tokenize import IGNORE_INDEX
from distill2edge.models.hf import input_embeddings, output_embeddings

FORMAT_VERSION = 1
EXAMPLE_KEY = "example_index"
"""Feature/batch key holding each sample's row in the cache (`with_example_index`)."""

Features = Sequence[dict[str, list[int]]]

POSITIONS = ("answer", "all")
"""Which positions of a sample an entry stores: `answer` (positions whose next token is an answer token)
or `all` (every position whose next token is real: full-sequence KD, `distill.NAME.positions: all`)."""


# ----------------------------------------------------------------------------- keys


def fingerprint_model_dir(path: Path, memo: Path | None = None) -> str:
    """sha256 over a model folder's weights and config.json (file names and contents).

    Tokenizer files are left out on purpose: the token ids in the cache key already say how the text
    was tokenized. Hashing reads every weight byte (about a second per GB), so with `memo` (a JSON file)
    the digest is remembered per folder and reused while every file keeps its size and mtime.
    """
    files = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin"} or p.name == "config.json")
    if not any(p.suffix in {".safetensors", ".bin"} for p in files):
        raise FileNotFoundError(f"no weights (*.safetensors, *.bin) in {path}: cannot fingerprint the teacher")
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    known = json.loads(memo.read_text()) if memo is not None and memo.exists() else {}
    entry = known.get(str(path.resolve()))
    if entry is not None and entry["files"] == stamp:
        return entry["sha256"]
    digest = _hash_files(files)
    if memo is not None:
        known[str(path.resolve())] = {"files": stamp, "sha256": digest}
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(memo, known, indent=1)  # concurrent writers: the last one wins, none half-written
    return digest


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def features_digest(features: Features, prefix: str = "") -> str:
    """sha256 of the input ids and labels of every sample, in order."""
    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps([f[prefix + "input_ids"], f[prefix + "labels"]], separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


def cache_key(teacher_fingerprint: str, features: Features, prefix: str = "", **extra: Any) -> str:
    """The entry folder name: 24 hex digits of sha256 over the format version, the teacher, the samples
    as the teacher reads them (`prefix` selects the teacher's own tokenization) and `extra` facts."""
    payload = json.dumps(
        {"v": FORMAT_VERSION, "teacher": teacher_fingerprint, "features": features_digest(features, prefix), **extra},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def topk_cache_key(teacher_fingerprint: str, features: Features, vocab: int, positions: str = "answer") -> str:
    """`cache_key` of a top-k entry over the shared vocabulary `vocab`: `positions="all"` enters the key
    (an all-positions entry is never read for answer positions, nor the reverse), `answer` does not, so
    keys of entries built before full-sequence entries existed are unchanged."""
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    extra = {} if positions == "answer" else {"positions": positions}
    return cache_key(teacher_fingerprint, features, vocab=vocab, **extra)


def with_example_index(features: Features, start: int = 0) -> list[dict[str, list[int]]]:
    """Each sample plus its cache row (`EXAMPLE_KEY`), counting from `start`."""
    return [{**f, EXAMPLE_KEY: [start + i]} for i, f in enumerate(features)]


def collate_with_index(
    base: Callable[[Features], dict[str, torch.Tensor]], features: Features
) -> dict[str, torch.Tensor]:
    """`base(features)` plus `EXAMPLE_KEY` as a [B] long tensor (the collate functions drop unknown keys)."""
    batch = base(features)
    batch[EXAMPLE_KEY] = torch.tensor([f[EXAMPLE_KEY][0] for f in features], dtype=torch.long)
    return batch


def answer_rows(labels: list[int]) -> int:
    """Distilled positions of one sample: positions t whose next label is an answer token."""
    return sum(1 for y in labels[1:] if y != IGNORE_INDEX)


def sample_rows(feature: dict[str, list[int]], positions: str = "answer", prefix: str = "") -> int:
    """Rows an entry stores for one sample: `answer_rows`, or with `positions="all"` one per position whose
    next token is real (all its tokens but the last; padding is added only at batch time)."""
    if positions == "all":
        return max(len(feature[prefix + "input_ids"]) - 1, 0)
    if positions != "answer":
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    return answer_rows(feature[prefix + "labels"])


def row_offsets(features: Features, prefix: str = "", positions: str = "answer") -> np.ndarray:
    """[samples + 1] int64: where each sample's rows start in an entry (rows in sample order)."""
    counts = [sample_rows(f, positions, prefix) for f in features]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


# ----------------------------------------------------------------------------- reading


@dataclass
class _Entry:
    path: Path
    meta: dict[str, Any]
    offsets: np.ndarray

    def rows(self, examples: torch.Tensor) -> np.ndarray:
        """Row numbers of the given samples, concatenated in order."""
        idx = examples.tolist()
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]) if idx else np.zeros(0, np.int64)

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir())


@dataclass
class TopKCache(_Entry):
    """Top-k teacher targets: `indices` [R, K] int32, `log_probs` [R, K] float32, `rest` [R] float32."""

    indices: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    log_probs: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    rest: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]

    @property
    def k(self) -> int:
        return int(self.meta["top_k"])

    @property
    def positions(self) -> str:
        """`answer` or `all` (`POSITIONS`); entries written before `all` existed hold answer rows."""
        return str(self.meta.get("positions", "answer"))

    @classmethod
    def open(cls, path: Path) -> TopKCache:
        meta = json.loads((path / "meta.json").read_text())

        def load(name: str) -> np.ndarray:
            return np.load(path / name, mmap_mode="r")

        return cls(path, meta, load("offsets.npy"), load("indices.npy"), load("log_probs.npy"), load("rest.npy"))

    def targets(
        self, examples: torch.Tensor, k: int | None = None, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Targets of the distilled tokens of `examples` [B], in batch order then position order.

        Returns indices [R, k] long, log-probs [R, k] float32 and the remaining log-mass [R] float32. With
        k below the stored K, the entries k..K-1 are folded into the remaining mass.
        """
        k = self.k if k is None else k
        if k > self.k:
            raise ValueError(f"cache entry {self.path} holds the top {self.k}, not the top {k}")
        rows = self.rows(examples)
        idx = torch.from_numpy(np.ascontiguousarray(self.indices[rows, :k])).long()
        logp = torch.from_numpy(np.ascontiguousarray(self.log_probs[rows]))
        rest = torch.from_numpy(np.ascontiguousarray(self.rest[rows]))
        if k < self.k:
            rest = torch.logaddexp(rest, torch.logsumexp(logp[:, k:], dim=-1))
        return idx.to(device), logp[:, :k].contiguous().to(device), rest.to(device)


@dataclass
class HiddenCache(_Entry):
    """The teacher's last hidden state at the answer positions of its tokenization: `hidden` [R, d]."""

    hidden: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    grid_moments: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    """[samples, 3] float64: `losses.cma.moments` of each sample's last hidden state over its real grid
    positions (all but its last token; no padding), for cross-model attention's σ."""

    @classmethod
    def open(cls, path: Path) -> HiddenCache:
        meta = json.loads((path / "meta.json").read_text())
        return cls(
            path, meta, np.load(path / "offsets.npy", mmap_mode="r"), np.load(path / "hidden.npy", mmap_mode="r"),
            np.load(path / "moments.npy"),
        )

    def moments(self, examples: torch.Tensor) -> torch.Tensor:
        """Summed grid moments [3] (float64) of the given samples [B]."""
        return torch.from_numpy(self.grid_moments[examples.cpu().numpy()].sum(0))

    def scatter(self, examples: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[B, K, d] hidden states placed where `mask` [B, K] is True (zeros elsewhere).

        `mask` marks each sample's answer positions in its teacher tokenization, which are exactly the
        rows stored for it, in the same order.
        """
        rows = torch.from_numpy(np.ascontiguousarray(self.hidden[self.rows(examples)]))
        if rows.shape[0] != int(mask.sum()):
            raise RuntimeError(
                f"teacher cache {self.path}: {rows.shape[0]} cached rows for {int(mask.sum())} answer positions; "
                "the samples no longer match the ones the cache was built from"
            )
        out = torch.zeros(*mask.shape, rows.shape[-1], dtype=dtype, device=mask.device)
        out[mask] = rows.to(device=mask.device, dtype=dtype)
        return out


class TeacherEnds(nn.Module):
    """A teacher's input embeddings and LM head without its layers: what DSKD needs besides the cached
    hidden states (embeddings for cross-model attention, the head for teacher-space logits)."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.embed = input_embeddings(teacher)
        self.head = output_embeddings(teacher)
        self.config = teacher.config

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def get_output_embeddings(self) -> nn.Module:
        return self.head
