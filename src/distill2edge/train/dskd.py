"""The DSKD objective for the training loop: runs both models on a batch and applies `losses.dskd`.

With one vocabulary the same token ids feed teacher and student (dual-space KD). With two, every
sample carries the teacher's own tokenization under `teacher_*` keys (see `data.tokenize.collate_pair`)
and cross-model attention aligns the two sets of answer positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import torch
from torch import nn

from distill2edge.config import DSKDConfig, KDLossConfig
from distill2edge.data.tokenize import IGNORE_INDEX, TEACHER_PREFIX
from distill2edge.losses.cma import CMAScales, cma_kd, grid_embedding_moments, grid_hidden_moments
from distill2edge.losses.dskd import DSKDProjectors, LMHead, dual_space_kd, head_cross_entropy
from distill2edge.models.hf import input_embeddings
from distill2edge.train.objectives import answer_positions


class _KDOptions(TypedDict):
    """The keyword options `cma_kd` and `dual_space_kd` both take (`skew_lambda` reaches the divergence
    through their `**options`): typed per key so each is checked against their signatures."""

    name: str
    temperature: float
    chunk_tokens: int
    skew_lambda: float
    hinton_t2: bool
    teacher_name: str


def _pair_embeddings(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
    """[E(x_t); E(y_t)] at the given positions: inputs, targets [B, M] -> [B, M, 2 d] (no gradient)."""
    emb = input_embeddings(model)
    with torch.no_grad():
        y = targets.masked_fill(targets == IGNORE_INDEX, pad_id)
        return torch.cat([emb(inputs), emb(y)], dim=-1)


@dataclass
class DSKDObjective:
    """(1 - alpha) * CE(student, gold) + alpha * L_kd, L_kd as in `losses.dskd` (both spaces + projector CE).

    `cma` selects cross-model attention (needed when the vocabularies differ). The teacher is frozen;
    `projectors` train with their own learning rate through the loop's `aux` argument.
    """

    teacher: nn.Module
    projectors: DSKDProjectors
    loss: KDLossConfig
    cma: bool
    student_pad_id: int
    teacher_pad_id: int
    chunk_tokens: int = 256
    prefix: str = TEACHER_PREFIX
    """Batch keys of the teacher's own tokenization (cross-model attention)."""
    hidden_source: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor] | None = None
    """(batch, teacher answer mask [B, Kt]) -> the teacher's hidden states there [B, Kt, d_t], read from a
    teacher cache instead of running the teacher (which may then hold only its embeddings and head)."""
    moments_source: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
    """batch -> `moments` [3] of the teacher's last hidden states over the batch's grid, from the cache
    (which stores them per sample over real positions: padding rows are not in a cached run's σ)."""
    options: DSKDConfig = field(default_factory=DSKDConfig)
    """`cma_std`, `teacher_divergence`, `hinton_t2` (defaults: as the DSKD reference)."""

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep, targets = answer_positions(batch["labels"])  # keep [K], targets [B, K]
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            output_hidden_states=True, logits_to_keep=1,  # the student's logits are formed in chunks below
        )
        s_hidden = out.hidden_states[-1][:, keep]  # [B, K, d_s]; the last entry is after the final norm
        answer = targets != IGNORE_INDEX
        ce_sum, _ = head_cross_entropy(
            s_hidden[answer], targets[answer], LMHead.of(model), chunk_tokens=self.chunk_tokens
        )
        ce = ce_sum / max(int(answer.sum()), 1)
        prefix = self.prefix if self.cma else ""
        if prefix + "input_ids" not in batch:
            raise ValueError("DSKD with cross-model attention needs batches with the teacher's tokenization")
        t_keep, t_targets = self.teacher_positions(batch, keep, targets)
        t_moments = None
        if self.hidden_source is not None:
            t_hidden = self.hidden_source(batch, t_targets != IGNORE_INDEX)
            t_moments = self.moments_source(batch) if self.moments_source is not None else None
        else:
            with torch.no_grad():
                self.teacher.eval()
                t_last = self.teacher(
                    input_ids=batch[prefix + "input_ids"], attention_mask=batch[prefix + "attention_mask"],
                    output_hidden_states=True, logits_to_keep=1,
                ).hidden_states[-1]
            t_hidden, t_moments = t_last[:, t_keep], grid_hidden_moments(t_last)
        terms = self.kd_terms(model, None, s_hidden, keep, targets, batch, t_hidden, t_moments)
        a = self.loss.alpha
        kd = terms.pop("kd")
        return {"loss": (1 - a) * ce + a * kd, "ce": ce.detach(), "kd": kd.detach(), **terms}

    def teacher_positions(
        self, batch: dict[str, torch.Tensor], keep: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's answer positions t_keep [Kt] and targets [B, Kt]: its own tokenization's with
        cross-model attention, the student's (`keep`, `targets`) otherwise."""
        if not self.cma:
            return keep, targets
        if self.prefix + "input_ids" not in batch:
            raise ValueError("DSKD with cross-model attention needs batches with the teacher's tokenization")
        return answer_positions(batch[self.prefix + "labels"])

    def kd_terms(
        self, model: nn.Module, s_logits: torch.Tensor | None, s_hidden: torch.Tensor, keep: torch.Tensor,
        targets: torch.Tensor, batch: dict[str, torch.Tensor], t_hidden: torch.Tensor,
        t_moments: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The DSKD terms ("kd" plus parts) from forwards already run (or a teacher cache).

        s_logits, s_hidden: [B, K, V_s] (or None: formed from s_hidden in chunks), [B, K, d_s] at the
        student's answer positions `keep` [K];
        targets [B, K]; t_hidden: the teacher's last hidden state at its answer positions
        (`teacher_positions`), [B, Kt, d_t]; t_moments: `grid_hidden_moments` of its whole last hidden
        state (needed by cross-model attention with `cma_std: padded`).
        """
        prefix = self.prefix if self.cma else ""
        t_keep, t_targets = self.teacher_positions(batch, keep, targets)
        o = self.options
        opts: _KDOptions = {
            "name": self.loss.name, "temperature": self.loss.temperature, "chunk_tokens": self.chunk_tokens,
            "skew_lambda": self.loss.skew_lambda, "hinton_t2": o.hinton_t2,
            "teacher_name": self.loss.name if o.teacher_divergence == "loss_name" else "forward_kl",
        }
        s_head, t_head = LMHead.of(model), LMHead.of(self.teacher)
        if self.cma:
            s_embeds = _pair_embeddings(model, batch["input_ids"][:, keep], targets, self.student_pad_id)
            t_embeds = _pair_embeddings(
                self.teacher, batch[prefix + "input_ids"][:, t_keep], t_targets, self.teacher_pad_id
            )
            return cma_kd(
                s_embeds, s_hidden, s_logits, targets, t_embeds, t_hidden, t_targets != IGNORE_INDEX,
                s_head, t_head, self.projectors, scales=self.padded_scales(batch, t_moments), **opts,
            )
        mask = targets != IGNORE_INDEX
        return dual_space_kd(
            s_hidden[mask], None if s_logits is None else s_logits[mask], t_hidden[mask], targets[mask],
            s_head, t_head, self.projectors, **opts,
        )

    def padded_scales(self, batch: dict[str, torch.Tensor], t_moments: torch.Tensor | None) -> CMAScales | None:
        """σ of the teacher's hidden states and embeddings over the batch's whole grid (`cma_std: padded`,
        the DSKD reference), or None (σ over answer rows) with `cma_std: answer`."""
        if self.options.cma_std == "answer":
            return None
        if t_moments is None:
            raise ValueError("cma_std 'padded' needs the moments of the teacher's whole last hidden state")
        ids, labels = batch[self.prefix + "input_ids"], batch[self.prefix + "labels"]
        m_index, m_target = grid_embedding_moments(input_embeddings(self.teacher), ids[:, :-1], labels[:, 1:])
        return CMAScales.from_moments(t_moments, m_index, m_target)
