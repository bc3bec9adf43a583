"""Distillation from a teacher cache (`distill.NAME.cache.enabled`): the setup `run_distill` trains with.

Vanilla KD learns from the teacher's cached top-k targets (`losses.sparse`), at the answer tokens or,
with `positions: all`, at every real position (full-sequence KD), so the teacher is loaded only when its
entry must be built and is freed before the student is loaded. DSKD reads the teacher's
cached last hidden states and keeps only the teacher's embeddings and LM head (`TeacherEnds`); with
`hidden_dtype: float32` its losses equal the online run's.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.config import DataConfig, DistillConfig, KDLossConfig, LoraConfig
from distill2edge.data.classify import ClassExample
from distill2edge.data.qa import QAExample
from distill2edge.data.tokenize import IGNORE_INDEX, TEACHER_PREFIX, collate, collate_pair, pad_token_id
from distill2edge.losses.sparse import sparse_kd_loss
from distill2edge.models import DTYPES, VocabAlignment, VocabularyMismatchError, check_same_vocabulary, load_model
from distill2edge.models.hf import module_weight
from distill2edge.models.loading import load_tokenizer, local_model_dir
from distill2edge.models.placement import place_teacher, teacher_load_device
from distill2edge.train.algorithms import DistillSetup, build_algorithm
from distill2edge.train.dskd import DSKDObjective
from distill2edge.train.objectives import answer_positions, masked_ce
from distill2edge.train.teacher_cache import (
    EXAMPLE_KEY,
    Features,
    HiddenCache,
    TeacherEnds,
    TopKCache,
    cache_key,
    collate_with_index,
    fingerprint_model_dir,
    topk_cache_key,
    with_example_index,
)
from distill2edge.train.teacher_cache_build import CacheStats, hidden_cache, topk_cache


@dataclass
class CachedKD:
    """Vanilla KD against cached sparse teacher targets: (1 - alpha)·CE + alpha·D(teacher top-k ‖ student).

    No T² factor unless `loss.hinton_t2`, as the online `VanillaKD`. CE is always on the answer tokens; D
    is the mean over the entry's rows: the answer tokens, or with `positions="all"` (an all-positions
    entry) every position whose next token is real, with `answer_share` of D taken on the answer tokens
    alone, D = (1 - share)·D(all) + share·D(answer), as `VanillaKD` with `positions="all"`.

    Student logits are trimmed to `vocab_size`, the shared vocabulary the cache was built over.
    """

    cache: TopKCache
    loss: KDLossConfig
    vocab_size: int
    top_k: int
    tail: str = "uniform"
    positions: str = "answer"
    """Must match the entry's (`TopKCache.positions`)."""
    answer_share: float = 0.0

    def __post_init__(self) -> None:
        if self.cache.positions != self.positions:
            raise ValueError(f"teacher cache {self.cache.path} holds {self.cache.positions} positions, "
                             f"the objective distils {self.positions} positions")

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.positions == "all":
            return self._all_positions(model, batch)
        keep, targets = answer_positions(batch["labels"])
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
        ).logits[..., : self.vocab_size]
        ce = masked_ce(logits, targets)
        idx, logp, rest = self.cache.targets(batch[EXAMPLE_KEY].cpu(), self.top_k, device=logits.device)
        kd = self._divergence(logits[targets != IGNORE_INDEX], idx, logp, rest)
        a = self.loss.alpha
        return {"loss": (1 - a) * ce + a * kd, "ce": ce.detach(), "kd": kd.detach()}

    def _all_positions(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Full-sequence KD: student logits at every position ([B, T-1, V] after dropping the last, which
        predicts nothing), CE on the answer tokens, D over the real positions the entry stores."""
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=0
        ).logits[:, :-1, : self.vocab_size]
        targets = batch["labels"][:, 1:]  # [B, T-1]
        ce = masked_ce(logits, targets)
        real = batch["attention_mask"][:, 1:].bool()  # [B, T-1]: the entry's rows, sample by sample
        rows = logits[real]  # [N, V]
        idx, logp, rest = self.cache.targets(batch[EXAMPLE_KEY].cpu(), self.top_k, device=logits.device)
        if idx.shape[0] != rows.shape[0]:
            raise RuntimeError(f"teacher cache {self.cache.path}: {idx.shape[0]} cached rows for {rows.shape[0]} "
                               "positions; the samples no longer match the ones the cache was built from")
        kd = self._divergence(rows, idx, logp, rest)
        if self.answer_share:
            on = (targets != IGNORE_INDEX)[real]  # [N]: rows that predict an answer token
            kd = (1 - self.answer_share) * kd + self.answer_share * self._divergence(rows[on], idx[on], logp[on], rest[on])
        a = self.loss.alpha
        return {"loss": (1 - a) * ce + a * kd, "ce": ce.detach(), "kd": kd.detach()}

    def _divergence(self, rows: torch.Tensor, idx: torch.Tensor, logp: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """Row mean of `loss.name` between student logits [N, V] and the sparse targets ([N, k] x2, [N])."""
        return sparse_kd_loss(
            rows, idx, logp, rest, name=self.loss.name, temperature=self.loss.temperature,
            skew_lambda=self.loss.skew_lambda, tail=self.tail, hinton_t2=self.loss.hinton_t2,
        )


@dataclass
class CachedSetup:
    """Everything `run_distill` trains with when the teacher is cached."""

    student: nn.Module
    tokenizer: PreTrainedTokenizerBase
    setup: DistillSetup
    train_data: list[dict[str, list[int]]]
    val_data: list[dict[str, list[int]]]
    collate_fn: Callable[[Features], dict[str, torch.Tensor]]


def _free() -> None:
    """Return the memory of dropped models before the next one loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


Rows = list[dict[str, list[int]]]
Examples = Sequence[QAExample | ClassExample]
Encoder = Callable[[PreTrainedTokenizerBase, Examples, DataConfig], Rows]
"""`encode(tok, examples, data)`: the stage's tokenization of a split."""
LoraApplier = Callable[[PreTrainedModel, LoraConfig | None], nn.Module]
"""`apply_lora(model, lora_cfg)`: the stage's adapter (or full fine-tuning) setup."""


@dataclass
class _Models:
    """How the stage loads its models, for the cache builders: references, dtypes and placement."""

    teacher_ref: str
    student_ref: str
    device: torch.device
    teacher_dtype: str
    student_dtype: str
    teacher_device: str | None
    teacher_offload: bool
    built: list[nn.Module] = field(default_factory=list)
    """The teacher, when a missing entry made `load_teacher` load it."""

    def load_teacher(self) -> nn.Module:
        """Load and place the teacher (called by a cache builder only on a miss)."""
        where = teacher_load_device(self.device, self.teacher_device, self.teacher_offload)
        teacher = load_model(self.teacher_ref, dtype=DTYPES[self.teacher_dtype], device=where)[0]
        teacher = teacher.requires_grad_(False).eval()
        self.built.append(teacher)
        return place_teacher(teacher, self.device, self.teacher_device, self.teacher_offload)

    def load_student(self, cfg: DistillConfig, apply_lora: LoraApplier) -> tuple[nn.Module, PreTrainedTokenizerBase]:
        """Load the student on the training device and adapt it as the stage does."""
        student, s_tok = load_model(self.student_ref, dtype=DTYPES[self.student_dtype], device=self.device)
        return apply_lora(student, cfg.lora), s_tok


def _encode_splits(
    splits: Mapping[str, Examples], data: DataConfig, encode: Encoder, t_tok: PreTrainedTokenizerBase,
    s_tok: PreTrainedTokenizerBase, cma: bool,
) -> tuple[Rows, Rows]:
    """Training and validation rows in the student's tokenization, with the teacher's own (keys under
    `TEACHER_PREFIX`) alongside when cross-model attention needs it."""
    train_rows = encode(s_tok, splits["train"], data)
    val_rows = encode(s_tok, splits.get("validation", []), data)
    if cma:
        t_train, t_val = encode(t_tok, splits["train"], data), encode(t_tok, splits.get("validation", []), data)
        train_rows = [{**s, **{TEACHER_PREFIX + k: v for k, v in t.items()}} for s, t in zip(train_rows, t_train)]
        val_rows = [{**s, **{TEACHER_PREFIX + k: v for k, v in t.items()}} for s, t in zip(val_rows, t_val)]
    return train_rows, val_rows


def _topk_setup(
    models: _Models, cfg: DistillConfig, cache_root: Path, fingerprint: str, everything: Rows,
    align: VocabAlignment, s_pad: int, apply_lora: LoraApplier, progress: bool,
) -> tuple[nn.Module, PreTrainedTokenizerBase, DistillSetup, CacheStats]:
    """Vanilla KD: open (or build) the top-k entry, free the teacher, load the student, build `CachedKD`."""
    c = cfg.cache
    key = topk_cache_key(fingerprint, everything, align.shared_size, cfg.positions)
    entry, stats = topk_cache(
        cache_root, key, models.load_teacher, everything, pad_id=s_pad, vocab_size=align.shared_size,
        k=c.top_k, temperature=cfg.loss.temperature, batch_size=c.batch_size, device=models.device, progress=progress,
        positions=cfg.positions,
    )
    models.built.clear()
    _free()
    model, s_tok = models.load_student(cfg, apply_lora)
    objective = CachedKD(entry, cfg.loss, align.shared_size, min(c.top_k, align.shared_size), c.tail,
                         positions=cfg.positions, answer_share=cfg.answer_kd_share)
    targets = f"cached top-{objective.top_k}, " + ("uniform tail" if c.tail == "uniform" else "rest bin")
    info = {"shared_vocab": align.shared_size, "kd_targets": targets, "kd_positions": cfg.positions}  # as online
    setup = DistillSetup(objective, info=info)
    return model, s_tok, setup, stats


def _hidden_setup(
    models: _Models, cfg: DistillConfig, cache_root: Path, fingerprint: str, everything: Rows, *, cma: bool,
    pad_id: int, t_tok: PreTrainedTokenizerBase, apply_lora: LoraApplier, progress: bool,
) -> tuple[nn.Module, PreTrainedTokenizerBase, DistillSetup, CacheStats]:
    """DSKD: open (or build) the hidden-state entry, keep only the teacher's ends, load the student and
    build the DSKD objective reading the teacher's hidden states and moments from the entry."""
    c = cfg.cache
    prefix = TEACHER_PREFIX if cma else ""
    key = cache_key(fingerprint, everything, prefix=prefix)
    entry, stats = hidden_cache(
        cache_root, key, models.load_teacher, everything, prefix=prefix, pad_id=pad_id,
        dtype=c.hidden_dtype, batch_size=c.batch_size, device=models.device, progress=progress,
    )
    # Reuse the teacher the build loaded (unless offloaded: its weights then live in hooks), else load it.
    teacher = models.built[0] if models.built and not models.teacher_offload else load_model(
        models.teacher_ref, dtype=DTYPES[models.teacher_dtype], device="cpu")[0].requires_grad_(False)
    ends = TeacherEnds(teacher).to(models.device)
    models.built.clear()
    del teacher  # only its embeddings and head live on, in `ends`
    _free()
    model, s_tok = models.load_student(cfg, apply_lora)
    torch.manual_seed(cfg.train.seed)  # projectors start from the same random weights as online
    setup = build_algorithm("dskd_cma" if cma else cfg.algorithm, ends, model, t_tok, s_tok, cfg)
    objective = setup.objective
    assert isinstance(objective, DSKDObjective)
    t_dtype = module_weight(ends.get_output_embeddings()).dtype
    objective.hidden_source = partial(_read_hidden, entry, dtype=t_dtype)
    objective.moments_source = lambda batch: entry.moments(batch[EXAMPLE_KEY])
    setup.teacher_tokenizer = t_tok if cma else None
    setup.info["kd_targets"] = f"cached hidden states ({c.hidden_dtype})"
    return model, s_tok, setup, stats


def _uses_cma(
    cfg: DistillConfig, t_tok: PreTrainedTokenizerBase, s_tok: PreTrainedTokenizerBase,
    t_config: PretrainedConfig, s_config: PretrainedConfig,
) -> bool:
    """Whether DSKD runs with cross-model attention: always for `dskd_cma`, for `dskd` across vocabularies."""
    if cfg.algorithm == "dskd_cma":
        return True
    if cfg.algorithm == "dskd":
        try:
            check_same_vocabulary(t_tok, s_tok, t_config, s_config)
        except VocabularyMismatchError:
            return True
    return False


def cached_distill_setup(
    teacher_ref: str, student_ref: str, splits: Mapping[str, Examples], data: DataConfig, cfg: DistillConfig,
    cache_root: Path, *, encode: Encoder, apply_lora: LoraApplier, device: torch.device, teacher_dtype: str,
    student_dtype: str, progress: bool, teacher_device: str | None = None, teacher_offload: bool = False,
) -> CachedSetup:
    """Open (building if needed) the teacher's cache entry, then load the student and build the objective.

    `encode(tok, examples, data)` and `apply_lora(model, lora_cfg)` are the stage's own helpers, so the
    cached run tokenizes and adapts exactly like the online one.
    """
    t_tok, s_tok = load_tokenizer(teacher_ref), load_tokenizer(student_ref)
    t_dir = local_model_dir(teacher_ref)
    t_config, s_config = AutoConfig.from_pretrained(t_dir), AutoConfig.from_pretrained(local_model_dir(student_ref))
    cma = _uses_cma(cfg, t_tok, s_tok, t_config, s_config)
    train_rows, val_rows = _encode_splits(splits, data, encode, t_tok, s_tok, cma)
    everything = train_rows + val_rows  # one entry covers both splits; validation rows follow training's
    fingerprint = fingerprint_model_dir(t_dir, memo=cache_root / "fingerprints.json")
    t_pad = pad_token_id(t_tok)
    models = _Models(teacher_ref, student_ref, device, teacher_dtype, student_dtype, teacher_device, teacher_offload)
    if cfg.algorithm == "vanilla":
        align = check_same_vocabulary(t_tok, s_tok, t_config, s_config)
        model, s_tok, setup, stats = _topk_setup(
            models, cfg, cache_root, fingerprint, everything, align, s_tok.pad_token_id, apply_lora, progress
        )
    else:
        model, s_tok, setup, stats = _hidden_setup(
            models, cfg, cache_root, fingerprint, everything, cma=cma, pad_id=t_pad if cma else s_tok.pad_token_id,
            t_tok=t_tok, apply_lora=apply_lora, progress=progress,
        )
    setup.info.update(stats.as_info())
    base: Callable[[Features], dict[str, torch.Tensor]]
    if cma:
        base = partial(collate_pair, pad_id=s_tok.pad_token_id, teacher_pad_id=t_pad)
    else:
        base = partial(collate, pad_id=s_tok.pad_token_id)
    return CachedSetup(
        model, s_tok, setup, with_example_index(train_rows), with_example_index(val_rows, start=len(train_rows)),
        partial(collate_with_index, base),
    )


def _read_hidden(entry: HiddenCache, batch: dict[str, torch.Tensor], mask: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
    return entry.scatter(batch[EXAMPLE_KEY].cpu(), mask, dtype)
