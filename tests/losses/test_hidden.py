"""Hidden-state MSE, layer maps, projectors and the multi-teacher objective."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from distill2edge.losses import causal_lm_ce, kd_loss
from distill2edge.losses.hidden import HiddenProjector, LayerMap, hidden_mse
from distill2edge.losses.multi_teacher import TeacherTerms, multi_teacher_objective

# ------------------------------------------------------------------------------------ layer map


def test_uniform_map():
    assert LayerMap.uniform(4, 8).pairs == ((1, 2), (2, 4), (3, 6), (4, 8))  # every 2nd layer
    m = LayerMap.uniform(8, 30)
    teachers = [lt for _, lt in m.pairs]
    assert [ls for ls, _ in m.pairs] == list(range(1, 9))
    assert teachers[-1] == 30 and teachers == sorted(teachers) and len(set(teachers)) == 8
    assert LayerMap.uniform(4, 2).pairs == ((1, 1), (2, 1), (3, 1), (4, 2))  # deeper student
    assert LayerMap.from_spec(None, 2, 4) == LayerMap.from_spec("uniform", 2, 4) == LayerMap.uniform(2, 4)


def test_explicit_maps():
    assert LayerMap.from_spec([1, 3, 4], 3, 4).pairs == ((1, 1), (2, 3), (3, 4))
    assert LayerMap.from_spec([[3, 4], [1, 2]], 3, 4).pairs == ((1, 2), (3, 4))  # sorted, a subset
    assert LayerMap.from_spec([(1, 4), (2, 4)], 2, 4).pairs == ((1, 4), (2, 4))  # pairs may share teacher


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([1, 2], r"one entry per student layer \(3\), got 2"),
        ([1, 2, 2], r"teacher layer\(s\) \[2\] listed more than once"),
        ([1, 2, 5], "teacher layer 5 out of range 1..4"),
        ([0, 2, 3], "teacher layer 0 out of range 1..4"),  # the embeddings are never mapped
        ([[4, 1]], "student layer 4 out of range 1..3"),
        ([[1, 1], [1, 2]], "student layer 1 is mapped twice"),
        ([[1, 2, 3]], r"entry 0 must be an int or a \[student, teacher\] pair"),
        ("every-other", "unknown value 'every-other'"),
        ([], "at least one"),
    ],
)
def test_map_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        LayerMap.from_spec(spec, 3, 4)


# ------------------------------------------------------------------------------------ projector


def test_projector_init_and_sharing():
    per_layer = HiddenProjector(8, 8, [1, 2])
    assert set(per_layer.proj) == {"1", "2"}
    x = torch.randn(3, 8)
    torch.testing.assert_close(per_layer(x, 2), x)  # identity start when dims match
    shared = HiddenProjector.for_map(LayerMap.uniform(2, 4), 8, 16, shared=True)
    assert set(shared.proj) == {"shared"} and shared(x, 1).shape == (3, 16)
    with pytest.raises(KeyError, match="no projection for student layer 3"):
        per_layer(x, 3)


# ----------------------------------------------------------------------------------------- MSE


def _states(n_layers: int, b: int, t: int, d: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, d, generator=g) for _ in range(n_layers + 1)]


def test_token_mse_matches_hand_computation():
    hs, ht = _states(2, 2, 5, 3, 0), _states(4, 2, 5, 4, 1)
    lmap = LayerMap.uniform(2, 4)
    proj = HiddenProjector.for_map(lmap, 3, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    expected_sum, expected = 0.0, []
    for ls, lt in lmap.pairs:  # a per-position loop, independent of the vectorised code
        lin = proj.proj[str(ls)]
        sq, n = 0.0, 0
        for b in range(2):
            for t in range(5):
                if mask[b, t]:
                    with torch.no_grad():
                        diff = lin.weight @ hs[ls][b, t] + lin.bias - ht[lt][b, t]
                    sq += float((diff**2).sum())
                    n += 4  # every channel of d_t
        expected.append(sq / n)
        expected_sum += sq / n
    got = hidden_mse(hs, ht, proj, lmap, mask)
    assert math.isclose(got.item(), expected_sum, rel_tol=1e-5)
    got_mean = hidden_mse(hs, ht, proj, lmap, mask, reduction="mean")
    assert math.isclose(got_mean.item(), sum(expected) / 2, rel_tol=1e-5)


def test_pooled_mse_with_different_lengths():
    hs, ht = _states(1, 2, 4, 3, 2), _states(2, 2, 6, 3, 3)  # teacher tokenised into 6 positions
    lmap = LayerMap.from_spec([[1, 2]], 1, 2)
    proj = HiddenProjector.for_map(lmap, 3, 3)  # identity
    smask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    tmask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    mean_s = torch.stack([hs[1][0, :2].mean(0), hs[1][1].mean(0)])
    mean_t = torch.stack([ht[2][0, 1:].mean(0), ht[2][1, :5].mean(0)])
    got = hidden_mse(hs, ht, proj, lmap, smask, teacher_mask=tmask, pooling="mean")
    assert math.isclose(got.item(), float(((mean_s - mean_t) ** 2).mean()), rel_tol=1e-5)
    last_s = torch.stack([hs[1][0, 1], hs[1][1, 3]])
    last_t = torch.stack([ht[2][0, 5], ht[2][1, 4]])
    got = hidden_mse(hs, ht, proj, lmap, smask, teacher_mask=tmask, pooling="last")
    assert math.isclose(got.item(), float(((last_s - last_t) ** 2).mean()), rel_tol=1e-5)
    with pytest.raises(ValueError, match="pooling='token' needs aligned positions"):
        hidden_mse(hs, ht, proj, lmap, smask)


def test_normalize_and_empty_mask():
    hs, ht = _states(1, 1, 3, 4, 4), _states(1, 1, 3, 4, 5)
    lmap = LayerMap.uniform(1, 1)
    proj = HiddenProjector.for_map(lmap, 4, 4)
    ht_scaled = [h * 100 + 7 for h in ht]  # LayerNorm removes per-token scale and shift
    a = hidden_mse(hs, ht, proj, lmap, normalize=True)
    b = hidden_mse(hs, ht_scaled, proj, lmap, normalize=True)
    ln = torch.nn.functional.layer_norm
    hand = float(((ln(hs[1], (4,)) - ln(ht[1], (4,))) ** 2).mean())
    assert math.isclose(a.item(), hand, rel_tol=1e-4) and math.isclose(a.item(), b.item(), rel_tol=1e-3)
    empty = hidden_mse(hs, ht, proj, lmap, torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()  # still attached to the projector's graph
    with pytest.raises(ValueError, match="student has 1 layers, the layer map expects 2"):
        hidden_mse(hs, ht, proj, LayerMap.uniform(2, 1))


def test_gradients_reach_projector_and_student_not_teacher(tiny_llama_dir, make_tiny_model):
    teacher = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)  # 4 layers, hidden 64
    student_dir = make_tiny_model(num_hidden_layers=2, hidden_size=32, intermediate_size=64)
    student = AutoModelForCausalLM.from_pretrained(student_dir)
    ids = torch.tensor([[1, 40, 41, 42, 43, 3], [1, 50, 51, 52, 53, 54]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    s_out = student(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    t_out = teacher(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    assert len(s_out.hidden_states) == 3 and len(t_out.hidden_states) == 5  # embeddings + layers
    lmap = LayerMap.uniform(2, 4)
    proj = HiddenProjector.for_map(lmap, 32, 64)
    loss = hidden_mse(s_out.hidden_states, t_out.hidden_states, proj, lmap, attn.bool())
    assert loss.requires_grad and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in proj.parameters())
    assert student.model.layers[0].mlp.down_proj.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


# ------------------------------------------------------------------------------- multi-teacher


def test_multi_teacher_objective_hand_numbers():
    t = torch.tensor
    ce = t(2.0, requires_grad=True)
    kl_a, mse_a, mse_b = t(0.5, requires_grad=True), t(3.0, requires_grad=True), t(5.0, requires_grad=True)
    teachers = [TeacherTerms("a", 0.75, kl=kl_a, mse=mse_a), TeacherTerms("b", 0.25, mse=mse_b)]
    loss, parts = multi_teacher_objective(ce, teachers, a=0.5, b=0.3, g=0.1)
    # 0.5*2 + 0.3*(0.75*0.5) + 0.1*(0.75*3 + 0.25*5) = 1 + 0.1125 + 0.35
    assert math.isclose(loss.item(), 1.4625, rel_tol=1e-6)
    assert parts == pytest.approx({"ce": 2.0, "kl/a": 0.5, "kl": 0.375, "mse/a": 3.0, "mse/b": 5.0,
                                   "mse": 3.5, "loss": 1.4625})
    loss.backward()
    assert float(mse_b.grad) == pytest.approx(0.1 * 0.25) and float(kl_a.grad) == pytest.approx(0.3 * 0.75)

    inf = t(float("inf"))
    loss, parts = multi_teacher_objective(
        ce, [TeacherTerms("a", 1.0, kl=inf, mse=t(1.0))], a=1.0, b=0.0, g=1.0,
        penalty=t(0.2), penalty_weight=0.5,
    )  # b = 0: the infinite KL is logged, not added
    assert loss.item() == pytest.approx(2.0 + 1.0 + 0.1) and math.isinf(parts["kl"])
    assert parts["shortcut"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        multi_teacher_objective(ce, [TeacherTerms("a", -1.0, kl=kl_a)], a=1, b=1, g=0)
    with pytest.raises(ValueError, match="names must be unique"):
        twice = [TeacherTerms("a", 1, kl=kl_a), TeacherTerms("a", 1, kl=kl_a)]
        multi_teacher_objective(ce, twice, a=1, b=1, g=0)
    with pytest.raises(ValueError, match="nothing to minimise"):
        multi_teacher_objective(None, [TeacherTerms("a", 0.0, kl=kl_a)], a=1, b=1, g=1)


def test_multi_teacher_with_tiny_models(tiny_llama_dir, make_tiny_model):
    """Two same-vocabulary teachers: KL through kd_loss and hidden MSE each; the total is the formula."""
    student = AutoModelForCausalLM.from_pretrained(make_tiny_model(num_hidden_layers=2, seed=1))
    teachers = {"t1": AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                "t2": AutoModelForCausalLM.from_pretrained(make_tiny_model(num_hidden_layers=3, seed=2))}
    ids = torch.tensor([[1, 60, 61, 62, 63, 64, 2]])
    labels = torch.tensor([[-100, -100, -100, 62, 63, 64, 2]])
    s = student(input_ids=ids, output_hidden_states=True)
    mask = labels[:, 1:] != -100
    terms, hand = [], 0.0
    ce = causal_lm_ce(s.logits, labels)
    for (name, model), w in zip(teachers.items(), (0.6, 0.4)):
        with torch.no_grad():
            t = model(input_ids=ids, output_hidden_states=True)
        kl = kd_loss(s.logits[:, :-1], t.logits[:, :-1], mask, temperature=2.0)
        lmap = LayerMap.uniform(2, model.config.num_hidden_layers)
        mse = hidden_mse(s.hidden_states, t.hidden_states, HiddenProjector.for_map(lmap, 64, 64), lmap)
        terms.append(TeacherTerms(name, w, kl=kl, mse=mse))
        hand += 0.2 * w * kl.item() + 0.05 * w * mse.item()
    loss, parts = multi_teacher_objective(ce, terms, a=0.5, b=0.2, g=0.05)
    assert math.isclose(loss.item(), 0.5 * ce.item() + hand, rel_tol=1e-5)
    assert set(parts) == {"ce", "kl/t1", "kl/t2", "kl", "mse/t1", "mse/t2", "mse", "loss"}
