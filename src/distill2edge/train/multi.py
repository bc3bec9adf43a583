"""Multi-teacher distillation (the scaling-down paper's method) for the training loop.

    loss = (1 - alpha)·CE + alpha·Σ_i w_i·KD_i + g·Σ_i w_i·Σ_(ls,lt) MSE(P_i(h_s[ls]), h_i[lt]) + s·penalty

KD_i is the divergence of `distill.loss` on a shared vocabulary (`kd: logits`: vanilla KD's token mean,
no T² unless `loss.hinton_t2`), DSKD's loss (`kd: dskd`, cross-model attention across vocabularies) or
absent (`kd: none`: the teacher joins through the hidden MSE only). The hidden term pairs layers by
each teacher's `LayerMap` through a learned projection per teacher (`losses.hidden.HiddenProjector`);
the penalty is the anti-shortcut term of `losses.shortcut` on the student's label scores
(classification only). One student forward and one forward per teacher serve every term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from distill2edge.config import DataConfig, DistillConfig, TeacherWeightConfig
from distill2edge.data.tokenize import IGNORE_INDEX, pad_token_id, teacher_prefix
from distill2edge.losses import kd_loss
from distill2edge.losses.cma import grid_hidden_moments
from distill2edge.losses.dskd import DSKDProjectors
from distill2edge.losses.hidden import HiddenProjector, LayerMap, Pooling, hidden_mse
from distill2edge.losses.multi_teacher import TeacherTerms, multi_teacher_objective
from distill2edge.losses.shortcut import class_logits_from_lm, label_prior, shortcut_penalty
from distill2edge.models import VocabAlignment, VocabularyMismatchError, check_same_vocabulary
from distill2edge.models.hf import model_config, text_config
from distill2edge.train.algorithms import DistillSetup, hidden_size
from distill2edge.train.dskd import DSKDObjective
from distill2edge.train.objectives import answer_positions, masked_ce

KDMode = Literal["logits", "dskd", "none"]
"""A teacher's output-distribution term (`kd` of its `teachers` entry, `auto` resolved)."""


class MultiTeacherConfigError(ValueError):
    """A multi-teacher setting that does not fit the loaded models (the message names the recipe field)."""


@dataclass
class TeacherLink:
    """One loaded teacher and how it teaches."""

    name: str
    model: nn.Module
    weight: float
    kd: KDMode
    prefix: str
    """Batch-key prefix of its own tokenization; "" when it reads the student's token ids."""
    layer_map: LayerMap | None
    pooling: Pooling
    vocab_size: int | None = None
    """Shared vocabulary size for `kd: logits` (padding rows of either model dropped)."""
    dskd: DSKDObjective | None = None


@dataclass
class ShortcutTerm:
    """The anti-shortcut penalty on label scores: the logits of each label's first verbalizer token."""

    name: str
    weight: float
    temperature: float
    first_token_ids: list[int]
    prior: Tensor
    """[C] label frequencies of the training split, in label order."""


