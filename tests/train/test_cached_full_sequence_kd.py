"""Full-sequence KD (`positions: all`) from a top-k teacher cache holding every real position."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from distill2edge.config import DataConfig, DistillConfig, KDLossConfig
from distill2edge.data.qa import load_jsonl
from distill2edge.data.tokenize import collate, encode_for_training
from distill2edge.losses.sparse import sparse_teacher_targets
from distill2edge.models import load_model
from distill2edge.train.cached import CachedKD
from distill2edge.train.objectives import VanillaKD
from distill2edge.train.teacher_cache import (
    cache_key,
    collate_with_index,
    fingerprint_model_dir,
    topk_cache_key,
    with_example_index,
)
from distill2edge.train.teacher_cache_build import topk_cache
from distill2edge.train.trainers import run_distill

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


@pytest.fixture
def setup(tiny_llama_dir: Path, make_tiny_model, qa_jsonl: Path):
    """Teacher, student, tokenizer, 12 samples with their cache rows, and a padded batch of 5 of them."""
    teacher, tok = load_model(str(tiny_llama_dir))
    student, _ = load_model(str(make_tiny_model(seed=3)))
    feats = with_example_index([encode_for_training(tok, ex, TEMPLATE, 96) for ex in load_jsonl(qa_jsonl)[:12]])
    batch = collate_with_index(lambda f: collate(f, tok.pad_token_id), [feats[i] for i in (9, 2, 5, 0, 7)])
    assert not batch["attention_mask"].all(), "the case must hold padding"
    return teacher, student, tok, feats, batch


def _entry(teacher, tok, feats, root: Path, k: int, positions: str = "all"):
    key = topk_cache_key("fp", feats, len(tok), positions)
    return topk_cache(root, key, lambda: teacher, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=k,
                      temperature=2.0, batch_size=5, progress=False, positions=positions)[0]


def test_all_positions_entry_holds_the_teacher_at_every_real_position(setup, tmp_path: Path) -> None:
    teacher, _, tok, feats, batch = setup
    entry = _entry(teacher, tok, feats, tmp_path, k=8)
    assert entry.positions == "all" and entry.meta["positions"] == "all"
    assert entry.offsets.tolist()[1:] == torch.tensor([len(f["input_ids"]) - 1 for f in feats]).cumsum(0).tolist()
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    want = sparse_teacher_targets(logits[batch["attention_mask"][:, 1:].bool()], 8, 2.0)
    got = entry.targets(batch["example_index"])
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tail", ["rest_bin", "uniform"])
@pytest.mark.parametrize("share", [0.0, 0.25])
def test_full_vocabulary_entry_gives_the_online_loss_and_gradient(setup, tmp_path: Path, tail: str, share: float) -> None:
    """With k = the whole vocabulary, cached full-sequence KD is the online objective (value and gradient)."""
    teacher, student, tok, feats, batch = setup
    cfg = KDLossConfig(alpha=0.3, temperature=2.0)
    entry = _entry(teacher, tok, feats, tmp_path, k=len(tok))
    cached = CachedKD(entry, cfg, len(tok), len(tok), tail, positions="all", answer_share=share)(student, batch)
    cached["loss"].backward()
    got = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    online = VanillaKD(teacher, cfg, len(tok), positions="all", answer_share=share)(student, batch)
    online["loss"].backward()
    for term in ("loss", "ce", "kd"):
        assert float(cached[term].detach()) == pytest.approx(float(online[term].detach()), rel=1e-5, abs=1e-6), term
    for g, want in zip(got, (p.grad for p in student.parameters()), strict=True):
        torch.testing.assert_close(g, want, rtol=1e-3, atol=1e-6)


def test_small_k_is_finite_and_close_to_the_online_loss(setup, tmp_path: Path) -> None:
    """A random tiny teacher is nearly uniform over its 448 tokens, which no top-k summarises; with its head
    scaled x30 its next-token distribution is peaked like a trained model's, and a few tokens carry it."""
    teacher, student, tok, feats, batch = setup
    with torch.no_grad():
        teacher.lm_head.weight.mul_(30)
    cfg = KDLossConfig(alpha=1.0, temperature=1.0)
    key = topk_cache_key("fp", feats, len(tok), "all")
    entry = topk_cache(tmp_path, key, lambda: teacher, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=64,
                       temperature=1.0, batch_size=5, progress=False, positions="all")[0]
    online = float(VanillaKD(teacher, cfg, len(tok), positions="all")(student, batch)["kd"])
    gaps = []
    for k in (4, 16, 64):  # k < 64 read from the k=64 entry, the rest folded into the remaining mass
        kd = {tail: float(CachedKD(entry, cfg, len(tok), k, tail, positions="all")(student, batch)["kd"])
              for tail in ("uniform", "rest_bin")}
        assert all(map(math.isfinite, kd.values()))
        assert kd["rest_bin"] <= online + 1e-6  # coarsening never increases a divergence: a lower bound
        gaps.append(abs(kd["uniform"] - online))
    assert gaps[0] >= gaps[1] >= gaps[2]
    assert gaps[1] <= 0.03 * online  # top-16 of 448 tokens: within 3% (1.4% measured)


