"""Anti-shortcut penalties: hand computations, registry, and the imbalanced toy set on which training
with CE alone collapses onto the majority class while CE + label_prior_kl does not."""

from __future__ import annotations

import math

import pytest
import torch

from distill2edge.evaluate.classify import macro_f1, per_class
from distill2edge.losses.shortcut import (
    DEFAULT_TEMPERATURE,
    class_logits_from_lm,
    get_shortcut_penalty,
    label_prior,
    shortcut_penalty,
    shortcut_penalty_names,
)

LABELS = ("majority", "minority_a", "minority_b")


def test_registry():
    assert shortcut_penalty_names()[:3] == ["none", "label_prior_kl", "label_prior_reverse_kl"]
    with pytest.raises(ValueError, match="unknown shortcut penalty 'nope'; registered: none, label_prior_kl"):
        get_shortcut_penalty("nope")


def test_label_prior():
    prior = label_prior(["a", "a", "a", "b"], ["a", "b", "c"], smoothing=1.0)
    torch.testing.assert_close(prior, torch.tensor([4 / 7, 2 / 7, 1 / 7]))
    unsmoothed = label_prior(["a", "b", "b", "b"], ["a", "b"], smoothing=0.0)
    torch.testing.assert_close(unsmoothed, torch.tensor([0.25, 0.75]))
    with pytest.raises(ValueError, match=r"labels \['z'\] are not in the label set"):
        label_prior(["z"], ["a", "b"])


def test_penalties_match_hand_computation():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], requires_grad=True)
    prior = torch.tensor([0.6, 0.3, 0.1])
    for temp in (1.0, 0.5):
        p = [[math.exp(v / temp) for v in row] for row in z.tolist()]
        p = [[v / sum(row) for v in row] for row in p]
        q = [(p[0][c] + p[1][c]) / 2 for c in range(3)]
        fwd = sum(pi * math.log(pi / qc) for pi, qc in zip(prior.tolist(), q))
        rev = sum(qc * math.log(qc / pi) for pi, qc in zip(prior.tolist(), q))
        got = shortcut_penalty(z, prior, "label_prior_kl", temperature=temp).item()
        assert got == pytest.approx(fwd, rel=1e-5)
        got = shortcut_penalty(z, prior, "label_prior_reverse_kl", temperature=temp).item()
        assert got == pytest.approx(rev, rel=1e-5)
    zero = shortcut_penalty(z, prior, "none")
    assert zero.item() == 0.0
    zero.backward()  # attached to the graph
    # A class with prior 0 contributes nothing, even where the batch never predicts it.
    no_c = torch.tensor([0.5, 0.5, 0.0])
    collapsed = torch.tensor([[10.0, 10.0, -1e4]])
    got = shortcut_penalty(collapsed, no_c, "label_prior_kl", temperature=1.0).item()
    assert got == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="prior must be a probability vector"):
        shortcut_penalty(z, torch.tensor([0.5, 0.6, 0.1]), "label_prior_kl")
    with pytest.raises(ValueError, match=r"expected class_logits \[B, C\] and prior \[C\]"):
        shortcut_penalty(z, torch.tensor([0.5, 0.5]), "label_prior_kl")


def test_class_logits_from_lm():
    logits = torch.arange(2 * 4 * 10, dtype=torch.float32).view(2, 4, 10)
    got = class_logits_from_lm(logits, torch.tensor([1, 2]), [7, 3, 5])
    torch.testing.assert_close(got, torch.stack([logits[0, 1, [7, 3, 5]], logits[1, 2, [7, 3, 5]]]))
    with pytest.raises(ValueError, match="must be distinct"):
        class_logits_from_lm(logits, torch.tensor([1, 2]), [7, 7, 5])


# ------------------------------------------------------------------- the imbalanced toy set
# Three classes, 80/12/8, two features whose class means lie one standard deviation apart: the
# evidence is weak, so a CE-trained linear classifier learns "always answer the majority class" (the
# paper's shortcut). Measured (this test, CPU): CE alone predicts the majority class for ~99% of the
# test set (98.9%), minority recalls 0.04 / 0.02; with label_prior_kl (weight 1, T = 0.3) 88.4 / 6.3 /
# 5.3% of predictions go to the three classes, minority recalls 0.22 / 0.24, macro-F1 0.34 -> 0.48.
# One thread: a few hundred tiny steps run in ~0.4 s; thread hand-offs on a busy CPU cost 10x that.


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.multinomial(torch.tensor([0.80, 0.12, 0.08]), n, replacement=True, generator=g)
    means = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    return means[y] + torch.randn(n, 2, generator=g), y


def _train(penalty: str, temperature: float = DEFAULT_TEMPERATURE) -> dict:
    torch.manual_seed(0)
    x, y = _toy(2000, 0)
    prior = label_prior([LABELS[i] for i in y.tolist()], LABELS, smoothing=0.0)
    model = torch.nn.Linear(2, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        idx = torch.randint(0, len(y), (64,), generator=g)
        z = model(x[idx])
        loss = torch.nn.functional.cross_entropy(z, y[idx])
        loss = loss + shortcut_penalty(z, prior, penalty, temperature=temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, yt = _toy(2000, 99)
    with torch.no_grad():
        pred = model(xt).argmax(-1)
    gold, guess = [LABELS[i] for i in yt.tolist()], [LABELS[i] for i in pred.tolist()]
    report = per_class(gold, guess, LABELS)
    return {
        "predicted_share": [report[c]["predicted"] / len(gold) for c in LABELS],
        "recall": [report[c]["recall"] for c in LABELS],
        "macro_f1": macro_f1(gold, guess, LABELS),
    }


def test_penalty_prevents_majority_collapse():
    plain = _train("none")
    fixed = _train("label_prior_kl")
    # Without the penalty: (almost) every answer is the majority class; minorities are never found.
    assert plain["predicted_share"][0] > 0.95, plain
    assert max(plain["recall"][1:]) < 0.10, plain
    # With it: every class is predicted at a sizeable rate and found, and macro-F1 rises.
    assert all(s > 0.03 for s in fixed["predicted_share"]) and fixed["predicted_share"][0] < 0.92, fixed
    assert min(fixed["recall"][1:]) > 0.15, fixed
    assert fixed["macro_f1"] > plain["macro_f1"] + 0.08, (plain, fixed)


def test_unit_temperature_does_not_prevent_collapse():
    """Why the default temperature is below 1: a calibrated CE model's mean soft prediction already
    matches the prior, so at T = 1 the penalty is near zero while the arg-max has collapsed."""
    soft = _train("label_prior_kl", temperature=1.0)
    assert soft["predicted_share"][0] > 0.95, soft
