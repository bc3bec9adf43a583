"""Full-sequence vanilla KD (`positions: all`): KD at every real position, CE on the answer tokens only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill2edge.config import DistillConfig, KDLossConfig
from distill2edge.data.qa import load_jsonl
from distill2edge.data.tokenize import IGNORE_INDEX, collate, encode_for_training
from distill2edge.models import load_model
from distill2edge.train.objectives import VanillaKD

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


@pytest.fixture
def pair_and_batch(tiny_llama_dir, make_tiny_model, qa_jsonl):
    teacher, tok = load_model(str(tiny_llama_dir))
    student, _ = load_model(str(make_tiny_model(seed=3)))
    feats = [encode_for_training(tok, ex, TEMPLATE, 96) for ex in load_jsonl(qa_jsonl)[:5]]
    batch = collate(feats, tok.pad_token_id)
    assert not batch["attention_mask"].all(), "the case must hold padding"
    return teacher, student, tok, batch


def _by_hand(teacher, student, batch, t: float, alpha: float):
    """Written from the definition with plain torch: KL(p_t^T || p_s^T) averaged over every position t whose
    token t+1 is real; CE averaged over the answer tokens."""
    ids, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    zs = student(input_ids=ids, attention_mask=am).logits[:, :-1]
    with torch.no_grad():
        zt = teacher(input_ids=ids, attention_mask=am).logits[:, :-1]
    real = am[:, 1:].bool()
    log_ps, log_pt = F.log_softmax(zs[real] / t, -1), F.log_softmax(zt[real] / t, -1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()  # no T² (as TRL GKD and torchtune; issue 15)
    answer = labels[:, 1:] != IGNORE_INDEX
    ce = F.cross_entropy(zs[answer], labels[:, 1:][answer])
    return (1 - alpha) * ce + alpha * kl, ce, kl


@pytest.mark.parametrize("fused", [None, 97], ids=["logits", "fused"])
@pytest.mark.parametrize("t", [1.0, 2.0])
def test_full_sequence_kd_equals_the_definition_in_value_and_gradient(pair_and_batch, fused, t) -> None:
    teacher, student, tok, batch = pair_and_batch
    objective = VanillaKD(teacher, KDLossConfig(alpha=0.3, temperature=t, fused_vocab_chunk=fused), len(tok),
                          positions="all")
    out = objective(student, batch)
    out["loss"].backward()
    got = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    loss, ce, kl = _by_hand(teacher, student, batch, t, 0.3)
    loss.backward()
    assert float(out["ce"]) == pytest.approx(float(ce.detach()), rel=1e-5)
    assert float(out["kd"]) == pytest.approx(float(kl.detach()), rel=1e-4, abs=1e-6)  # float32 sums in another order
    assert float(out["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    for g, want in zip(got, (p.grad for p in student.parameters())):
        torch.testing.assert_close(g, want, rtol=1e-3, atol=1e-6)


def test_all_positions_differ_from_answer_positions(pair_and_batch) -> None:
    teacher, student, tok, batch = pair_and_batch
    cfg = KDLossConfig(alpha=0.5, temperature=1.0)
    answer = VanillaKD(teacher, cfg, len(tok))(student, batch)
    full = VanillaKD(teacher, cfg, len(tok), positions="all")(student, batch)
    assert float(answer["ce"]) == pytest.approx(float(full["ce"]), rel=1e-5)  # same CE, on the answers
    assert float(answer["kd"]) != pytest.approx(float(full["kd"]), rel=1e-3)


def test_positions_all_is_refused_where_it_does_not_apply() -> None:
    assert DistillConfig(algorithm="vanilla", positions="all").positions == "all"
    with pytest.raises(ValueError, match="positions: all is full-sequence vanilla KD"):
        DistillConfig(algorithm="dskd", positions="all")
    assert DistillConfig(algorithm="vanilla", positions="all", cache={"enabled": True}).cache.enabled
    with pytest.raises(ValueError, match="positions: all is full-sequence vanilla KD .*not algorithm 'dskd'"):
        DistillConfig(algorithm="dskd", positions="all", cache={"enabled": True})
    assert "positions" not in DistillConfig().model_dump()  # old stage keys unchanged at the default


def test_answer_kd_share_splits_the_kd_term_by_definition(pair_and_batch) -> None:
    """kd = (1 - share)·KL(every real position) + share·KL(answer tokens), written out with plain torch."""
    teacher, student, tok, batch = pair_and_batch
    out = VanillaKD(teacher, KDLossConfig(alpha=0.4, temperature=1.0), len(tok), positions="all",
                    answer_share=0.25)(student, batch)
    ids, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        zs = student(input_ids=ids, attention_mask=am).logits[:, :-1]
        zt = teacher(input_ids=ids, attention_mask=am).logits[:, :-1]

    def kl(mask: torch.Tensor) -> torch.Tensor:
        log_ps, log_pt = F.log_softmax(zs[mask], -1), F.log_softmax(zt[mask], -1)
        return (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()

    answer = labels[:, 1:] != IGNORE_INDEX
    want = 0.75 * kl(am[:, 1:].bool()) + 0.25 * kl(answer)
    assert float(out["kd"]) == pytest.approx(float(want), rel=1e-4)
    assert float(kl(answer)) != pytest.approx(float(kl(am[:, 1:].bool())), rel=1e-3)  # the split matters here


def test_answer_kd_share_needs_full_sequence_kd() -> None:
    assert DistillConfig(positions="all", answer_kd_share=0.5).answer_kd_share == 0.5
    with pytest.raises(ValueError, match="answer_kd_share"):
        DistillConfig(positions="answer", answer_kd_share=0.5)
    with pytest.raises(ValueError, match="answer_kd_share"):
        DistillConfig(positions="all", answer_kd_share=0.5, loss={"fused_vocab_chunk": 64})
    assert "answer_kd_share" not in DistillConfig(positions="all").model_dump()