@dataclass
class MultiTeacherObjective:
    teachers: list[TeacherLink]
    projectors: nn.ModuleDict
    """`hidden_<teacher>` -> HiddenProjector (trained through the loop's `aux`)."""
    loss_name: str
    alpha: float
    temperature: float
    skew_lambda: float
    hidden_weight: float
    normalize: bool
    shortcut: ShortcutTerm | None = None
    hinton_t2: bool = False
    """`kd: logits` terms times T² (`loss.hinton_t2`); DSKD links follow `dskd.hinton_t2`."""

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        keep, targets = answer_positions(batch["labels"])  # keep [K], targets [B, K]
        want_hidden = self.hidden_weight > 0 or any(t.kd == "dskd" for t in self.teachers)
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            output_hidden_states=want_hidden, logits_to_keep=keep,
        )
        s_logits = out.logits  # [B, K, V_s]
        ce = masked_ce(s_logits, targets)
        answer = targets != IGNORE_INDEX
        logs: dict[str, Tensor] = {}
        terms = [self._teacher_terms(t, model, out, s_logits, keep, targets, answer, batch, logs) for t in self.teachers]
        penalty = None
        if self.shortcut is not None:
            first = (batch["labels"][:, 1:] != IGNORE_INDEX).int().argmax(dim=1)  # [B] position predicting the label
            rows = torch.searchsorted(keep, first)
            class_logits = class_logits_from_lm(s_logits, rows, self.shortcut.first_token_ids)  # [B, C]
            penalty = shortcut_penalty(
                class_logits, self.shortcut.prior, self.shortcut.name, temperature=self.shortcut.temperature
            )
        total, parts = multi_teacher_objective(
            ce, terms, a=1 - self.alpha, b=self.alpha, g=self.hidden_weight, penalty=penalty,
            penalty_weight=self.shortcut.weight if self.shortcut else 0.0,
        )
        parts.pop("loss")
        return {"loss": total, **{k: torch.tensor(v) for k, v in parts.items()}, **logs}

    def _teacher_terms(
        self, t: TeacherLink, model: nn.Module, out, s_logits: Tensor, keep: Tensor, targets: Tensor,
        answer: Tensor, batch: dict[str, Tensor], logs: dict[str, Tensor],
    ) -> TeacherTerms:
        p = t.prefix
        needs_hidden = self.hidden_weight > 0 or t.kd == "dskd"
        with torch.no_grad():
            t.model.eval()
            t_out = t.model(
                input_ids=batch[p + "input_ids"], attention_mask=batch[p + "attention_mask"],
                output_hidden_states=needs_hidden, logits_to_keep=keep if t.kd == "logits" else 1,
            )
        kl = mse = None
        if t.kd == "logits":
            v = t.vocab_size
            kl = kd_loss(
                s_logits[..., :v], t_out.logits[..., :v], answer, name=self.loss_name,
                temperature=self.temperature, skew_lambda=self.skew_lambda, hinton_t2=self.hinton_t2,
            )
        elif t.kd == "dskd":
            assert t.dskd is not None
            t_keep, _ = t.dskd.teacher_positions(batch, keep, targets)
            t_last = t_out.hidden_states[-1]
            d_terms = t.dskd.kd_terms(
                model, s_logits, out.hidden_states[-1][:, keep], keep, targets, batch, t_last[:, t_keep],
                grid_hidden_moments(t_last),
            )
            kl = d_terms.pop("kd")
            logs.update({f"{k}/{t.name}": v.detach() for k, v in d_terms.items()})
        if self.hidden_weight > 0:
            assert t.layer_map is not None
            mse = hidden_mse(
                out.hidden_states, t_out.hidden_states, self._hidden_projector(t.name), t.layer_map,
                batch["attention_mask"].bool(), teacher_mask=batch[p + "attention_mask"].bool(),
                pooling=t.pooling, normalize=self.normalize,
            )
        return TeacherTerms(t.name, t.weight, kl=kl, mse=mse)

    def _hidden_projector(self, teacher: str) -> HiddenProjector:
        """The teacher's hidden-state projector, typed (a `ModuleDict` yields plain modules)."""
        projector = self.projectors[f"hidden_{teacher}"]
        assert isinstance(projector, HiddenProjector)
        return projector


def num_layers(model: nn.Module) -> int:
    """The number of decoder layers of the model's text config."""
    return int(text_config(model).num_hidden_layers)


@dataclass
class _SetupParts:
    """What linking the teachers collects: trainable projectors (`aux`) and their learning rates, the
    tokenizers samples must also be encoded with (prefix -> tokenizer), and facts for the stage metrics."""

    aux: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    aux_lr: dict[str, float] = field(default_factory=dict)
    extra_tokenizers: dict[str, PreTrainedTokenizerBase] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)


def _teacher_weights(cfg: DistillConfig, stage: str) -> dict[str, TeacherWeightConfig | None]:
    """Teacher name -> its `teachers` entry; the single `teacher` (no entry: defaults) when that is empty."""
    if cfg.teachers:
        return dict(cfg.teachers)
    if cfg.teacher is None:
        raise MultiTeacherConfigError(f"{stage}: name a teacher (`teacher`) or list several (`teachers`)")
    return {cfg.teacher: None}


