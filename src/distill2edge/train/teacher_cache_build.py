"""Building teacher-cache entries (`train.teacher_cache` keys and reads them): one teacher pass over the
samples, `cache.batch_size` at a time, written straight into memory-mapped `.npy` files.

Nothing is held for the whole data set: each batch's rows go to disk before the next batch runs. For a
top-k entry over every position (`positions="all"`) a batch has B·T rows, so the teacher's logits are
never formed for the whole batch: its last hidden state goes through the LM head `ROW_CHUNK` rows at a
time, and only the top-k of each chunk is kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from distill2edge.atomic import file_lock, remove_stale_temps, write_dir_atomic
from distill2edge.data.tokenize import IGNORE_INDEX, collate
from distill2edge.losses.cma import moments
from distill2edge.losses.sparse import sparse_teacher_targets
from distill2edge.models.hf import module_weight, output_embeddings, text_config
from distill2edge.train.teacher_cache import (
    FORMAT_VERSION,
    POSITIONS,
    Features,
    HiddenCache,
    TopKCache,
    row_offsets,
)

ROW_CHUNK = 256
"""Rows whose full-vocabulary teacher logits exist at once while an all-positions entry is built
(256 x 49,152 float32 logits: 50 MB, twice that with their log-softmax)."""


def _batches(features: Features, batch_size: int) -> Iterator[tuple[int, Features]]:
    for start in range(0, len(features), batch_size):
        yield start, features[start : start + batch_size]


def _strip(features: Features, prefix: str) -> list[dict[str, list[int]]]:
    return [{k: f[prefix + k] for k in ("input_ids", "labels")} for f in features]


def _teacher_logit_rows(
    teacher: nn.Module, batch: dict[str, torch.Tensor], vocab_size: int, positions: str
) -> Iterator[torch.Tensor]:
    """The teacher's logits [n, vocab_size] at the rows an entry stores for `batch`, in row order (sample
    by sample, positions ascending), one or more chunks per batch.

    `answer`: positions whose next token is an answer token, via `logits_to_keep` (short answers, so the
    [B, K, V] logits are small). `all`: every position whose next token is real; the last hidden state
    [B, T, d] is taken once and the LM head applied `ROW_CHUNK` rows at a time (the head module is called,
    so offloading hooks still run; Gemma-2 style soft-capping is applied as the model would).
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if positions == "answer":
        shifted = batch["labels"][:, 1:]
        keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero(as_tuple=True)[0]
        logits = teacher(**inputs, logits_to_keep=keep).logits
        yield logits[..., :vocab_size][shifted[:, keep] != IGNORE_INDEX]
        return
    last = teacher(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]  # [B, T, d]
    rows = last[:, :-1][batch["attention_mask"][:, 1:].bool()]  # [N, d]: positions whose next token is real
    head = output_embeddings(teacher)
    softcap = getattr(text_config(teacher), "final_logit_softcapping", None)
    for r in range(0, rows.shape[0], ROW_CHUNK):
        z = head(rows[r : r + ROW_CHUNK])[..., :vocab_size]
        yield torch.tanh(z / softcap) * softcap if softcap else z


@torch.no_grad()
def _fill_topk(
    teacher: nn.Module, features: Features, out: Path, *, pad_id: int, vocab_size: int, k: int, temperature: float,
    batch_size: int, device: torch.device, progress: bool, positions: str = "answer",
) -> dict[str, Any]:
    """Write `offsets.npy`, `indices.npy` [R, k] int32, `log_probs.npy` [R, k] and `rest.npy` [R] float32
    (`sparse_teacher_targets` of each stored row); returns the entry's meta."""
    offsets = row_offsets(features, positions=positions)
    n_rows = int(offsets[-1])
    k = min(k, vocab_size)
    np.save(out / "offsets.npy", offsets)
    indices = np.lib.format.open_memmap(out / "indices.npy", mode="w+", dtype=np.int32, shape=(n_rows, k))
    log_probs = np.lib.format.open_memmap(out / "log_probs.npy", mode="w+", dtype=np.float32, shape=(n_rows, k))
    rest = np.lib.format.open_memmap(out / "rest.npy", mode="w+", dtype=np.float32, shape=(n_rows,))
    row = 0
    teacher.eval()
    for _, part in tqdm(list(_batches(features, batch_size)), desc="teacher cache (top-k)", disable=not progress):
        batch = {key: v.to(device) for key, v in collate(part, pad_id).items()}
        for logits in _teacher_logit_rows(teacher, batch, vocab_size, positions):
            idx, logp, rst = sparse_teacher_targets(logits, k, temperature)
            n = idx.shape[0]
            indices[row : row + n] = idx.cpu().numpy()
            log_probs[row : row + n] = logp.cpu().numpy()
            rest[row : row + n] = rst.cpu().numpy()
            row += n
    if row != n_rows:
        raise RuntimeError(f"teacher cache: wrote {row} rows, expected {n_rows}")
    for arr in (indices, log_probs, rest):
        arr.flush()
    meta = {"kind": "topk", "top_k": k, "temperature": temperature, "vocab_size": vocab_size, "rows": n_rows}
    return meta if positions == "answer" else {**meta, "positions": positions}  # answer-only metas as before


