"""Cross-entropy and forward KL computed straight from last hidden states, a block of vocabulary at a time.

With Gemma's 262,144-entry vocabulary the logits of one position take 1 MiB in float32, so a batch of
8 answers of 64 tokens needs 512 MiB for the student's logits, as much again for the teacher's, and
several float32 copies inside a softmax. Here neither model's logits exist as a whole: for each block of
`chunk_rows` positions and `chunk_vocab` vocabulary entries the logits are formed from the hidden states
and the LM head, folded into running log-sum-exps and sums, and dropped. The backward pass forms them
again block by block. Peak extra memory is O(chunk_rows x chunk_vocab), whatever the number of
positions or the vocabulary size; only the head's weight gradient is [V, d], as it must be.

Liger-Kernel's fused linear cross-entropy does the same for CE on GPU with Triton; this is plain torch
so it runs on CPU and in CI, and it adds the teacher term that Liger's CE has no room for.

Forward KL at temperature T, with a = z_t / T and b = z_s / T:
    KL = sum_v p_t,v (a_v - b_v) - lse(a) + lse(b),   p_t = softmax(a)
computed online: a running max m, S = sum exp(a - m), A = sum exp(a - m)(a - b), rescaled when m grows;
then sum_v p_t,v (a_v - b_v) = A / S. The gradient with respect to the student's raw logits is
(softmax(b) - p_t) / T for the KL and softmax(z_s) - onehot(y) for the CE.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distill2edge.losses.dskd import LMHead


def _logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, softcap: float | None) -> tuple[Tensor, Tensor]:
    """(capped logits, raw logits) of one block: hidden [n, d] x weight [v, d] -> [n, v] float32."""
    raw = hidden.float() @ weight.float().T
    if bias is not None:
        raw = raw + bias.float()
    return (torch.tanh(raw / softcap) * softcap if softcap else raw), raw


class _OnlineLSE:
    """Running log-sum-exp over column blocks of [n, v] tensors."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.m = torch.full((n,), float("-inf"), device=device)
        self.s = torch.zeros(n, device=device)

    def add(self, x: Tensor) -> Tensor:
        """Fold in a block; returns the factor exp(m_old - m_new) [n] that older sums must be scaled by."""
        m_new = torch.maximum(self.m, x.max(dim=-1).values)
        scale = torch.exp(self.m - m_new).nan_to_num(0.0)  # first block: exp(-inf - m) = 0
        self.s = self.s * scale + torch.exp(x - m_new[:, None]).sum(dim=-1)
        self.m = m_new
        return scale

    def value(self) -> Tensor:
        return self.m + self.s.log()


