"""DSKD with cross-model attention (CMA; Zhang et al., EMNLP 2024) for two different tokenizations.

The two tokenizations do not line up position by position, so a cross-model attention aligns them,
per sample, over answer positions. This computes what the DSKD authors' criterion
(`code/criterions/dual_space_kd_with_cross_model_attention.py`) computes:

    e_s = [E_s(x_s); E_s(y_s)]          [Ms, 2 d_s]  student input and target-token embeddings
    e_t = [E_t(x_t); E_t(y_t)]          [Mt, 2 d_t]  the same for the teacher
    Q = P_q(e_s),  K = e_t / σ(e_t),  V = P_t2s(h_t / σ(h_t) + E_t(y_t) / σ(E_t(y_t)))
    A = softmax_over_teacher(Q K^T / sqrt(2 d_t))        [Ms, Mt]
    h_t2s = A V, z_t2s = sg(W_s) h_t2s
    L_t2s_ce = Σ CE(z_t2s, y_s)
    L_stu    = Σ D(sg(z_t2s) -> z_s) over student positions where argmax z_t2s == y_s
    A' = softmax_over_student((Q K^T / sqrt(2 d_t))^T)    [Mt, Ms]
    h_s2t = A' P_s2t(h_s);  L_tea = Σ KL(z_t -> W_t h_s2t) over the teacher's answer positions
    L_kd = (L_t2s_ce + L_stu + L_tea) / N_s,   N_s = the student's answer tokens (the reference's batch_denom)

σ(·) is the reference's `.std()` of the *whole padded [B, T, ·] tensor* the models saw: every position of
the batch grid (prompt and padding included; embeddings of token 0 where the label is ignored, as the
reference's `formal_input`/`formal_target`). `CMAScales` carries the three σ; `grid_*_moments` compute them
from the full grid. With `scales=None` σ is taken over the answer rows only (`dskd.cma_std: answer`), which
does not depend on the prompt length or the batch's padding. D is `name` (forward KL by default); the
teacher-space term is forward KL unless `teacher_name` says otherwise. No T² unless `hinton_t2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distill2edge.losses.dskd import (
    DSKDConfigError,
    DSKDProjectors,
    LMHead,
    _result,
    head_cross_entropy,
    head_divergence,
)
from distill2edge.losses.kd import IGNORE_INDEX


def moments(x: Tensor) -> Tensor:
    """(count, Σx, Σx²) over every element of x, float64 [3]: partial sums that add across pieces."""
    x = x.detach().to(torch.float64)
    return torch.stack([x.new_tensor(float(x.numel())), x.sum(), (x * x).sum()])


def moments_std(m: Tensor) -> Tensor:
    """The unbiased standard deviation (as `Tensor.std()`) from `moments` [3] -> float64 scalar (dividing
    a float32 or bf16 tensor by it keeps that tensor's dtype)."""
    n, s1, s2 = m[0], m[1], m[2]
    var = (s2 - s1 * s1 / n) / (n - 1).clamp_min(1.0)
    return var.clamp_min(1e-24).sqrt()


def grid_hidden_moments(last_hidden: Tensor) -> Tensor:
    """Moments of a model's last hidden states [B, T, d] over the reference's grid: every position that
    predicts a next token ([:, :-1]; the reference feeds `input_ids[:-1]`), padding included."""
    return moments(last_hidden[:, :-1])


@torch.no_grad()
def grid_embedding_moments(embed: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Moments of [E(x); E(y)] and of E(y) over the whole grid, x and y replaced by token 0 where
    `targets` is IGNORE_INDEX (as the reference's `formal_input` / `formal_target`).

    inputs, targets: [B, T] (position t reads inputs[:, t] and predicts targets[:, t]). One sample at a
    time, so at most [T, d] embeddings exist. Returns (index moments [3], target moments [3]).
    """
    keep = targets != IGNORE_INDEX
    x, y = inputs.masked_fill(~keep, 0), targets.masked_fill(~keep, 0)
    m_in = m_tg = torch.zeros(3, dtype=torch.float64, device=inputs.device)
    for b in range(inputs.shape[0]):
        m_in = m_in + moments(embed(x[b]))
        m_tg = m_tg + moments(embed(y[b]))
    return m_in + m_tg, m_tg


@dataclass(frozen=True)
class CMAScales:
    """The three divisors σ of cross-model attention (0-dim float32 tensors)."""

    hidden: Tensor
    """σ of the teacher's last hidden states."""
    index_embeds: Tensor
    """σ of the teacher's [E(x); E(y)] (the keys)."""
    target_embeds: Tensor
    """σ of the teacher's E(y) (added to the values)."""

    @classmethod
    def from_moments(cls, hidden: Tensor, index_embeds: Tensor, target_embeds: Tensor) -> CMAScales:
        return cls(moments_std(hidden), moments_std(index_embeds), moments_std(target_embeds))

    @classmethod
    def of_answer_rows(cls, teacher_embeds: Tensor, teacher_hidden: Tensor, mask: Tensor) -> CMAScales:
        """σ over the teacher's answer rows only (`mask` [B, Mt]) of [B, Mt, 2 d_t] and [B, Mt, d_t]."""
        d = teacher_hidden.shape[-1]
        return cls.from_moments(
            moments(teacher_hidden[mask]), moments(teacher_embeds[mask]), moments(teacher_embeds[mask][:, d:])
        )


def _check(student_embeds: Tensor, teacher_embeds: Tensor, projectors: DSKDProjectors) -> None:
    """Clear errors when the [input; target] embeddings do not fit the projectors."""
    if student_embeds.shape[-1] != 2 * projectors.student_dim or teacher_embeds.shape[-1] != 2 * projectors.teacher_dim:
        raise DSKDConfigError(
            f"CMA expects [input; target] embeddings of sizes {2 * projectors.student_dim} (student) and "
            f"{2 * projectors.teacher_dim} (teacher), got {student_embeds.shape[-1]} and {teacher_embeds.shape[-1]}"
        )


def cma_kd(
    student_embeds: Tensor, student_hidden: Tensor, student_logits: Tensor | None, student_targets: Tensor,
    teacher_embeds: Tensor, teacher_hidden: Tensor, teacher_mask: Tensor,
    student_head: LMHead, teacher_head: LMHead, projectors: DSKDProjectors, *,
    name: str = "forward_kl", temperature: float = 1.0, chunk_tokens: int = 256, scales: CMAScales | None = None,
    teacher_name: str = "forward_kl", hinton_t2: bool = False, **options: Any,
) -> dict[str, Tensor]:
    """DSKD with cross-model attention for two tokenizations of the same samples (module docstring).

    Args:
        student_embeds: [B, Ms, 2 d_s] the student's [input; target] token embeddings at its answer
            positions (treated as constants).
        student_hidden: [B, Ms, d_s] and student_logits: [B, Ms, V_s] at those positions (with grad);
            student_logits None: formed from student_hidden through `student_head` in chunks.
        student_targets: [B, Ms] gold next tokens, IGNORE_INDEX where a row has fewer positions.
        teacher_embeds: [B, Mt, 2 d_t], teacher_hidden: [B, Mt, d_t] (no grad) at the teacher's answer
            positions; teacher_mask: [B, Mt] True at real positions.
        scales: σ of the whole padded batch (the reference); None: σ over the teacher's answer rows.
    Returns {"kd": (L_t2s_ce + L_stu + L_tea) / N_s, and the parts (each / N_s) detached for logging}.
    """
    if projectors.query is None:
        raise DSKDConfigError("cross-model attention needs projectors built with cma=True")
    projectors.check(student_hidden, teacher_hidden)
    _check(student_embeds, teacher_embeds, projectors)
    s_mask = student_targets != IGNORE_INDEX  # [B, Ms]
    t_mask = teacher_mask.bool()  # [B, Mt]
    n_s = max(int(s_mask.sum()), 1)
    kw = dict(temperature=temperature, chunk_tokens=chunk_tokens, hinton_t2=hinton_t2, **options)
    sc = scales if scales is not None else CMAScales.of_answer_rows(teacher_embeds, teacher_hidden, t_mask)

    d_t = projectors.teacher_dim
    keys = (teacher_embeds / sc.index_embeds).detach()  # [B, Mt, 2 d_t]
    values = projectors.t2s(  # [B, Mt, d_s]
        (teacher_hidden / sc.hidden + teacher_embeds[..., d_t:] / sc.target_embeds).detach()
    )
    queries = projectors.query(student_embeds.detach())  # [B, Ms, 2 d_t]
    scores = queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])  # [B, Ms, Mt]
    neg = torch.finfo(scores.dtype).min
    t2s_attn = scores.masked_fill(~t_mask[:, None, :], neg).softmax(dim=-1)  # over teacher positions
    h_t2s = t2s_attn @ values  # [B, Ms, d_s]

    frozen_s = student_head.detached()
    targets = student_targets[s_mask]
    ce_sum, correct = head_cross_entropy(h_t2s[s_mask], targets, frozen_s, chunk_tokens=chunk_tokens)
    q_in, q_head = (student_hidden[s_mask], student_head) if student_logits is None else (student_logits[s_mask], None)
    kd_stu = head_divergence(q_in, h_t2s[s_mask], correct.float(), q_head=q_head, p_head=frozen_s, name=name, **kw)

    s2t_attn = scores.transpose(1, 2).masked_fill(~s_mask[:, None, :], neg).softmax(dim=-1)  # [B, Mt, Ms]
    h_s2t = s2t_attn @ projectors.s2t(student_hidden)  # [B, Mt, d_t]
    frozen_t = teacher_head.detached()
    kd_tea = head_divergence(
        h_s2t[t_mask], teacher_hidden[t_mask], q_head=frozen_t, p_head=frozen_t, name=teacher_name, **kw
    )
    acc = correct.float().mean() if correct.numel() else ce_sum * 0
    return _result(ce_sum / n_s, kd_stu / n_s, kd_tea / n_s, acc)