def _kd_mode(name: str, tcfg: TeacherWeightConfig | None, same: bool, where: str) -> KDMode:
    """The teacher's output-distribution term: its `kd`, with `auto` resolved by the shared vocabulary."""
    kd = tcfg.kd if tcfg is not None else "auto"
    if kd == "auto":
        return "logits" if same else "none"
    if kd == "logits" and not same:
        raise MultiTeacherConfigError(
            f"{where}.kd: logits KD needs the student's vocabulary; {name} has another (use dskd or none)"
        )
    return kd


def _hidden_term(
    name: str, tcfg: TeacherWeightConfig | None, model: nn.Module, same: bool, cfg: DistillConfig,
    d_s: int, n_s: int, stage: str, parts: _SetupParts,
) -> tuple[LayerMap | None, Pooling]:
    """The teacher's layer map and pooling for the hidden-state MSE, and its projector (added to `parts`);
    (None, "token") when the term is off."""
    if cfg.hidden.weight <= 0:
        return None, "token"
    spec = (tcfg.layer_map if tcfg is not None and tcfg.layer_map is not None else cfg.hidden.layer_map)
    layer_map = LayerMap.from_spec(spec, n_s, num_layers(model))
    pooling: Pooling = cfg.hidden.pooling if cfg.hidden.pooling != "auto" else ("token" if same else "mean")
    if pooling == "token" and not same:
        raise MultiTeacherConfigError(
            f"{stage}.hidden.pooling: token-wise MSE needs one tokenizer, but {name} has its own; use mean or last"
        )
    parts.aux[f"hidden_{name}"] = HiddenProjector.for_map(
        layer_map, d_s, hidden_size(model, f"teacher {name}"), shared=cfg.hidden.shared_projection
    )
    parts.aux_lr[f"hidden_{name}"] = cfg.hidden.projector_lr
    parts.info[f"layer_map/{name}"] = [list(p) for p in layer_map.pairs]
    return layer_map, pooling


def _dskd_term(
    name: str, model: nn.Module, t_tok: PreTrainedTokenizerBase, s_tok: PreTrainedTokenizerBase, same: bool,
    prefix: str, cfg: DistillConfig, d_s: int, parts: _SetupParts,
) -> DSKDObjective:
    """The teacher's DSKD objective (cross-model attention unless it shares the student's vocabulary) and
    its projectors (added to `parts`)."""
    d = cfg.dskd
    projectors = DSKDProjectors(d_s, hidden_size(model, f"teacher {name}"), cma=not same, kind=d.projector, init=d.init)
    parts.aux[f"dskd_{name}"], parts.aux_lr[f"dskd_{name}"] = projectors, d.projector_lr
    return DSKDObjective(
        teacher=model, projectors=projectors, loss=cfg.loss, cma=not same, student_pad_id=s_tok.pad_token_id,
        teacher_pad_id=pad_token_id(t_tok),
        chunk_tokens=d.chunk_tokens, prefix=prefix, options=d,
    )


def _link_teacher(
    name: str, tcfg: TeacherWeightConfig | None, teacher: tuple[nn.Module, PreTrainedTokenizerBase],
    student: nn.Module, s_tok: PreTrainedTokenizerBase, cfg: DistillConfig, d_s: int, n_s: int, stage: str,
    parts: _SetupParts,
) -> TeacherLink:
    """How one teacher teaches: its KD mode, tokenization prefix, layer map and projectors (the trainable
    ones and the tokenizer a teacher with another vocabulary needs are added to `parts`)."""
    model, t_tok = teacher
    try:
        align: VocabAlignment | None = check_same_vocabulary(t_tok, s_tok, model_config(model), model_config(student))
        same = True
    except VocabularyMismatchError:
        align, same = None, False
    kd = _kd_mode(name, tcfg, same, f"{stage}.teachers.{name}")
    prefix = "" if same else teacher_prefix(name)
    if not same:
        parts.extra_tokenizers[prefix] = t_tok
    layer_map, pooling = _hidden_term(name, tcfg, model, same, cfg, d_s, n_s, stage, parts)
    dskd = _dskd_term(name, model, t_tok, s_tok, same, prefix, cfg, d_s, parts) if kd == "dskd" else None
    weight = tcfg.weight if tcfg is not None else 1.0
    parts.info[f"kd/{name}"] = kd
    parts.info[f"weight/{name}"] = weight
    return TeacherLink(
        name, model, weight, kd, prefix, layer_map, pooling,
        vocab_size=align.shared_size if align is not None else None, dskd=dskd,
    )


