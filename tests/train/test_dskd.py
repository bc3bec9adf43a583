"""The DSKD objective on tiny models: two tokenizations, gradient flow, training, resume, errors."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch

from distill2edge.config import DistillConfig, TrainConfig
from distill2edge.data.qa import load_jsonl
from distill2edge.data.tokenize import TEACHER_PREFIX, collate_pair, encode_for_training
from distill2edge.losses.cma import grid_hidden_moments
from distill2edge.losses.dskd import DSKDConfigError, DSKDProjectors
from distill2edge.models import load_model
from distill2edge.train.algorithms import build_algorithm
from distill2edge.train.dskd import DSKDObjective
from distill2edge.train.loop import train

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


def _features(s_tok, t_tok, examples, max_length=96):
    out = []
    for ex in examples:
        f = encode_for_training(s_tok, ex, TEMPLATE, max_length)
        t = encode_for_training(t_tok, ex, TEMPLATE, max_length)
        out.append({**f, **{TEACHER_PREFIX + k: v for k, v in t.items()}})
    return out


@pytest.fixture
def pair(tiny_llama_dir: Path, tiny_teacher_b_dir: Path, qa_jsonl: Path):
    student, s_tok = load_model(str(tiny_llama_dir))
    teacher, t_tok = load_model(str(tiny_teacher_b_dir))
    examples = load_jsonl(qa_jsonl)[:8]
    return student, s_tok, teacher, t_tok, examples


def _batch(s_tok, t_tok, examples):
    return collate_pair(_features(s_tok, t_tok, examples), s_tok.pad_token_id, t_tok.pad_token_id)


def test_cma_is_chosen_for_different_vocabularies_and_gradients_flow(pair) -> None:
    student, s_tok, teacher, t_tok, examples = pair
    teacher.requires_grad_(True)  # left trainable on purpose: any gradient path into it would show up
    setup = build_algorithm("dskd", teacher, student, t_tok, s_tok, DistillConfig(algorithm="dskd"))
    assert setup.teacher_tokenizer is t_tok and setup.info["dskd_variant"] == "cross-model attention"
    assert setup.aux.s2t.weight.shape == (48, 64) and setup.aux.query.weight.shape == (96, 128)
    out = setup.objective(student, _batch(s_tok, t_tok, examples[:4]))
    assert all(math.isfinite(float(v)) for v in out.values())
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    for name, p in setup.aux.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert student.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert student.lm_head.weight.grad.abs().sum() > 0


def test_same_weights_same_vocabulary_gives_zero_kd(tiny_llama_dir: Path, qa_jsonl: Path) -> None:
    student, tok = load_model(str(tiny_llama_dir))
    teacher, _ = load_model(str(tiny_llama_dir))
    setup = build_algorithm("dskd", teacher, student, tok, tok, DistillConfig(algorithm="dskd"))
    assert setup.teacher_tokenizer is None and setup.info["dskd_variant"].startswith("dual space")
    feats = [encode_for_training(tok, ex, TEMPLATE, 96) for ex in load_jsonl(qa_jsonl)[:4]]
    from distill2edge.data.tokenize import collate

    with torch.no_grad():
        out = setup.objective(student, collate(feats, tok.pad_token_id))
    assert float(out["kd_student_space"]) == pytest.approx(0.0, abs=1e-5)
    assert float(out["kd_teacher_space"]) == pytest.approx(0.0, abs=1e-5)
    assert float(out["t2s_ce"]) == pytest.approx(float(out["ce"]), rel=1e-5)  # the projection is the identity


def _train(student, teacher, s_tok, t_tok, feats, work: Path, stop_after=None, steps=6):
    torch.manual_seed(0)
    setup = build_algorithm("dskd", teacher, student, t_tok, s_tok, DistillConfig(algorithm="dskd"))
    cfg = TrainConfig(epochs=steps, batch_size=4, lr=3e-3, checkpoint_every=1, early_stopping=None, warmup_ratio=0.0,
                      scheduler="constant")
    collate_fn = partial(collate_pair, pad_id=s_tok.pad_token_id, teacher_pad_id=t_tok.pad_token_id)
    return train(
        student, setup.objective, feats, [], cfg, work, pad_id=s_tok.pad_token_id, progress=False,
        aux=setup.aux, aux_lr=1e-2, collate_fn=collate_fn, stop_after_step=stop_after,
    ), setup


def test_dskd_cma_losses_decrease(pair, tmp_path: Path) -> None:
    student, s_tok, teacher, t_tok, examples = pair
    feats = _features(s_tok, t_tok, examples[:4])
    result, _setup = _train(student, teacher, s_tok, t_tok, feats, tmp_path / "w", steps=8)
    rows = [h for h in result.history if "loss" in h]
    assert len(rows) == 8
    for key in ("loss", "ce", "kd", "t2s_ce", "kd_teacher_space"):
        assert all(math.isfinite(r[key]) for r in rows)
        assert rows[-1][key] < rows[0][key], (key, rows[0][key], rows[-1][key])
    assert result.history[-1]["lr"] == pytest.approx(3e-3)


def test_dskd_resume_restores_projectors(tiny_llama_dir, tiny_teacher_b_dir, qa_jsonl, tmp_path: Path) -> None:
    """A run killed after step 3 and resumed reproduces the uninterrupted losses (projector weights and
    their optimizer state live in the checkpoint)."""
    examples = load_jsonl(qa_jsonl)[:8]

    def fresh():
        s, s_tok = load_model(str(tiny_llama_dir))
        t, t_tok = load_model(str(tiny_teacher_b_dir))
        return s, t, s_tok, t_tok

    s, t, s_tok, t_tok = fresh()
    feats = _features(s_tok, t_tok, examples)
    full, _ = _train(s, t, s_tok, t_tok, feats, tmp_path / "a", steps=3)
    s, t, *_ = fresh()
    with pytest.raises(RuntimeError, match="stopped after step 3"):
        _train(s, t, s_tok, t_tok, feats, tmp_path / "b", stop_after=3, steps=3)
    s, t, *_ = fresh()
    resumed, _ = _train(s, t, s_tok, t_tok, feats, tmp_path / "b", steps=3)
    a = [h["loss"] for h in full.history if "loss" in h]
    b = [h["loss"] for h in resumed.history if "loss" in h]
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, abs=1e-6)


def test_misconfigured_pairs_fail_clearly(pair) -> None:
    student, s_tok, teacher, t_tok, examples = pair
    teacher.config.hidden_size = 40
    with pytest.raises(DSKDConfigError, match="teacher: config.hidden_size is 40 but its LM head takes inputs of size 48"):
        build_algorithm("dskd", teacher, student, t_tok, s_tok, DistillConfig(algorithm="dskd"))
    teacher.config.hidden_size = 48
    wrong = DSKDProjectors(64, 40, cma=True)
    objective = DSKDObjective(
        teacher=teacher, projectors=wrong, loss=DistillConfig().loss, cma=True,
        student_pad_id=s_tok.pad_token_id, teacher_pad_id=t_tok.pad_token_id,
    )
    with pytest.raises(DSKDConfigError, match="teacher hidden size 40.*size 48"):
        objective(student, _batch(s_tok, t_tok, examples[:2]))
    with pytest.raises(Exception, match="DSKD"):
        build_algorithm("vanilla", teacher, student, t_tok, s_tok, DistillConfig())


@pytest.mark.parametrize("vocab", ["shared", "different"])
def test_objective_forms_student_logits_in_chunks_as_the_full_logits_would(
    vocab: str, pair, tiny_llama_dir: Path, make_tiny_model
) -> None:
    """The objective never asks the student for [B, K, V] logits; its loss and gradients equal those computed
    from the logits at the answer positions (masked CE, and the DSKD terms given those logits)."""
    from distill2edge.train.objectives import answer_positions, masked_ce

    student, s_tok, teacher, t_tok, examples = pair
    if vocab == "shared":
        teacher, t_tok = load_model(str(make_tiny_model(num_hidden_layers=3)))
    setup = build_algorithm("dskd", teacher, student, t_tok, s_tok, DistillConfig(algorithm="dskd", dskd={"chunk_tokens": 3}))
    obj = setup.objective
    batch = _batch(s_tok, t_tok, examples[:4])
    chunked = obj(student, batch)
    chunked["loss"].backward()
    grads = {n: p.grad.clone() for n, p in [*student.named_parameters(), *setup.aux.named_parameters()] if p.grad is not None}
    student.zero_grad(), setup.aux.zero_grad()

    keep, targets = answer_positions(batch["labels"])
    out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
                  logits_to_keep=keep)
    t_keep, _ = obj.teacher_positions(batch, keep, targets)
    prefix = TEACHER_PREFIX if obj.cma else ""
    with torch.no_grad():
        t_last = teacher(input_ids=batch[prefix + "input_ids"], attention_mask=batch[prefix + "attention_mask"],
                         output_hidden_states=True).hidden_states[-1]
    terms = obj.kd_terms(student, out.logits, out.hidden_states[-1][:, keep], keep, targets, batch,
                         t_last[:, t_keep], grid_hidden_moments(t_last))
    a = obj.loss.alpha
    ce = masked_ce(out.logits, targets)
    full = (1 - a) * ce + a * terms["kd"]
    full.backward()
    assert float(chunked["loss"].detach()) == pytest.approx(float(full.detach()), rel=1e-5)
    assert float(chunked["ce"]) == pytest.approx(float(ce), rel=1e-5)
    ref = {n: p.grad for n, p in [*student.named_parameters(), *setup.aux.named_parameters()] if p.grad is not None}
    assert ref.keys() == grads.keys()
    assert any(n.endswith(("lm_head.weight", "embed_tokens.weight")) for n in ref)  # the head is trained
    for name, g in ref.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