def test_answer_and_all_positions_entries_never_stand_in_for_each_other(setup, tiny_llama_dir: Path, tmp_path: Path) -> None:
    teacher, student, tok, feats, _ = setup
    fp = fingerprint_model_dir(tiny_llama_dir)
    answer, full = topk_cache_key(fp, feats, len(tok)), topk_cache_key(fp, feats, len(tok), "all")
    assert answer == cache_key(fp, feats, vocab=len(tok))  # answer-only keys as before: old entries stay valid
    assert full != answer
    with pytest.raises(ValueError, match="positions"):
        topk_cache_key(fp, feats, len(tok), "prompt")
    # even in one key folder, an answer entry does not serve all positions: a second entry is built
    a = topk_cache(tmp_path, "same", lambda: teacher, feats, pad_id=tok.pad_token_id, vocab_size=len(tok), k=8,
                   temperature=2.0, progress=False)[0]
    b, stats = topk_cache(tmp_path, "same", lambda: teacher, feats, pad_id=tok.pad_token_id, vocab_size=len(tok),
                          k=8, temperature=2.0, progress=False, positions="all")
    assert not stats.hit and a.path != b.path and (a.positions, b.positions) == ("answer", "all")
    assert "positions" not in a.meta  # answer-only metas unchanged
    with pytest.raises(ValueError, match="holds answer positions"):
        CachedKD(a, KDLossConfig(), len(tok), 8, positions="all")


def test_cached_full_sequence_run_reproduces_the_online_run(tiny_llama_dir: Path, make_tiny_model, qa_jsonl: Path,
                                                            tmp_path: Path) -> None:
    """`run_distill` end to end: cache + positions: all with the full vocabulary trains as the online run."""
    student = make_tiny_model(seed=3)
    rows = load_jsonl(qa_jsonl)
    splits = {"train": rows[:12], "validation": rows[12:16]}
    data = DataConfig(source=str(qa_jsonl), max_length=96)
    train = {"epochs": 2, "batch_size": 4, "lr": 2e-3, "checkpoint_every": 2, "early_stopping": None,
             "scheduler": "constant"}

    def distill(name: str, **cfg) -> object:
        dcfg = DistillConfig(algorithm="vanilla", positions="all", answer_kd_share=0.2, train=train, **cfg)
        return run_distill(str(tiny_llama_dir), str(student), splits, data, dcfg, tmp_path / name / "model",
                           tmp_path / name / "work", device=torch.device("cpu"), progress=False,
                           cache_root=tmp_path / "cache")

    online = distill("online")
    cached = distill("cached", cache={"enabled": True, "top_k": 100_000, "batch_size": 3})
    assert cached.info["kd_positions"] == "all" and cached.info["teacher_cache_hit"] is False
    assert "topk-all-k" in cached.info["teacher_cache"]
    a, b = ([h for h in out.result.history if "loss" in h] for out in (online, cached))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4), (x, y)
        assert y["kd"] == pytest.approx(x["kd"], rel=1e-4)
    small = distill("small", cache={"enabled": True, "top_k": 8})
    assert small.info["teacher_cache_hit"] is True  # the full-vocabulary all-positions entry serves k=8
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in small.result.history if "loss" in h)
