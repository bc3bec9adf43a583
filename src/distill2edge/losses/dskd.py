"""Dual-Space Knowledge Distillation (DSKD; Zhang et al., EMNLP 2024), with cross-model attention.

Vanilla KD compares two next-token distributions that live in different spaces when the models have
different output layers. DSKD brings each model's last hidden states into the other model's space
with learned projectors and computes *both* distributions with one head, so KD runs twice:

Same vocabulary (`dual_space_kd`), over the N answer positions shared by both tokenizations:

    h_t2s = P_t2s(h_t)                 [N, d_s]   teacher states in the student space
    z_t2s = sg(W_s) h_t2s              [N, V_s]   scored by the student's head, frozen here
    L_t2s_ce  = CE(z_t2s, y)                      trains P_t2s to carry the teacher's knowledge
    L_stu     = D(sg(z_t2s) -> z_s)              student space: student logits follow the projection
    h_s2t = P_s2t(h_s)                 [N, d_t]
    L_tea     = KL(z_t -> W_t h_s2t)              teacher space: the teacher's own head (frozen)
    L_kd = L_stu + L_tea + L_t2s_ce

Different vocabularies: cross-model attention, `losses.cma.cma_kd`.

As the DSKD authors' `code/criterions/dual_space_kd.py`: `D` is a registered divergence of `losses.kd`
(`loss.name`, forward KL by default) at temperature T in the student space, while the teacher space
always uses forward KL (`teacher_name`; `dskd.teacher_divergence: loss_name` is an opt-in departure);
each term is a sum over the answer positions divided by the student's answer-token count; no T² factor
(`dskd.hinton_t2` opts in). Embeddings and the target side of each divergence carry no gradient;
gradients reach the student (through z_s and h_s) and the projectors, never the teacher.

Full-vocabulary logits of a large head (Gemma's 262,144 entries) are never built for all positions at
once: `head_divergence` and `head_cross_entropy` work in chunks of positions and recompute each chunk in
the backward pass, so peak memory is one chunk's [chunk, V] float32 block whatever the answer length.
Given no student logits, the student's own head (and its CE, `head_cross_entropy` with gradient into
the head) is treated the same way, so neither vocabulary's [positions, V] logits are ever built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from distill2edge.losses.kd import get_kd_loss
from distill2edge.models.hf import module_weight, output_embeddings, text_config


class DSKDConfigError(ValueError):
    """Projectors, hidden sizes or heads that do not fit together."""


@dataclass(frozen=True)
class LMHead:
    """A model's output layer as a function of its last (normed) hidden state: [..., d] -> [..., V]."""

    weight: Tensor
    """[V, d]."""
    bias: Tensor | None = None
    softcap: float | None = None
    """Gemma-2 style final logit soft-capping (tanh(z / c) · c); None when the model has none."""

    def __call__(self, hidden: Tensor) -> Tensor:
        if hidden.shape[-1] != self.weight.shape[1]:
            raise DSKDConfigError(
                f"LM head expects hidden size {self.weight.shape[1]}, got {hidden.shape[-1]}"
            )
        z = F.linear(hidden, self.weight.to(hidden.dtype), None if self.bias is None else self.bias.to(hidden.dtype))
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def detached(self) -> LMHead:
        """The same head with no gradient into its weights (the paper freezes it for projector CE)."""
        return replace(self, weight=self.weight.detach(), bias=None if self.bias is None else self.bias.detach())

    @classmethod
    def of(cls, model: nn.Module) -> LMHead:
        """The head of a Hugging Face causal LM (works through a peft wrapper)."""
        head = output_embeddings(model)
        text = text_config(model)
        return cls(module_weight(head), getattr(head, "bias", None), getattr(text, "final_logit_softcapping", None))


def _projector(d_in: int, d_out: int, kind: str, init: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))
    layer = nn.Linear(d_in, d_out)
    if init == "identity" or (init == "auto" and d_in == d_out):
        if d_in != d_out:
            raise DSKDConfigError(f"projector init 'identity' needs equal sizes, got {d_in} -> {d_out}")
        with torch.no_grad():
            layer.weight.copy_(torch.eye(d_in))
            layer.bias.zero_()
    return layer