class _FusedKDCE(torch.autograd.Function):
    """Per-row (KL [n], CE [n]) from hidden states; gradients for the student's hidden states and head."""

    @staticmethod
    def forward(
        ctx: Any, s_hidden: Tensor, s_weight: Tensor, s_bias: Tensor | None, t_hidden: Tensor, t_weight: Tensor,
        t_bias: Tensor | None, targets: Tensor, temperature: float, s_cap: float | None, t_cap: float | None,
        chunk_rows: int, chunk_vocab: int,
    ) -> tuple[Tensor, Tensor]:
        n, vocab = s_hidden.shape[0], s_weight.shape[0]
        dev = s_hidden.device
        kl, ce = torch.zeros(n, device=dev), torch.zeros(n, device=dev)
        lse_b, lse_a, lse_c = (torch.zeros(n, device=dev) for _ in range(3))
        for r0 in range(0, n, chunk_rows):
            r = slice(r0, r0 + chunk_rows)
            rows = s_hidden[r].shape[0]
            la, lb, lc = (_OnlineLSE(rows, dev) for _ in range(3))
            acc = torch.zeros(rows, device=dev)  # A: sum exp(a - m_a)(a - b)
            gold = torch.zeros(rows, device=dev)
            y = targets[r]
            for v0 in range(0, vocab, chunk_vocab):
                v = slice(v0, v0 + chunk_vocab)
                zs, _ = _logits(s_hidden[r], s_weight[v], None if s_bias is None else s_bias[v], s_cap)
                zt, _ = _logits(t_hidden[r], t_weight[v], None if t_bias is None else t_bias[v], t_cap)
                a, b = zt / temperature, zs / temperature
                acc = acc * la.add(a) + (torch.exp(a - la.m[:, None]) * (a - b)).sum(dim=-1)
                lb.add(b)
                lc.add(zs)
                inside = (y >= v0) & (y < v0 + zs.shape[1])
                if inside.any():
                    gold[inside] = zs[inside, y[inside] - v0]
            lse_a[r], lse_b[r], lse_c[r] = la.value(), lb.value(), lc.value()
            kl[r] = acc / la.s - lse_a[r] + lse_b[r]
            ce[r] = lse_c[r] - gold
        ctx.save_for_backward(s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, targets, lse_a, lse_b, lse_c)
        ctx.options = (temperature, s_cap, t_cap, chunk_rows, chunk_vocab)
        return kl, ce

    @staticmethod
    def backward(ctx: Any, g_kl: Tensor, g_ce: Tensor) -> tuple[Tensor | None, ...]:
        s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, targets, lse_a, lse_b, lse_c = ctx.saved_tensors
        temperature, s_cap, t_cap, chunk_rows, chunk_vocab = ctx.options
        want_h, want_w, want_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        g_h = torch.zeros_like(s_hidden, dtype=torch.float32) if want_h else None
        g_w = torch.zeros_like(s_weight, dtype=torch.float32) if want_w else None
        g_b = torch.zeros_like(s_bias, dtype=torch.float32) if want_b else None
        n, vocab = s_hidden.shape[0], s_weight.shape[0]
        for r0 in range(0, n, chunk_rows):
            r = slice(r0, r0 + chunk_rows)
            h = s_hidden[r].float()
            y = targets[r]
            for v0 in range(0, vocab, chunk_vocab):
                v = slice(v0, v0 + chunk_vocab)
                zs, raw = _logits(s_hidden[r], s_weight[v], None if s_bias is None else s_bias[v], s_cap)
                zt, _ = _logits(t_hidden[r], t_weight[v], None if t_bias is None else t_bias[v], t_cap)
                p_b = torch.exp(zs / temperature - lse_b[r, None])
                p_a = torch.exp(zt / temperature - lse_a[r, None])
                p_c = torch.exp(zs - lse_c[r, None])
                dz = g_kl[r, None] * (p_b - p_a) / temperature + g_ce[r, None] * p_c
                inside = ((y >= v0) & (y < v0 + zs.shape[1])).nonzero(as_tuple=True)[0]
                dz[inside, y[inside] - v0] -= g_ce[r][inside]
                if s_cap:
                    dz = dz * (1 - torch.tanh(raw / s_cap) ** 2)
                if g_h is not None:
                    g_h[r] += dz @ s_weight[v].float()
                if g_w is not None:
                    g_w[v] += dz.T @ h
                if g_b is not None:
                    g_b[v] += dz.sum(dim=0)

        def cast(g: Tensor | None, like: Tensor) -> Tensor | None:
            return None if g is None else g.to(like.dtype)

        return cast(g_h, s_hidden), cast(g_w, s_weight), cast(g_b, s_bias), *([None] * 9)


def fused_kd_ce(
    s_hidden: Tensor, s_head: LMHead, t_hidden: Tensor, t_head: LMHead, targets: Tensor, *, temperature: float = 1.0,
    chunk_rows: int = 256, chunk_vocab: int = 16384,
) -> tuple[Tensor, Tensor]:
    """Per-row forward KL(p_t^T || p_s^T) and CE(p_s, targets) from last hidden states.

    Args:
        s_hidden: [N, d_s] student last hidden states (after the final norm) at the distilled positions.
        s_head: the student's LM head; its weight (and bias) get gradients if they require them.
        t_hidden: [N, d_t] teacher last hidden states at the same positions; no gradient.
        t_head: the teacher's LM head, over the same vocabulary rows as the student's (callers slice both
            heads to the shared vocabulary).
        targets: [N] gold token ids (for the CE).
        temperature: T of the KL (the CE is at temperature 1).
        chunk_rows, chunk_vocab: block shape of the logits that exist at any time.

    Returns:
        kl [N], ce [N], both float32. Not multiplied by T².
    """
    if s_head.weight.shape[0] != t_head.weight.shape[0]:
        raise ValueError(f"student and teacher heads must cover the same vocabulary rows, got "
                         f"{s_head.weight.shape[0]} and {t_head.weight.shape[0]}")
    if s_hidden.shape[0] != t_hidden.shape[0] or targets.shape != (s_hidden.shape[0],):
        raise ValueError(f"rows differ: student {tuple(s_hidden.shape)}, teacher {tuple(t_hidden.shape)}, "
                         f"targets {tuple(targets.shape)}")
    if temperature <= 0 or chunk_rows < 1 or chunk_vocab < 1:
        raise ValueError("temperature, chunk_rows and chunk_vocab must be positive")
    return _FusedKDCE.apply(
        s_hidden, s_head.weight, s_head.bias, t_hidden.detach(), t_head.weight.detach(),
        None if t_head.bias is None else t_head.bias.detach(), targets, float(temperature), s_head.softcap,
        t_head.softcap, chunk_rows, chunk_vocab,
    )
