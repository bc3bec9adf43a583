"""Fused hidden-state -> (KL, CE) against the plain logits path: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill2edge.losses import kd_loss
from distill2edge.losses.dskd import LMHead
from distill2edge.losses.fused import fused_kd_ce


def _case(n=9, v=50, ds=12, dt=16, bias=False, s_cap=None, t_cap=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    s_h = torch.randn(n, ds, generator=g, dtype=torch.float64).requires_grad_()
    s_w = (torch.randn(v, ds, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    s_b = (torch.randn(v, generator=g, dtype=torch.float64) * 0.1).requires_grad_() if bias else None
    t_h = torch.randn(n, dt, generator=g, dtype=torch.float64)
    t_w = torch.randn(v, dt, generator=g, dtype=torch.float64) * 0.5
    y = torch.randint(0, v, (n,), generator=g)
    return s_h, LMHead(s_w, s_b, s_cap), t_h, LMHead(t_w, None, t_cap), y


def _reference(s_h, s_head, t_h, t_head, y, temperature):
    zs, zt = s_head(s_h), t_head(t_h)
    kl = kd_loss(zs[None], zt[None], torch.ones(1, len(y), dtype=torch.bool), temperature=temperature)
    return kl, F.cross_entropy(zs, y)


@pytest.mark.parametrize("opts", [
    {}, {"bias": True}, {"s_cap": 3.0, "t_cap": 5.0}, {"bias": True, "s_cap": 2.0},
], ids=["plain", "bias", "softcap", "bias+softcap"])
@pytest.mark.parametrize("chunks", [(4, 7), (100, 1000), (1, 50)], ids=["blocks", "one-block", "rows"])
def test_fused_matches_full_logits_and_their_gradients(opts, chunks) -> None:
    temperature = 2.0
    s_h, s_head, t_h, t_head, y = _case(**opts)
    kl, ce = fused_kd_ce(s_h, s_head, t_h, t_head, y, temperature=temperature, chunk_rows=chunks[0], chunk_vocab=chunks[1])
    ref_kl, ref_ce = _reference(s_h, s_head, t_h, t_head, y, temperature)
    torch.testing.assert_close(kl.double().mean(), ref_kl.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ce.double().mean(), ref_ce, rtol=1e-5, atol=1e-6)
    params = [s_h, s_head.weight, *([s_head.bias] if s_head.bias is not None else [])]
    got = torch.autograd.grad(0.7 * kl.mean() + 0.3 * ce.mean(), params)
    want = torch.autograd.grad(0.7 * ref_kl + 0.3 * ref_ce, params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_identical_models_give_zero_kl_and_errors_name_the_shapes() -> None:
    s_h, s_head, _t_h, _t_head, y = _case()
    kl, _ = fused_kd_ce(s_h, s_head, s_h.detach(), LMHead(s_head.weight.detach()), y, chunk_vocab=8)
    assert kl.abs().max() < 1e-5
    with pytest.raises(ValueError, match="same vocabulary rows"):
        fused_kd_ce(s_h, s_head, s_h, LMHead(s_head.weight[:10]), y)
    with pytest.raises(ValueError, match="rows differ"):
        fused_kd_ce(s_h, s_head, s_h[:3], s_head, y)


def test_vanilla_kd_fused_equals_the_logits_path_on_a_model_pair(tiny_llama_dir, make_tiny_model, qa_jsonl) -> None:
    from distill2edge.config import DistillConfig, KDLossConfig
    from distill2edge.data.qa import load_jsonl
    from distill2edge.data.tokenize import collate, encode_for_training
    from distill2edge.models import load_model
    from distill2edge.train.objectives import VanillaKD

    teacher, tok = load_model(str(tiny_llama_dir))
    student, _ = load_model(str(make_tiny_model(seed=2)))
    feats = [encode_for_training(tok, ex, "Context: {context}\nQuestion: {question}\nAnswer:", 96)
             for ex in load_jsonl(qa_jsonl)[:6]]
    batch = collate(feats, tok.pad_token_id)
    plain = VanillaKD(teacher, KDLossConfig(alpha=0.4, temperature=2.0), len(tok))
    fused = VanillaKD(teacher, KDLossConfig(alpha=0.4, temperature=2.0, fused_vocab_chunk=100), len(tok))
    outs, grads = [], []
    for objective in (plain, fused):
        student.zero_grad()
        out = objective(student, batch)
        out["loss"].backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in student.parameters()])
    for k in ("loss", "ce", "kd"):
        assert float(outs[1][k]) == pytest.approx(float(outs[0][k]), rel=1e-5)
    for g_fused, g_plain in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fused, g_plain, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="fused_vocab_chunk: the fused loss serves vanilla KD with forward_kl"):
        DistillConfig(algorithm="vanilla", loss={"name": "reverse_kl", "fused_vocab_chunk": 64})
