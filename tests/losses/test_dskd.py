"""DSKD losses against a hand-written numpy version of the equations (answer-row σ, `hinton_t2` on: the
opt-in options), plus gradient flow. The DSKD reference's own numbers: test_dskd_reference.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill2edge.losses.cma import cma_kd
from distill2edge.losses.dskd import (
    DSKDConfigError,
    DSKDProjectors,
    LMHead,
    dual_space_kd,
    head_cross_entropy,
    head_divergence,
)
from distill2edge.losses.kd import IGNORE_INDEX

T = 2.0


# --- numpy reference: one row at a time, float64, no shared code with the implementation ----------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _fkl(student_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """T² · KL(softmax(t/T) || softmax(s/T)) for one row."""
    p, q = _softmax(teacher_logits / T), _softmax(student_logits / T)
    return T * T * float(np.sum(p * (np.log(p) - np.log(q))))


def _ce(logits: np.ndarray, y: int) -> float:
    return float(-np.log(_softmax(logits)[y]))


def _lin(layer: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()


def _ref_dual(hs, zs, ht, y, ws, wt, proj) -> dict[str, float]:
    n = len(y)
    stu = tea = ce = 0.0
    for i in range(n):
        z_t2s = ws @ _lin(proj.t2s, ht[i])
        ce += _ce(z_t2s, y[i])
        stu += _fkl(zs[i], z_t2s)
        tea += _fkl(wt @ _lin(proj.s2t, hs[i]), wt @ ht[i])
    return {"t2s_ce": ce / n, "kd_student_space": stu / n, "kd_teacher_space": tea / n}


def _ref_cma(es, hs, zs, ys, et, ht, tmask, ws, wt, proj) -> dict[str, float]:
    B = es.shape[0]
    smask = ys != IGNORE_INDEX
    k_std = et[tmask].std(ddof=1)
    h_std = ht[tmask].std(ddof=1)
    y_std = et[tmask][:, DT:].std(ddof=1)
    stu = tea = ce = 0.0
    argmax = np.full(ys.shape, -1)
    for b in range(B):
        si = np.nonzero(smask[b])[0]
        ti = np.nonzero(tmask[b])[0]
        q = _lin(proj.query, es[b, si])  # [ms, 2dt]
        k = et[b, ti] / k_std
        v = _lin(proj.t2s, ht[b, ti] / h_std + et[b, ti, DT:] / y_std)
        a = q @ k.T / math.sqrt(k.shape[1])  # [ms, mt]
        for r, i in enumerate(si):
            w = _softmax(a[r])
            z_t2s = ws @ (w @ v)
            ce += _ce(z_t2s, ys[b, i])
            argmax[b, i] = int(np.argmax(z_t2s))
            if argmax[b, i] == ys[b, i]:
                stu += _fkl(zs[b, i], z_t2s)
        s2t_src = _lin(proj.s2t, hs[b, si])
        for c, j in enumerate(ti):
            w = _softmax(a[:, c])
            tea += _fkl(wt @ (w @ s2t_src), wt @ ht[b, j])
    n_s = smask.sum()
    out = {"t2s_ce": ce / n_s, "kd_student_space": stu / n_s, "kd_teacher_space": tea / n_s}
    return out, argmax


# --- fixtures -------------------------------------------------------------------------------------
DS, DT, VS, VT = 6, 8, 11, 17


def _heads(seed: int = 0) -> tuple[LMHead, LMHead]:
    g = torch.Generator().manual_seed(seed)
    return (
        LMHead(torch.randn(VS, DS, generator=g, dtype=torch.float64)),
        LMHead(torch.randn(VT, DT, generator=g, dtype=torch.float64)),
    )


def _projectors(cma: bool) -> DSKDProjectors:
    torch.manual_seed(1)
    return DSKDProjectors(DS, DT, cma=cma).double()


def test_dual_space_matches_reference() -> None:
    torch.manual_seed(0)
    head_s, head_t = _heads()
    proj = _projectors(cma=False)
    n = 7
    hs = torch.randn(n, DS, dtype=torch.float64)
    zs = head_s(hs)
    ht = torch.randn(n, DT, dtype=torch.float64)
    y = torch.randint(0, VS, (n,))
    got = dual_space_kd(hs, zs, ht, y, head_s, head_t, proj, temperature=T, hinton_t2=True)
    ref = _ref_dual(hs.numpy(), zs.detach().numpy(), ht.numpy(), y.numpy(), head_s.weight.numpy(), head_t.weight.numpy(), proj)
    for key, value in ref.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert float(got["kd"]) == pytest.approx(sum(ref.values()), rel=1e-9)


def _cma_inputs(seed: int = 0):
    torch.manual_seed(seed)
    B, MS, MT = 3, 5, 6
    es = torch.randn(B, MS, 2 * DS, dtype=torch.float64)
    hs = torch.randn(B, MS, DS, dtype=torch.float64, requires_grad=True)
    ys = torch.randint(0, VS, (B, MS))
    ys[0, 4] = IGNORE_INDEX  # ragged rows: padding at the end
    ys[2, 3:] = IGNORE_INDEX
    et = torch.randn(B, MT, 2 * DT, dtype=torch.float64)
    ht = torch.randn(B, MT, DT, dtype=torch.float64)
    tmask = torch.ones(B, MT, dtype=torch.bool)
    tmask[1, 4:] = False
    tmask[2, 5] = False
    return es, hs, ys, et, ht, tmask


def test_cma_matches_reference() -> None:
    """Equal to the reference, on data where some aligned predictions are right (their KD term kept)
    and others wrong (dropped)."""
    head_s, head_t = _heads()
    proj = _projectors(cma=True)
    es, hs, ys, et, ht, tmask = _cma_inputs()
    zs = head_s(hs)
    w_s, w_t = head_s.weight.numpy(), head_t.weight.numpy()

    def ref(targets):
        return _ref_cma(
            es.numpy(), hs.detach().numpy(), zs.detach().numpy(), targets.numpy(), et.numpy(), ht.numpy(),
            tmask.numpy(), w_s, w_t, proj,
        )

    _, argmax = ref(ys)
    ys = ys.clone()
    right = torch.zeros_like(ys, dtype=torch.bool)
    right[:, ::2] = ys[:, ::2] != IGNORE_INDEX
    ys[right] = torch.from_numpy(argmax)[right]  # every other position predicted right
    want, argmax = ref(ys)
    n_right = int(((torch.from_numpy(argmax) == ys) & (ys != IGNORE_INDEX)).sum())
    assert 0 < n_right < int((ys != IGNORE_INDEX).sum())
    got = cma_kd(es, hs, zs, ys, et, ht, tmask, head_s, head_t, proj, temperature=T, hinton_t2=True)
    for key, value in want.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert float(got["t2s_acc"]) == pytest.approx(n_right / int((ys != IGNORE_INDEX).sum()))
    assert float(got["kd_student_space"]) > 0


def test_identical_teacher_gives_zero_kd_in_dual_space() -> None:
    torch.manual_seed(0)
    head = LMHead(torch.randn(VS, DS, dtype=torch.float64))
    proj = DSKDProjectors(DS, DS, cma=False).double()  # square: identity initialisation
    h = torch.randn(9, DS, dtype=torch.float64, requires_grad=True)
    out = dual_space_kd(h, head(h), h.detach(), torch.randint(0, VS, (9,)), head, head, proj, temperature=T)
    assert float(out["kd_student_space"]) == pytest.approx(0.0, abs=1e-12)
    assert float(out["kd_teacher_space"]) == pytest.approx(0.0, abs=1e-12)


def test_identical_teacher_gives_near_zero_kd_with_sharp_attention() -> None:
    """CMA with a teacher identical to the student: with a sharp query map the attention aligns each
    position with itself, and both KD terms vanish."""
    torch.manual_seed(0)
    head = LMHead(torch.randn(VS, DS, dtype=torch.float64))
    proj = DSKDProjectors(DS, DS, cma=True).double()
    with torch.no_grad():
        proj.query.weight.mul_(200.0)  # identity * 200: scores dominated by the diagonal
    B, M = 2, 5
    emb = torch.randn(B, M, 2 * DS, dtype=torch.float64)
    h = torch.randn(B, M, DS, dtype=torch.float64)
    std = h.std()
    with torch.no_grad():
        proj.t2s.weight.mul_(std)  # undo the value normalisation so h_t2s == h
    y = torch.randint(0, VS, (B, M))
    mask = torch.ones(B, M, dtype=torch.bool)
    out = cma_kd(emb, h, head(h), y, emb, h, mask, head, head, proj, temperature=T)
    assert float(out["kd_teacher_space"]) < 1e-6
    assert float(out["kd_student_space"]) < 1e-6


def test_gradients_reach_student_and_projectors_not_teacher() -> None:
    head_s, head_t = _heads()
    head_s = LMHead(head_s.weight.clone().requires_grad_(True))
    head_t = LMHead(head_t.weight.clone().requires_grad_(True))  # would show a leak if one existed
    proj = _projectors(cma=True)
    es, hs, ys, et, ht, tmask = _cma_inputs()
    ht.requires_grad_(True)
    et.requires_grad_(True)
    out = cma_kd(es, hs, head_s(hs), ys, et, ht, tmask, head_s, head_t, proj, temperature=T)
    out["kd"].backward()
    assert hs.grad is not None and hs.grad.abs().sum() > 0
    for name, p in proj.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert ht.grad is None and et.grad is None
    assert head_t.weight.grad is None  # the teacher head scores but never learns
    # The student head learns only through its own logits z_s (the projector CE uses it frozen).
    assert head_s.weight.grad is not None


def test_chunked_equals_unchunked_values_and_gradients() -> None:
    head_s, head_t = _heads()
    proj = _projectors(cma=True)
    es, hs, ys, et, ht, tmask = _cma_inputs()
    grads = []
    values = []
    for chunk in (2, 1000):
        hs_ = hs.detach().clone().requires_grad_(True)
        proj.zero_grad()
        out = cma_kd(es, hs_, head_s(hs_), ys, et, ht, tmask, head_s, head_t, proj, temperature=T, chunk_tokens=chunk)
        out["kd"].backward()
        values.append(float(out["kd"]))
        grads.append((hs_.grad.clone(), proj.query.weight.grad.clone()))
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_head_helpers_against_direct_computation() -> None:
    _head_s, head_t = _heads()
    torch.manual_seed(3)
    h = torch.randn(10, DT, dtype=torch.float64)
    y = torch.randint(0, VT, (10,))
    ce, ok = head_cross_entropy(h, y, head_t, chunk_tokens=3)
    logits = head_t(h)
    assert float(ce) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y, reduction="sum")))
    assert torch.equal(ok, logits.argmax(-1) == y)
    q = torch.randn(10, DT, dtype=torch.float64)
    w = torch.rand(10, dtype=torch.float64)
    got = head_divergence(q, h, w, q_head=head_t, p_head=head_t, temperature=T, chunk_tokens=4, hinton_t2=True)
    want = sum(float(w[i]) * _fkl(head_t(q[i]).numpy(), logits[i].numpy()) for i in range(10))
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_losses_decrease_when_training_projectors_and_student() -> None:
    """A few Adam steps on the CMA loss lower it (student hidden states and projectors train)."""
    head_s, head_t = _heads()
    head_s, head_t = LMHead(head_s.weight.float()), LMHead(head_t.weight.float())
    torch.manual_seed(0)
    proj = DSKDProjectors(DS, DT, cma=True)
    es, hs, ys, et, ht, tmask = (t.float() if t.is_floating_point() else t for t in _cma_inputs())
    hs = hs.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([hs, *proj.parameters()], lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        out = cma_kd(es, hs, head_s(hs), ys, et, ht, tmask, head_s, head_t, proj, temperature=T)
        out["kd"].backward()
        opt.step()
        losses.append(float(out["kd"]))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_misconfigured_sizes_fail_clearly() -> None:
    head_s, head_t = _heads()
    proj = DSKDProjectors(DS, DT + 1, cma=False).double()
    with pytest.raises(DSKDConfigError, match="teacher hidden size 9.*size 8"):
        dual_space_kd(
            torch.randn(3, DS, dtype=torch.float64), torch.randn(3, VS, dtype=torch.float64),
            torch.randn(3, DT, dtype=torch.float64), torch.zeros(3, dtype=torch.long), head_s, head_t, proj,
        )
    no_query = DSKDProjectors(DS, DT, cma=False)
    with pytest.raises(DSKDConfigError, match="cma=True"):
        cma_kd(*[torch.zeros(1)] * 7, head_s, head_t, no_query)
    with pytest.raises(DSKDConfigError, match="identity"):
        DSKDProjectors(DS, DT, cma=False, init="identity")


@pytest.mark.parametrize("variant", ["dual", "cma"])
def test_student_head_in_chunks_equals_given_student_logits(variant: str) -> None:
    """student_logits=None forms them from the hidden states through a *trainable* student head, chunk by
    chunk: the same loss and the same gradients into the hidden states, the head and the projectors."""
    head_s, head_t = _heads()
    es, hs, ys, et, ht, tmask = _cma_inputs()
    mask = ys != IGNORE_INDEX
    results = []
    for chunked in (False, True):
        proj = _projectors(cma=variant == "cma")
        w = head_s.weight.detach().clone().requires_grad_(True)
        head = LMHead(w)
        hs_ = hs.detach().clone().requires_grad_(True)
        if variant == "cma":
            logits = None if chunked else head(hs_)
            out = cma_kd(es, hs_, logits, ys, et, ht, tmask, head, head_t, proj, temperature=T, chunk_tokens=2)
        else:
            h, t = hs_[mask], torch.randn(int(mask.sum()), DT, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
            out = dual_space_kd(h, None if chunked else head(h), t, ys[mask], head, head_t, proj, temperature=T, chunk_tokens=2)
        out["kd"].backward()
        results.append((out, hs_.grad, w.grad, [p.grad for p in proj.parameters()]))
    (a, ga, wa, pa), (b, gb, wb, pb) = results
    for key in ("kd", "t2s_ce", "kd_student_space", "kd_teacher_space", "t2s_acc"):
        assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-12, abs=1e-15), key
    assert float(wa.abs().sum()) > 0  # the student-space term trains the head
    torch.testing.assert_close(gb, ga, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(wb, wa, rtol=1e-10, atol=1e-12)
    for x, y in zip(pa, pb, strict=True):
        if x is None:
            assert y is None
        else:
            torch.testing.assert_close(y, x, rtol=1e-10, atol=1e-12)
