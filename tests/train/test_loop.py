"""The training loop: resume reproduces an uninterrupted run, early stopping, non-finite loss, atomicity."""

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel

from distill2edge.config import EarlyStoppingConfig, LoraConfig, TrainConfig
from distill2edge.data.tokenize import IGNORE_INDEX
from distill2edge.train.loop import NonFiniteLossError, SimulatedKill, train
from distill2edge.train.lora import apply_lora
from distill2edge.train.objectives import answer_positions, sft_objective
from tests.factory import tiny_model

VOCAB = 64
"""The token ids of `data` are drawn below it."""


def llama() -> PreTrainedModel:
    """The factory's tiny llama (seed 0) over the `VOCAB` token ids of `data`."""
    return tiny_model(vocab_size=VOCAB)


def data(n: int = 12, seed: int = 0) -> list[dict[str, list[int]]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        plen, alen = 4 + i % 5, 2 + i % 3
        ids = torch.randint(3, VOCAB, (plen + alen,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * plen + ids[plen:]})
    return out


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, grad_accum=2, lr=1e-2, checkpoint_every=2, early_stopping=None, seed=3)
    return TrainConfig(**{**base, **kw})


def losses(result) -> list[float]:
    return [h["loss"] for h in result.history if "loss" in h]


@pytest.mark.parametrize("use_lora", [False, True])
def test_resume_after_kill_matches_uninterrupted(tmp_path: Path, use_lora: bool):
    """Kill after step 3 (last checkpoint at step 2), resume: every loss equals the uninterrupted run."""

    def model():
        m = llama()
        return apply_lora(m, LoraConfig(r=4, alpha=8, dropout=0.1)) if use_lora else m

    ref = train(model(), sft_objective, data(), data(4, 1), cfg(), tmp_path / "a", pad_id=0, progress=False)
    m = model()
    with pytest.raises(SimulatedKill):
        train(m, sft_objective, data(), data(4, 1), cfg(), tmp_path / "b", pad_id=0, progress=False, stop_after_step=3)
    resumed = train(model(), sft_objective, data(), data(4, 1), cfg(), tmp_path / "b", pad_id=0, progress=False)
    assert ref.steps == resumed.steps == 6  # 12 examples / (4 x 2) -> 2 steps per epoch, 3 epochs
    assert len(losses(ref)) == 6
    assert losses(resumed) == pytest.approx(losses(ref), abs=1e-6, rel=0)
    assert resumed.best_val_loss == pytest.approx(ref.best_val_loss, abs=1e-6)


def test_loss_decreases_and_best_weights_are_restored(tmp_path):
    m = llama()
    r = train(m, sft_objective, data(), data(4, 1), cfg(epochs=8, grad_accum=1), tmp_path, pad_id=0, progress=False)
    train_losses = losses(r)
    assert train_losses[-1] < train_losses[0] * 0.8
    vals = [h["val_loss"] for h in r.history if "val_loss" in h]
    assert len(vals) == 8 and r.best_val_loss == min(vals)
    from distill2edge.data.tokenize import collate
    from distill2edge.train.loop import evaluate_loss

    pad0 = lambda feats: collate(feats, 0)  # noqa: E731
    assert evaluate_loss(m, sft_objective, data(4, 1), 4, pad0, torch.device("cpu"), "fp32")["loss"] == pytest.approx(min(vals), abs=1e-5)