def _shortcut_term(
    cfg: DistillConfig, data: DataConfig, s_tok: PreTrainedTokenizerBase, train_labels: list[str] | None,
    info: dict[str, object],
) -> ShortcutTerm | None:
    """The anti-shortcut penalty (None when `shortcut.name` is none); its label prior goes to `info`."""
    if cfg.shortcut.name == "none":
        return None
    from distill2edge.evaluate.classify import first_token_ids

    labels = data.label_set()
    shortcut = ShortcutTerm(
        cfg.shortcut.name, cfg.shortcut.weight, cfg.shortcut.temperature,
        first_token_ids(s_tok, labels, data.verbalizers), label_prior(train_labels or [], labels),
    )
    info["shortcut_prior"] = [round(float(x), 4) for x in shortcut.prior]
    return shortcut


def build_multi_teacher(
    teachers: dict[str, tuple[nn.Module, PreTrainedTokenizerBase]], student: nn.Module,
    s_tok: PreTrainedTokenizerBase, cfg: DistillConfig, data: DataConfig, train_labels: list[str] | None = None,
    *, stage: str = "distill",
) -> tuple[DistillSetup, dict[str, PreTrainedTokenizerBase]]:
    """The objective, its trainable projectors (with learning rates) and the tokenizers each sample must
    also be encoded with (prefix -> tokenizer, for teachers whose vocabulary differs).

    `train_labels`: the training split's labels (classification), for the shortcut penalty's prior.
    """
    parts = _SetupParts()
    d_s, n_s = hidden_size(student, "student"), num_layers(student)
    check_layer_maps(cfg, n_s, {t: num_layers(m) for t, (m, _) in teachers.items()}, stage=stage)
    links = [
        _link_teacher(name, tcfg, teachers[name], student, s_tok, cfg, d_s, n_s, stage, parts)
        for name, tcfg in _teacher_weights(cfg, stage).items()
    ]
    shortcut = _shortcut_term(cfg, data, s_tok, train_labels, parts.info)
    objective = MultiTeacherObjective(
        links, parts.aux, cfg.loss.name, cfg.loss.alpha, cfg.loss.temperature, cfg.loss.skew_lambda,
        cfg.hidden.weight, cfg.hidden.normalize, shortcut, hinton_t2=cfg.loss.hinton_t2,
    )
    aux, aux_lr, info = parts.aux, parts.aux_lr, parts.info
    info["projector_params"] = sum(p.numel() for p in aux.parameters())
    setup = DistillSetup(objective, aux=aux if len(aux) else None, aux_lr=aux_lr or None, info=info)
    return setup, parts.extra_tokenizers


def check_layer_maps(
    cfg: DistillConfig, student_layers: int, teacher_layers: dict[str, int], *, stage: str = "distill"
) -> None:
    """Raise `MultiTeacherConfigError` (naming the field) when a teacher's layer map does not fit the
    layer counts; lets a run refuse a bad map before any stage trains."""
    if cfg.hidden.weight <= 0:
        return
    for name, tcfg in _teacher_weights(cfg, stage).items():
        spec = tcfg.layer_map if tcfg is not None and tcfg.layer_map is not None else cfg.hidden.layer_map
        try:
            LayerMap.from_spec(spec, student_layers, teacher_layers[name])
        except ValueError as e:
            raise MultiTeacherConfigError(f"{stage}.teachers.{name}: hidden.layer_map: {e}") from None
