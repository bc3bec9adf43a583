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

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from distill2edge.config import DataConfig, DistillConfig
from distill2edge.data.tokenize import IGNORE_INDEX, teacher_prefix
from distill2edge.losses import kd_loss
from distill2edge.losses.cma import grid_hidden_moments
from distill2edge.losses.dskd import DSKDProjectors
from distill2edge.losses.hidden import (
    HiddenProjector,
    LayerMap,
    Pooling,
    TeacherTerms,
    hidden_mse,
    multi_teacher_objective,
)
from distill2edge.losses.shortcut import class_logits_from_lm, label_prior, shortcut_penalty
from distill2edge.models import VocabularyMismatchError, check_same_vocabulary
from distill2edge.train.algorithms import DistillSetup, hidden_size
from distill2edge.train.dskd import DSKDObjective
from distill2edge.train.objectives import answer_positions, masked_ce


class MultiTeacherConfigError(ValueError):
    """A multi-teacher setting that does not fit the loaded models (the message names the recipe field)."""


@dataclass
class TeacherLink:
    """One loaded teacher and how it teaches."""

    name: str
    model: nn.Module
    weight: float
    kd: Literal["logits", "dskd", "none"]
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
                out.hidden_states, t_out.hidden_states, self.projectors[f"hidden_{t.name}"], t.layer_map,
                batch["attention_mask"].bool(), teacher_mask=batch[p + "attention_mask"].bool(),
                pooling=t.pooling, normalize=self.normalize,
            )
        return TeacherTerms(t.name, t.weight, kl=kl, mse=mse)


def num_layers(model: nn.Module) -> int:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.num_hidden_layers)


def build_multi_teacher(
    teachers: dict[str, tuple[nn.Module, PreTrainedTokenizerBase]], student: nn.Module,
    s_tok: PreTrainedTokenizerBase, cfg: DistillConfig, data: DataConfig, train_labels: list[str] | None = None,
    *, stage: str = "distill",
) -> tuple[DistillSetup, dict[str, PreTrainedTokenizerBase]]:
    """The objective, its trainable projectors (with learning rates) and the tokenizers each sample must
    also be encoded with (prefix -> tokenizer, for teachers whose vocabulary differs).

    `train_labels`: the training split's labels (classification), for the shortcut penalty's prior.
    """
    links: list[TeacherLink] = []
    aux = nn.ModuleDict()
    aux_lr: dict[str, float] = {}
    extra_tokenizers: dict[str, PreTrainedTokenizerBase] = {}
    weights = cfg.teachers or {cfg.teacher: None}
    d_s, n_s = hidden_size(student, "student"), num_layers(student)
    info: dict[str, object] = {}
    check_layer_maps(cfg, n_s, {t: num_layers(m) for t, (m, _) in teachers.items()}, stage=stage)
    for name, tcfg in weights.items():
        model, t_tok = teachers[name]
        where = f"{stage}.teachers.{name}"
        try:
            align = check_same_vocabulary(t_tok, s_tok, model.config, student.config)
            same = True
        except VocabularyMismatchError:
            align, same = None, False
        kd = tcfg.kd if tcfg is not None else "auto"
        if kd == "auto":
            kd = "logits" if same else "none"
        if kd == "logits" and not same:
            raise MultiTeacherConfigError(
                f"{where}.kd: logits KD needs the student's vocabulary; {name} has another (use dskd or none)"
            )
        prefix = "" if same else teacher_prefix(name)
        if not same:
            extra_tokenizers[prefix] = t_tok
        layer_map = None
        pooling: Pooling = "token"
        if cfg.hidden.weight > 0:
            spec = (tcfg.layer_map if tcfg is not None and tcfg.layer_map is not None else cfg.hidden.layer_map)
            layer_map = LayerMap.from_spec(spec, n_s, num_layers(model))
            pooling = cfg.hidden.pooling if cfg.hidden.pooling != "auto" else ("token" if same else "mean")
            if pooling == "token" and not same:
                raise MultiTeacherConfigError(
                    f"{stage}.hidden.pooling: token-wise MSE needs one tokenizer, but {name} has its own; use mean or last"
                )
            aux[f"hidden_{name}"] = HiddenProjector.for_map(
                layer_map, d_s, hidden_size(model, f"teacher {name}"), shared=cfg.hidden.shared_projection
            )
            aux_lr[f"hidden_{name}"] = cfg.hidden.projector_lr
            info[f"layer_map/{name}"] = [list(p) for p in layer_map.pairs]
        dskd = None
        if kd == "dskd":
            d = cfg.dskd
            projectors = DSKDProjectors(d_s, hidden_size(model, f"teacher {name}"), cma=not same, kind=d.projector, init=d.init)
            aux[f"dskd_{name}"], aux_lr[f"dskd_{name}"] = projectors, d.projector_lr
            dskd = DSKDObjective(
                teacher=model, projectors=projectors, loss=cfg.loss, cma=not same, student_pad_id=s_tok.pad_token_id,
                teacher_pad_id=t_tok.pad_token_id if t_tok.pad_token_id is not None else 0,
                chunk_tokens=d.chunk_tokens, prefix=prefix, options=d,
            )
        weight = tcfg.weight if tcfg is not None else 1.0
        links.append(TeacherLink(
            name, model, weight, kd, prefix, layer_map, pooling,
            vocab_size=align.shared_size if align is not None else None, dskd=dskd,
        ))
        info[f"kd/{name}"] = kd
        info[f"weight/{name}"] = weight
    shortcut = None
    if cfg.shortcut.name != "none":
        from distill2edge.evaluate.classify import first_token_ids

        labels = data.label_set()
        shortcut = ShortcutTerm(
            cfg.shortcut.name, cfg.shortcut.weight, cfg.shortcut.temperature,
            first_token_ids(s_tok, labels, data.verbalizers), label_prior(train_labels or [], labels),
        )
        info["shortcut_prior"] = [round(float(x), 4) for x in shortcut.prior]
    objective = MultiTeacherObjective(
        links, aux, cfg.loss.name, cfg.loss.alpha, cfg.loss.temperature, cfg.loss.skew_lambda,
        cfg.hidden.weight, cfg.hidden.normalize, shortcut, hinton_t2=cfg.loss.hinton_t2,
    )
    info["projector_params"] = sum(p.numel() for p in aux.parameters())
    setup = DistillSetup(objective, aux=aux if len(aux) else None, aux_lr=aux_lr or None, info=info)
    return setup, extra_tokenizers


def check_layer_maps(
    cfg: DistillConfig, student_layers: int, teacher_layers: dict[str, int], *, stage: str = "distill"
) -> None:
    """Raise `MultiTeacherConfigError` (naming the field) when a teacher's layer map does not fit the
    layer counts; lets a run refuse a bad map before any stage trains."""
    if cfg.hidden.weight <= 0:
        return
    for name, tcfg in cfg.teachers.items() or {cfg.teacher: None}.items():
        spec = tcfg.layer_map if tcfg is not None and tcfg.layer_map is not None else cfg.hidden.layer_map
        try:
            LayerMap.from_spec(spec, student_layers, teacher_layers[name])
        except ValueError as e:
            raise MultiTeacherConfigError(f"{stage}.teachers.{name}: hidden.layer_map: {e}") from None
