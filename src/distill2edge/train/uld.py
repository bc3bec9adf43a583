"""Universal Logit Distillation (ULD; Boizard et al., 2024): logit-level KD across tokenizers.

Vanilla KD compares two next-token distributions id by id, which means nothing when the teacher's
id i is another token than the student's. ULD drops the ids: each distribution is sorted by
probability, the shorter vocabulary is padded with zeros, and the distance between the two sorted
vectors (their L1 distance, which is the 1-Wasserstein distance between the two sorted histograms
used in the ULD paper) is the KD term. Nothing is learned besides the student (no projection).

Positions are aligned by answer order: the i-th answer token of the student's tokenization is paired
with the i-th answer token of the teacher's, for i below the shorter of the two answers. The teacher's
full-vocabulary distribution (Gemma-3: 262,144 entries) is computed and sorted a chunk of positions at
a time, so memory stays bounded by `chunk_tokens` x vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill2edge.config import KDLossConfig
from distill2edge.data.tokenize import IGNORE_INDEX, TEACHER_PREFIX
from distill2edge.losses.dskd import LMHead
from distill2edge.train.objectives import answer_positions, masked_ce


def sorted_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """softmax(logits / T) sorted in decreasing order along the last axis: [N, V] -> [N, V] (float32)."""
    return torch.sort(F.softmax(logits.float() / temperature, dim=-1), dim=-1, descending=True).values


def uld_distances(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-position ULD distance: sum_k |sort(p_s)_k - sort(p_t)_k|, the shorter vector zero-padded.

    student_logits [N, V_s], teacher_logits [N, V_t] (row n of each is one aligned position).
    Returns [N] in [0, 2]. Zero padding is not materialised: past the shorter vocabulary the distance
    is the remaining mass of the longer one.
    """
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise ValueError(f"ULD needs aligned positions: {student_logits.shape[0]} student rows vs "
                         f"{teacher_logits.shape[0]} teacher rows")
    p_s, p_t = sorted_probs(student_logits, temperature), sorted_probs(teacher_logits, temperature)
    m = min(p_s.shape[-1], p_t.shape[-1])
    return (p_s[:, :m] - p_t[:, :m]).abs().sum(-1) + p_s[:, m:].sum(-1) + p_t[:, m:].sum(-1)


def uld_loss(
    student_logits: Tensor, teacher_hidden: Tensor, teacher_head: LMHead, samples: Tensor | None = None, *,
    temperature: float = 1.0, chunk_tokens: int = 64,
) -> Tensor:
    """ULD over N aligned positions as Boizard et al. reduce it: the mean distance of each sample, then
    the mean over samples (llm-recipes `models/distillation_model.py`, `DistillationLoss`). The teacher's
    logits are made `chunk_tokens` rows at a time.

    student_logits [N, V_s] (with gradient), teacher_hidden [N, d_t] (the teacher's last, normed hidden
    states at the aligned positions), samples [N]: the sample of each row (None: one sample). Samples
    with no aligned position are left out of the mean (the reference would give NaN). Returns a scalar;
    0 when N is 0. (The DSKD authors' ULD instead sums over positions and divides by all student answer
    tokens, which weighs long answers more and counts student tokens that have no teacher partner.)
    """
    n = student_logits.shape[0]
    if n == 0:
        return student_logits.sum() * 0.0
    dist = []
    for start in range(0, n, chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        with torch.no_grad():
            t_logits = teacher_head(teacher_hidden[rows])
        dist.append(uld_distances(student_logits[rows], t_logits, temperature))
    d = torch.cat(dist)  # [N]
    if samples is None:
        return d.mean()
    _, idx, counts = torch.unique(samples.to(d.device), return_inverse=True, return_counts=True)
    per_sample = torch.zeros(counts.numel(), dtype=d.dtype, device=d.device).index_add(0, idx, d) / counts
    return per_sample.mean()


def aligned_positions(s_mask: Tensor, t_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pair the i-th answer position of each row in both tokenizations, truncated to the shorter answer.

    s_mask [B, K_s], t_mask [B, K_t]: True where a kept position predicts an answer token (columns in
    sequence order). Returns rows [N], student columns [N], teacher columns [N].
    """
    rows, s_cols, t_cols = [], [], []
    for b in range(s_mask.shape[0]):
        s_idx = s_mask[b].nonzero(as_tuple=True)[0]
        t_idx = t_mask[b].nonzero(as_tuple=True)[0]
        k = min(s_idx.numel(), t_idx.numel())
        rows.append(torch.full((k,), b, dtype=torch.long, device=s_mask.device))
        s_cols.append(s_idx[:k])
        t_cols.append(t_idx[:k].to(s_mask.device))
    return torch.cat(rows), torch.cat(s_cols), torch.cat(t_cols)


@dataclass
class ULDObjective:
    """(1 - alpha) * CE(student, gold) + alpha * ULD(student, teacher) on aligned answer positions
    (per-sample mean, then mean over samples; no T² factor, as Boizard et al.).

    Batches carry the teacher's own tokenization under `teacher_*` keys. `loss.temperature` softens
    both distributions; `loss.name` is not used (the distance is ULD's own).
    """

    teacher: nn.Module
    loss: KDLossConfig
    chunk_tokens: int = 64

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if TEACHER_PREFIX + "input_ids" not in batch:
            raise ValueError("ULD needs batches with the teacher's tokenization (teacher_* keys)")
        keep, targets = answer_positions(batch["labels"])  # keep [K], targets [B, K]
        s_logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
        ).logits  # [B, K, V_s]
        ce = masked_ce(s_logits, targets)
        t_keep, t_targets = answer_positions(batch[TEACHER_PREFIX + "labels"])
        with torch.no_grad():
            self.teacher.eval()
            t_out = self.teacher(
                input_ids=batch[TEACHER_PREFIX + "input_ids"], attention_mask=batch[TEACHER_PREFIX + "attention_mask"],
                output_hidden_states=True, logits_to_keep=1,
            )
            t_hidden = t_out.hidden_states[-1][:, t_keep]  # [B, K_t, d_t], after the final norm
        rows, s_cols, t_cols = aligned_positions(targets != IGNORE_INDEX, t_targets != IGNORE_INDEX)
        kd = uld_loss(
            s_logits[rows, s_cols], t_hidden[rows, t_cols.to(t_hidden.device)], LMHead.of(self.teacher), rows,
            temperature=self.loss.temperature, chunk_tokens=self.chunk_tokens,
        )
        a = self.loss.alpha
        return {"loss": (1 - a) * ce + a * kd, "ce": ce.detach(), "kd": kd.detach(),
                "aligned": torch.tensor(float(rows.numel()))}