class DSKDProjectors(nn.Module):
    """The learned maps of DSKD. Sizes come from the two models' hidden sizes.

    s2t: d_s -> d_t, t2s: d_t -> d_s, and for cross-model attention `query`: 2 d_s -> 2 d_t (the
    student's [input; target] embeddings become queries over the teacher's). With `init="auto"` a
    square linear map starts as the identity, so a teacher identical to the student starts with zero
    KD; other maps use PyTorch's default initialisation.
    """

    def __init__(
        self, student_dim: int, teacher_dim: int, *, cma: bool,
        kind: Literal["linear", "mlp"] = "linear", init: Literal["auto", "identity", "random"] = "auto",
    ) -> None:
        super().__init__()
        self.student_dim, self.teacher_dim = int(student_dim), int(teacher_dim)
        self.s2t = _projector(student_dim, teacher_dim, kind, init)
        self.t2s = _projector(teacher_dim, student_dim, kind, init)
        self.query = _projector(2 * student_dim, 2 * teacher_dim, kind, init) if cma else None

    def check(self, student_hidden: Tensor, teacher_hidden: Tensor) -> None:
        """Clear errors when hidden states do not have the sizes the projectors were built for."""
        for who, t, want in (("student", student_hidden, self.student_dim), ("teacher", teacher_hidden, self.teacher_dim)):
            if t.shape[-1] != want:
                raise DSKDConfigError(
                    f"DSKD projectors were built for {who} hidden size {want}, but the {who}'s hidden states "
                    f"have size {t.shape[-1]}; projector sizes come from the models' config.hidden_size"
                )


# --- chunked head computations ---------------------------------------------------------------------


def _chunk_divergence(
    q_in: Tensor, p_in: Tensor, weight: Tensor, q_head: LMHead | None, p_head: LMHead | None,
    name: str, temperature: float, options: dict[str, Any],
) -> Tensor:
    q = q_in if q_head is None else q_head(q_in)
    with torch.no_grad():
        p = p_in if p_head is None else p_head(p_in)
    return (get_kd_loss(name)(q, p, temperature, **options) * weight).sum()


def head_divergence(
    q_in: Tensor, p_in: Tensor, weight: Tensor | None = None, *, q_head: LMHead | None = None,
    p_head: LMHead | None = None, name: str = "forward_kl", temperature: float = 1.0,
    chunk_tokens: int = 256, hinton_t2: bool = False, **options: Any,
) -> Tensor:
    """Σ_i weight_i · D(p_i -> q_i) over rows (times T² with `hinton_t2`), in chunks of positions.

    Args:
        q_in: [N, d] hidden states scored by `q_head`, or [N, V] logits when `q_head` is None: the
            distribution being trained (gradient flows).
        p_in: [N, d'] or [N, V] likewise for the target distribution (constant: no gradient).
        weight: [N] per-row weights (e.g. 0/1 masks); all ones when None.
        hinton_t2: multiply by T² (Hinton et al.'s gradient-scale convention). The DSKD reference
            does not, so it is off unless a recipe sets `dskd.hinton_t2`.
    Returns a scalar *sum*; callers divide by their own count.
    """
    n = q_in.shape[0]
    if p_in.shape[0] != n:
        raise DSKDConfigError(f"{n} student rows but {p_in.shape[0]} target rows")
    dtype = torch.promote_types(q_in.dtype, torch.float32)
    weight = torch.ones(n, device=q_in.device, dtype=dtype) if weight is None else weight.to(q_in.device, dtype)
    p_in = p_in.detach()
    total = q_in.new_zeros((), dtype=torch.float32)
    if n == 0:
        return total + 0.0 * q_in.sum()
    recompute = torch.is_grad_enabled() and q_in.requires_grad and n > chunk_tokens
    for q_c, p_c, w_c in zip(q_in.split(chunk_tokens), p_in.split(chunk_tokens), weight.split(chunk_tokens)):
        args = (q_c, p_c, w_c, q_head, p_head, name, temperature, options)
        if recompute:
            total = total + checkpoint(_chunk_divergence, *args, use_reentrant=False, preserve_rng_state=False)
        else:
            total = total + _chunk_divergence(*args)
    return total * temperature**2 if hinton_t2 else total


