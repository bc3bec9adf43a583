"""Objectives for the training loop: SFT (CE on answer tokens) and vanilla KD.

Both compute logits only where a loss is taken. The LM head of a small model is a large share of its
compute (SmolLM2's 49,152 x 576 head costs as much as 8 of its layers), and prompts are long while
answers are short, so `answer_logits` asks the model for the logits of answer positions only via
transformers' `logits_to_keep`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from distill2edge.config import KDLossConfig
from distill2edge.data.tokenize import IGNORE_INDEX
from distill2edge.losses import kd_loss
from distill2edge.losses.dskd import LMHead
from distill2edge.losses.fused import fused_kd_ce
from distill2edge.losses.kd import hinton_scale


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions whose logits predict an answer token, and the targets there.

    labels: [B, T] with IGNORE_INDEX outside answers. Logits at t predict the token at t + 1, so the
    kept positions are {t : any row has labels[:, t + 1] != IGNORE_INDEX}, taken over the whole batch
    (transformers keeps the same positions for every row).
    Returns keep: [K] long, targets: [B, K] long (IGNORE_INDEX where a row has no answer token).
    """
    shifted = labels[:, 1:]
    keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero(as_tuple=True)[0]
    return keep, shifted[:, keep]


def answer_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at answer positions only. Returns logits [B, K, V] and targets [B, K]."""
    keep, targets = answer_positions(batch["labels"])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep)
    return out.logits, targets


def masked_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE over targets != IGNORE_INDEX. logits [B, K, V], targets [B, K]. A batch without targets
    (only passages, `TextExample`) gives 0, still attached to the graph, instead of the NaN of an empty mean."""
    if not bool((targets != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def sft_objective(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CE on the answer tokens; the loss is the answer cross-entropy (`ce`, as KD objectives report it)."""
    logits, targets = answer_logits(model, batch)
    ce = masked_ce(logits, targets)
    return {"loss": ce, "ce": ce.detach()}


@dataclass
class VanillaKD:
    """(1 - alpha) * CE(student, gold) + alpha * D(p_teacher^T, p_student^T) on answer tokens, or on every
    position with `positions="all"` (the CE stays on the answer tokens); `loss.hinton_t2` scales D by T^2.

    D is the token mean of `loss.name` at temperature T, with no T² factor (as TRL's GKD and torchtune);
    `loss.hinton_t2` multiplies it by T². The teacher shares the student's tokenization, so the same
    batch feeds both; logits are trimmed to `vocab_size` (the shared real vocabulary, dropping padding
    rows of either model).
    """

    teacher: nn.Module
    loss: KDLossConfig
    vocab_size: int

    positions: str = "answer"
    """`answer`: KD on the answer tokens; `all`: on every position whose next token is real (prompt too)."""
    answer_share: float = 0.0
    """With `positions="all"`: D = (1 - share)·D(every position) + share·D(answer tokens)."""

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.loss.fused_vocab_chunk:
            return self._fused(model, batch, self.loss.fused_vocab_chunk)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.positions == "all":
            keep: int | torch.Tensor = 0  # every position: transformers' logits_to_keep=0 keeps all
            targets = batch["labels"][:, 1:]  # [B, T-1]
            kd_mask = batch["attention_mask"][:, 1:].bool()  # positions t whose token t+1 is real
        else:
            keep, targets = answer_positions(batch["labels"])
            kd_mask = targets != IGNORE_INDEX
        student = model(**inputs, logits_to_keep=keep).logits[..., : self.vocab_size]
        with torch.no_grad():
            self.teacher.eval()
            teacher = self.teacher(**inputs, logits_to_keep=keep).logits[..., : self.vocab_size]
        if self.positions == "all":
            student, teacher = student[:, :-1], teacher[:, :-1]  # the last position predicts nothing
        ce = masked_ce(student, targets)
        kd = self._divergence(student, teacher, kd_mask)
        if self.positions == "all" and self.answer_share:
            on_answers = self._divergence(student, teacher, targets != IGNORE_INDEX)
            kd = (1 - self.answer_share) * kd + self.answer_share * on_answers
        a = self.loss.alpha
        return {"loss": (1 - a) * ce + a * kd, "ce": ce.detach(), "kd": kd.detach()}

    def _divergence(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token mean of `loss.name` over `mask` ([B, T] bool) between [B, T, V] logits."""
        return kd_loss(
            student, teacher, mask, name=self.loss.name,
            temperature=self.loss.temperature, skew_lambda=self.loss.skew_lambda, hinton_t2=self.loss.hinton_t2,
        )

    def _fused(self, model: nn.Module, batch: dict[str, torch.Tensor], chunk_vocab: int) -> dict[str, torch.Tensor]:
        """The same loss from the last hidden states (`losses.fused`): no [tokens, V] logits of either model."""
        answer = batch["labels"][:, 1:] != IGNORE_INDEX  # [B, T-1]: positions that predict an answer token
        mask = batch["attention_mask"][:, 1:].bool() if self.positions == "all" else answer
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        s_hidden = model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][:, :-1][mask]
        with torch.no_grad():
            self.teacher.eval()
            t_hidden = self.teacher(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][:, :-1][mask]
        v = self.vocab_size
        s_head, t_head = LMHead.of(model), LMHead.of(self.teacher)
        s_head = replace(s_head, weight=s_head.weight[:v], bias=None if s_head.bias is None else s_head.bias[:v])
        t_head = replace(t_head, weight=t_head.weight[:v], bias=None if t_head.bias is None else t_head.bias[:v])
        targets = batch["labels"][:, 1:][mask]
        is_answer = answer[mask]  # [N]: the rows the CE is taken on (all of them for answer-only KD)
        kl, ce = fused_kd_ce(
            s_hidden, s_head, t_hidden, t_head, targets.clamp_min(0), temperature=self.loss.temperature,
            chunk_vocab=chunk_vocab,
        )
        kd, ce = kl.mean() * hinton_scale(self.loss.temperature, self.loss.hinton_t2), ce[is_answer].mean()
        a = self.loss.alpha
        return {"loss": (1 - a) * ce + a * kd, "ce": ce.detach(), "kd": kd.detach()}