def test_best_by_token_f1_keeps_the_weights_that_answered_best(tmp_path):
    """best_by: token_f1 restores the step with the highest probed F1, not the lowest validation loss."""
    f1s = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.1, 0.2, 0.3])
    m = llama()
    r = train(m, sft_objective, data(), data(4, 1), cfg(epochs=8, grad_accum=1, eval_answers=4, best_by="token_f1"),
              tmp_path, pad_id=0, progress=False, probe=lambda _model: {"token_f1": next(f1s)})
    vals = {h["step"]: h["val_loss"] for h in r.history if "val_loss" in h}
    f1_by_step = {h["step"]: h["val_token_f1"] for h in r.history if "val_token_f1" in h}
    assert r.best_by == "token_f1" and f1_by_step[r.best_step] == 0.5
    assert r.best_step == sorted(vals)[1] and r.best_val_loss == vals[r.best_step]
    assert r.best_val_loss != min(vals.values())  # the loss kept falling; F1 chose an earlier step
    from distill2edge.data.tokenize import collate
    from distill2edge.train.loop import evaluate_loss

    pad0 = lambda feats: collate(feats, 0)  # noqa: E731
    restored = evaluate_loss(m, sft_objective, data(4, 1), 4, pad0, torch.device("cpu"), "fp32")["loss"]
    assert restored == pytest.approx(vals[r.best_step], abs=1e-5)


def test_best_by_token_f1_needs_answers():
    with pytest.raises(ValueError, match="eval_answers"):
        cfg(best_by="token_f1")


def test_early_stopping(tmp_path):
    # Validation on different random data cannot improve by 10 nats: stop after `patience` evaluations.
    es = EarlyStoppingConfig(patience=2, min_delta=10.0)
    r = train(llama(), sft_objective, data(), data(4, 1), cfg(epochs=10, early_stopping=es), tmp_path,
              pad_id=0, progress=False)
    assert r.stopped_early and r.epochs_completed == 3  # first validation sets the best, two more fail


def test_max_steps_and_grad_accum(tmp_path):
    r = train(llama(), sft_objective, data(), None, cfg(max_steps=5, grad_accum=1), tmp_path, pad_id=0,
              progress=False)
    assert r.steps == 5 and r.best_val_loss is None


def test_non_finite_loss_names_the_step(tmp_path):
    calls = {"n": 0}

    def bad(model, batch):
        calls["n"] += 1
        out = sft_objective(model, batch)
        return {"loss": out["loss"] * (float("nan") if calls["n"] == 3 else 1.0)}

    with pytest.raises(NonFiniteLossError, match="step 2"):
        train(llama(), bad, data(), None, cfg(), tmp_path, pad_id=0, progress=False)


def test_checkpoint_written_atomically(tmp_path):
    with pytest.raises(SimulatedKill):
        train(llama(), sft_objective, data(), None, cfg(), tmp_path, pad_id=0, progress=False, stop_after_step=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert {p.name for p in (tmp_path / "checkpoint").iterdir()} == {
        "trainable.pt", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"}


def test_answer_positions_shift():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6], [IGNORE_INDEX, 7, 8, IGNORE_INDEX]])
    keep, targets = answer_positions(labels)
    assert keep.tolist() == [0, 1, 2]  # logits at t predict labels[t + 1]
    assert targets.tolist() == [[IGNORE_INDEX, 5, 6], [7, 8, IGNORE_INDEX]]


def test_sft_objective_equals_full_shifted_ce():
    m = llama()
    batch = {k: torch.tensor([d[k] for d in data(3)[:1]]) for k in ("input_ids", "labels")}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    logits = m(input_ids=batch["input_ids"]).logits
    ref = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:], ignore_index=IGNORE_INDEX)
    assert sft_objective(m, batch)["loss"].item() == pytest.approx(ref.item(), abs=1e-5)


def test_resume_says_from_which_step(tmp_path, capsys):
    """Issue 17: a resumed stage prints the step its checkpoint holds."""
    with pytest.raises(SimulatedKill):
        train(llama(), sft_objective, data(), None, cfg(), tmp_path, pad_id=0, progress=False, stop_after_step=3)
    assert "resumed" not in capsys.readouterr().out
    train(llama(), sft_objective, data(), None, cfg(max_steps=4), tmp_path, pad_id=0, progress=False, desc="sft x")
    assert "[sft x] resumed from step 2 (epoch 1)" in capsys.readouterr().out