def _chunk_ce(hidden: Tensor, targets: Tensor, head: LMHead) -> tuple[Tensor, Tensor]:
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, reduction="sum"), logits.argmax(-1) == targets


def head_cross_entropy(
    hidden: Tensor, targets: Tensor, head: LMHead, *, chunk_tokens: int = 256
) -> tuple[Tensor, Tensor]:
    """Summed CE of `head(hidden)` [N, V] against `targets` [N], and whether each argmax is right [N]."""
    total = hidden.new_zeros((), dtype=torch.float32) + 0.0 * hidden.sum()
    correct = []
    recompute = torch.is_grad_enabled() and hidden.requires_grad and hidden.shape[0] > chunk_tokens
    for h_c, y_c in zip(hidden.split(chunk_tokens), targets.split(chunk_tokens)):
        if recompute:
            ce, ok = checkpoint(_chunk_ce, h_c, y_c, head, use_reentrant=False, preserve_rng_state=False)
        else:
            ce, ok = _chunk_ce(h_c, y_c, head)
        total = total + ce
        correct.append(ok)
    return total, torch.cat(correct) if correct else targets.new_zeros(0, dtype=torch.bool)


# --- the two DSKD variants --------------------------------------------------------------------------


def _result(t2s_ce: Tensor, kd_stu: Tensor, kd_tea: Tensor, acc: Tensor) -> dict[str, Tensor]:
    return {
        "kd": t2s_ce + kd_stu + kd_tea,
        "t2s_ce": t2s_ce.detach(), "kd_student_space": kd_stu.detach(), "kd_teacher_space": kd_tea.detach(),
        "t2s_acc": acc.detach(),
    }


def dual_space_kd(
    student_hidden: Tensor, student_logits: Tensor | None, teacher_hidden: Tensor, targets: Tensor,
    student_head: LMHead, teacher_head: LMHead, projectors: DSKDProjectors, *,
    name: str = "forward_kl", temperature: float = 1.0, chunk_tokens: int = 256,
    teacher_name: str = "forward_kl", hinton_t2: bool = False, **options: Any,
) -> dict[str, Tensor]:
    """DSKD for one shared tokenization, over N answer positions (rows already selected).

    As `code/criterions/dual_space_kd.py` of the DSKD authors: each term is a sum over the N positions
    divided by N (their `batch_denom`, the student's answer-token count); the student-space term uses
    `name`, the teacher-space term forward KL (`teacher_name`, an opt-in departure).

    Args:
        student_hidden: [N, d_s] last hidden states of the student (with grad).
        student_logits: [N, V_s] the student's logits at the same positions (with grad), or None to
            form them from `student_hidden` through `student_head` chunk by chunk (no [N, V_s] tensor).
        teacher_hidden: [N, d_t] the teacher's last hidden states (no grad).
        targets: [N] gold next tokens.
    Returns {"kd": L_stu + L_tea + L_t2s_ce (with grad), and each part detached for logging}.
    """
    projectors.check(student_hidden, teacher_hidden)
    n = max(int(targets.numel()), 1)
    kw = dict(temperature=temperature, chunk_tokens=chunk_tokens, hinton_t2=hinton_t2, **options)
    h_t2s = projectors.t2s(teacher_hidden.detach())  # [N, d_s]
    frozen_s = student_head.detached()
    ce_sum, correct = head_cross_entropy(h_t2s, targets, frozen_s, chunk_tokens=chunk_tokens)
    q_in, q_head = (student_hidden, student_head) if student_logits is None else (student_logits, None)
    kd_stu = head_divergence(q_in, h_t2s, q_head=q_head, p_head=frozen_s, name=name, **kw) / n
    h_s2t = projectors.s2t(student_hidden)  # [N, d_t]
    frozen_t = teacher_head.detached()
    kd_tea = head_divergence(h_s2t, teacher_hidden, q_head=frozen_t, p_head=frozen_t, name=teacher_name, **kw) / n
    return _result(ce_sum / n, kd_stu, kd_tea, correct.float().mean() if correct.numel() else ce_sum * 0)