@torch.no_grad()
def _fill_hidden(
    teacher: nn.Module, features: Features, out: Path, *, prefix: str, pad_id: int, dtype: str, batch_size: int,
    device: torch.device, progress: bool,
) -> dict[str, Any]:
    offsets = row_offsets(features, prefix)
    n_rows = int(offsets[-1])
    d = int(module_weight(output_embeddings(teacher)).shape[1])
    np.save(out / "offsets.npy", offsets)
    hidden = np.lib.format.open_memmap(out / "hidden.npy", mode="w+", dtype=np.dtype(dtype), shape=(n_rows, d))
    row = 0
    teacher.eval()
    plain = _strip(features, prefix)
    grid: list[np.ndarray] = []  # per sample: moments of its last hidden state over its real grid positions
    for _, part in tqdm(list(_batches(plain, batch_size)), desc="teacher cache (hidden)", disable=not progress):
        batch = {key: v.to(device) for key, v in collate(part, pad_id).items()}
        last = teacher(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
            logits_to_keep=1,
        ).hidden_states[-1]  # [B, T, d], after the final norm
        mask = batch["labels"][:, 1:] != IGNORE_INDEX  # [B, T-1]: positions whose next token is an answer token
        rows = last[:, :-1][mask]
        hidden[row : row + rows.shape[0]] = rows.float().cpu().numpy().astype(dtype)
        row += rows.shape[0]
        for b, n in enumerate(batch["attention_mask"].sum(1).tolist()):  # the sample's real grid positions
            grid.append(moments(last[b, : int(n) - 1]).cpu().numpy())
    if row != n_rows:
        raise RuntimeError(f"teacher cache: wrote {row} rows, expected {n_rows}")
    hidden.flush()
    np.save(out / "moments.npy", np.stack(grid) if grid else np.zeros((0, 3)))
    return {"kind": "hidden", "dtype": dtype, "hidden_size": d, "rows": n_rows}


@dataclass
class CacheStats:
    """What a stage reports about its cache use."""

    path: str
    hit: bool
    build_seconds: float
    bytes: int

    def as_info(self) -> dict[str, Any]:
        return {"teacher_cache": self.path, "teacher_cache_hit": self.hit,
                "teacher_cache_build_s": round(self.build_seconds, 2), "teacher_cache_mb": round(self.bytes / 2**20, 2)}


def _find_topk(key_dir: Path, k: int, temperature: float, positions: str = "answer") -> Path | None:
    """A complete top-k entry at `temperature` over `positions` with at least `k` entries per row (the
    smallest such). The key already tells the two kinds of positions apart; the meta is checked too."""
    found = []
    for p in key_dir.glob("topk-*"):
        if (p / "meta.json").exists():
            meta = json.loads((p / "meta.json").read_text())
            same = meta["temperature"] == temperature and meta.get("positions", "answer") == positions
            if same and meta["top_k"] >= min(k, meta["vocab_size"]):
                found.append((meta["top_k"], p))
    return min(found)[1] if found else None


def topk_cache(
    root: Path, key: str, build_teacher: Callable[[], nn.Module], features: Features, *, pad_id: int,
    vocab_size: int, k: int, temperature: float, batch_size: int = 8, device: torch.device | str = "cpu",
    progress: bool = True, positions: str = "answer",
) -> tuple[TopKCache, CacheStats]:
    """Open the top-k entry for `key`, building it first if needed with the model `build_teacher()` returns.

    `build_teacher` is called only on a miss, so a hit never loads the teacher. `positions` (`POSITIONS`)
    says which rows the entry holds; callers put `positions="all"` into `key` as well (`cache_key`).
    """
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    key_dir = root / key
    start = time.perf_counter()
    with file_lock(root / f".{key}.lock"):
        path = _find_topk(key_dir, k, temperature, positions)
        hit = path is not None
        if path is None:
            path = key_dir / f"topk-{'' if positions == 'answer' else positions + '-'}k{k}-T{temperature:g}"
            remove_stale_temps(path)
            teacher = build_teacher()

            def write(tmp: Path) -> None:
                meta = _fill_topk(teacher, features, tmp, pad_id=pad_id, vocab_size=vocab_size, k=k,
                                  temperature=temperature, batch_size=batch_size, device=torch.device(device),
                                  progress=progress, positions=positions)
                (tmp / "meta.json").write_text(json.dumps({"format": FORMAT_VERSION, "key": key, **meta}, indent=1))

            write_dir_atomic(path, write)
    entry = TopKCache.open(path)
    return entry, CacheStats(str(path), hit, 0.0 if hit else time.perf_counter() - start, entry.nbytes())


def hidden_cache(
    root: Path, key: str, build_teacher: Callable[[], nn.Module], features: Features, *, prefix: str, pad_id: int, dtype: str = "float16",
    batch_size: int = 8, device: torch.device | str = "cpu", progress: bool = True,
) -> tuple[HiddenCache, CacheStats]:
    """Open (or build, as `topk_cache`) the hidden-state entry for `key`; `prefix` selects the teacher's
    own tokenization in `features` ("" when it reads the student's)."""
    path = root / key / f"hidden-v2-{dtype}"  # v2: with moments.npy (entries without it are rebuilt)
    start = time.perf_counter()
    with file_lock(root / f".{key}.lock"):
        hit = (path / "meta.json").exists()
        if not hit:
            remove_stale_temps(path)
            teacher = build_teacher()

            def write(tmp: Path) -> None:
                meta = _fill_hidden(teacher, features, tmp, prefix=prefix, pad_id=pad_id, dtype=dtype,
                                    batch_size=batch_size, device=torch.device(device), progress=progress)
                (tmp / "meta.json").write_text(json.dumps({"format": FORMAT_VERSION, "key": key, **meta}, indent=1))

            write_dir_atomic(path, write)
    entry = HiddenCache.open(path)
    return entry, CacheStats(str(path), hit, 0.0 if hit else time.perf_counter() - start, entry.nbytes())
