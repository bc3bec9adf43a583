"""Multi-teacher KD on tiny models: the loss against a hand computation, gradient flow, layer-map and
vocabulary errors, resume with per-module projector learning rates."""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distill2edge.config import DataConfig, DistillConfig, TrainConfig
from distill2edge.data.classify import ClassExample
from distill2edge.data.tokenize import IGNORE_INDEX, collate_multi, teacher_prefix
from distill2edge.models import load_model
from distill2edge.train.loop import SimulatedKill, train
from distill2edge.train.multi import MultiTeacherConfigError, build_multi_teacher
from distill2edge.train.trainers import encode_all

LABELS = ["sends", "receives", "reports"]
DATA = DataConfig(
    task="classification", source="x.jsonl", format="jsonl", labels=LABELS, max_length=160, prompt_template="{text}\nAnswer:"
)


def _examples(n: int = 12) -> list[ClassExample]:
    subjects = ["The UE", "The gNB", "The AMF", "The cell"]
    return [
        ClassExample(f"e{i}", f"{subjects[i % 4]} {LABELS[i % 3]} the RSRP in LTE.", LABELS[i % 3]) for i in range(n)
    ]


@pytest.fixture
def trio(tiny_llama_dir: Path, tiny_teacher_b_dir: Path, make_tiny_model):
    """Student: 2-layer llama (hidden 32). Teacher `same`: 4-layer llama with the student's tokenizer
    (hidden 64). Teacher `other`: gemma3 with another tokenizer (hidden 48)."""
    student, s_tok = load_model(str(make_tiny_model(num_hidden_layers=2, hidden_size=32, intermediate_size=64)))
    same, same_tok = load_model(str(tiny_llama_dir))
    other, other_tok = load_model(str(tiny_teacher_b_dir))
    for t in (same, other):
        t.requires_grad_(True)  # left trainable on purpose: a gradient path into a teacher would show up
    return student, s_tok, {"same": (same, same_tok), "other": (other, other_tok)}


def _cfg(**kw) -> DistillConfig:
    base = {
        "algorithm": "multi_teacher", "teachers": {"same": 0.7, "other": 0.3},
        "loss": {"alpha": 0.6, "temperature": 2.0}, "hidden": {"weight": 0.5, "normalize": False},
        "shortcut": {"name": "label_prior_kl", "weight": 0.4, "temperature": 0.5},
    }
    base.update(kw)
    return DistillConfig.model_validate(base)


def _features(extra, s_tok, examples):
    """Student features plus each other-vocabulary teacher's tokenization; the pad ids per prefix."""
    rows = encode_all(s_tok, examples, DATA)
    for prefix, tok in extra.items():
        rows = [{**r, **{prefix + k: v for k, v in o.items()}} for r, o in zip(rows, encode_all(tok, examples, DATA))]
    return rows, {"": s_tok.pad_token_id, **{p: t.pad_token_id for p, t in extra.items()}}


def _batch(extra, s_tok, examples):
    return collate_multi(*_features(extra, s_tok, examples))


def test_loss_matches_hand_computation(trio) -> None:
    student, s_tok, teachers = trio
    examples = _examples(6)
    cfg = _cfg()
    setup, extra = build_multi_teacher(teachers, student, s_tok, cfg, DATA, [e.label for e in _examples(12)])
    assert list(extra) == [teacher_prefix("other")]
    assert setup.info["kd/same"] == "logits" and setup.info["kd/other"] == "none"
    batch = _batch(extra, s_tok, examples)
    out = setup.objective(student, batch)

    # By hand: full-sequence forwards, then each term from its definition.
    s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    labels = batch["labels"]
    shift_logits, shift_labels = s.logits[:, :-1], labels[:, 1:]
    answer = shift_labels != IGNORE_INDEX
    ce = F.cross_entropy(shift_logits[answer], shift_labels[answer])
    with torch.no_grad():
        same_model, _ = teachers["same"]
        ts = same_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        p = teacher_prefix("other")
        other_model, _ = teachers["other"]
        to = other_model(input_ids=batch[p + "input_ids"], attention_mask=batch[p + "attention_mask"], output_hidden_states=True)
    T = 2.0
    log_p_t = torch.log_softmax(ts.logits[:, :-1][answer] / T, -1)
    log_p_s = torch.log_softmax(shift_logits[answer] / T, -1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()  # no T² (loss.hinton_t2 off, issue 15)

    proj = setup.aux
    mask = batch["attention_mask"].bool()
    # student layers 1, 2 -> same-teacher layers 2, 4 (uniform 2 -> 4), token by token over valid positions
    mse_same = sum(
        ((proj["hidden_same"].proj[str(ls)](s.hidden_states[ls][mask]) - ts.hidden_states[lt][mask]) ** 2).mean()
        for ls, lt in ((1, 2), (2, 4))
    )
    # other teacher: mean-pooled over each model's own valid positions
    t_mask = batch[p + "attention_mask"].unsqueeze(-1).float()
    s_m = batch["attention_mask"].unsqueeze(-1).float()
    mse_other = sum(
        ((proj["hidden_other"].proj[str(ls)]((s.hidden_states[ls] * s_m).sum(1) / s_m.sum(1))
          - (to.hidden_states[lt] * t_mask).sum(1) / t_mask.sum(1)) ** 2).mean()
        for ls, lt in ((1, 2), (2, 4))
    )
    # shortcut: label scores = logits of each label's first token where the answer starts
    first_ids = [s_tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in LABELS]
    start = answer.int().argmax(1)
    z = shift_logits[torch.arange(len(examples)), start][:, first_ids]
    q = torch.softmax(z / 0.5, -1).mean(0)
    prior = torch.tensor([4 + 1, 4 + 1, 4 + 1]) / 15.0  # add-one smoothed frequencies of 12 balanced labels
    penalty = (prior * (prior.log() - q.log())).sum()

    expected = 0.4 * ce + 0.6 * (0.7 * kl) + 0.5 * (0.7 * mse_same + 0.3 * mse_other) + 0.4 * penalty
    assert out["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert out["kl/same"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert out["mse/same"].item() == pytest.approx(mse_same.item(), rel=1e-5)
    assert out["mse/other"].item() == pytest.approx(mse_other.item(), rel=1e-5)
    assert out["shortcut"].item() == pytest.approx(penalty.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "kl/other" not in out  # a teacher with another vocabulary has no logits term (kd: auto -> none)
    # Hinton's T² is opt-in (loss.hinton_t2) and reaches the logits term
    hinton_cfg = _cfg(loss={"alpha": 0.6, "temperature": 2.0, "hinton_t2": True})
    hinton, _ = build_multi_teacher(teachers, student, s_tok, hinton_cfg, DATA, [e.label for e in _examples(12)])
    assert hinton.objective(student, batch)["kl/same"].item() == pytest.approx(T * T * kl.item(), rel=1e-5)


def test_gradients_reach_student_and_every_projector_never_a_teacher(trio) -> None:
    student, s_tok, teachers = trio
    cfg = _cfg(teachers={"same": {"weight": 0.5, "kd": "dskd"}, "other": {"weight": 0.5, "kd": "dskd"}})
    setup, extra = build_multi_teacher(teachers, student, s_tok, cfg, DATA, LABELS)
    assert sorted(setup.aux.keys()) == ["dskd_other", "dskd_same", "hidden_other", "hidden_same"]
    assert setup.aux_lr == {"hidden_same": 1e-3, "dskd_same": 1e-3, "hidden_other": 1e-3, "dskd_other": 1e-3}
    out = setup.objective(student, _batch(extra, s_tok, _examples(4)))
    assert all(math.isfinite(float(v)) for v in out.values())
    assert {"kl/same", "kl/other", "t2s_ce/other"} <= set(out)
    out["loss"].backward()
    for name, p in setup.aux.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert float(student.model.layers[0].mlp.down_proj.weight.grad.abs().sum()) > 0
    for model, _ in teachers.values():
        assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("teachers", "hidden", "message"),
    [
        ({"same": {"layer_map": [1, 2, 3]}}, {}, r"teachers\.same: hidden\.layer_map: .*one entry per student layer \(2\), got 3"),
        ({"same": {"layer_map": [[1, 5]]}}, {}, r"teachers\.same: hidden\.layer_map: .*teacher layer 5 out of range 1\.\.4"),
        ({"same": 1.0}, {"layer_map": [[3, 1]]}, r"student layer 3 out of range 1\.\.2"),
        ({"other": 1.0}, {"pooling": "token"}, r"hidden\.pooling: token-wise MSE needs one tokenizer"),
        ({"other": {"kd": "logits"}}, {}, r"teachers\.other\.kd: logits KD needs the student's vocabulary"),
    ],
)
def test_setting_errors_name_the_field(trio, teachers, hidden, message) -> None:
    student, s_tok, loaded = trio
    cfg = DistillConfig.model_validate({
        "algorithm": "multi_teacher", "teachers": teachers, "hidden": {"weight": 1.0, **hidden},
    })
    with pytest.raises(MultiTeacherConfigError, match=message):
        build_multi_teacher(loaded, student, s_tok, cfg, DATA, stage="distill.two")


def _recipe(distill: dict, **data) -> dict:
    return {
        "name": "t", "teachers": {"a": {"path": "x"}, "b": {"path": "y"}}, "student": {"path": "s"},
        "data": {"source": "q.jsonl", **data}, "distill": {"d": distill},
    }


@pytest.mark.parametrize(
    ("distill", "data", "message"),
    [
        ({"teachers": {"a": 1}}, {}, r"distill\.d\.teachers: several teachers need algorithm: multi_teacher"),
        ({"algorithm": "multi_teacher", "teachers": {"a": 1, "zz": 1}}, {}, r"'zz' is not among teachers \(a, b\)"),
        ({"algorithm": "multi_teacher", "teacher": "a", "teachers": {"b": 1}}, {}, r"set teacher or teachers, not both"),
        ({"teacher": "a", "hidden": {"weight": 1.0}}, {}, r"distill\.d\.hidden\.weight: .* need algorithm: multi_teacher"),
        ({"algorithm": "multi_teacher", "teachers": {"a": 1}, "shortcut": {"name": "label_prior_kl", "weight": 1}},
         {}, r"shortcut\.name: the anti-shortcut penalty needs classification data"),
        ({"algorithm": "multi_teacher", "teachers": {"a": 1}, "shortcut": {"name": "label_prior_kl"}},
         {"task": "classification", "labels": ["x", "y"]}, r"shortcut\.weight: label_prior_kl is chosen but its weight is 0"),
        ({"algorithm": "multi_teacher", "teachers": {"a": {"kd": "none"}}}, {}, r"loss\.alpha: no teacher has a KD term"),
        ({"algorithm": "multi_teacher", "teachers": {"a": 1}, "hidden": {"layer_map": "every-other"}}, {}, r"hidden\.layer_map"),
        ({"algorithm": "multi_teacher", "teachers": {"a": 1}, "shortcut": {"name": "majority"}}, {}, r"unknown shortcut penalty 'majority'"),
    ],
)
def test_recipe_errors_name_the_field(distill, data, message) -> None:
    from pydantic import ValidationError

    from distill2edge.config import Recipe, format_validation_error

    with pytest.raises(ValidationError) as err:
        Recipe.model_validate(_recipe(distill, **data))
    assert re.search(message, format_validation_error(err.value, "r.yaml")), format_validation_error(err.value, "r.yaml")


def test_resume_after_kill_reproduces_losses(trio, tmp_path: Path) -> None:
    """Projectors with their own learning rates are checkpointed with the student and restored."""
    student, s_tok, teachers = trio
    examples = _examples(12)
    cfg = _cfg(train={"epochs": 1, "batch_size": 4, "max_steps": 3, "checkpoint_every": 1, "lr": 1e-3,
                      "early_stopping": None})
    cfg.hidden.projector_lr = 5e-3
    initial = {k: v.clone() for k, v in student.state_dict().items()}

    def run(work: Path, kill: int | None):
        student.load_state_dict(initial)
        torch.manual_seed(0)  # as run_multi_distill does: the same projector initialisation every run
        setup, extra = build_multi_teacher(teachers, student, s_tok, cfg, DATA, [e.label for e in examples])
        rows, pads = _features(extra, s_tok, examples)
        return train(
            student, setup.objective, rows, [], cfg.train, work, pad_id=s_tok.pad_token_id, progress=False,
            aux=setup.aux, aux_lr=setup.aux_lr, collate_fn=partial(collate_multi, pads=pads), stop_after_step=kill,
        )

    whole = run(tmp_path / "whole", None)
    with pytest.raises(SimulatedKill):
        run(tmp_path / "killed", 2)
    resumed = run(tmp_path / "killed", None)
    a = [h["loss"] for h in whole.history if "loss" in h]
    b = [h["loss"] for h in resumed.history if "loss" in h]
    assert len(a) == 3 and a == pytest.approx(b, rel=1e-5)
    assert a[-1] < a[0]


def test_train_config_samples_become_steps() -> None:
    cfg = TrainConfig(batch_size=4, grad_accum=2, checkpoint_every_samples=20, eval_every_samples=8)
    assert (cfg.checkpoint_period(), cfg.eval_period()) == (3, 1)
    assert TrainConfig(checkpoint_every=7).checkpoint_period() == 7
    with pytest.raises(ValueError, match="eval_every_samples: set eval_every"):
        TrainConfig(eval_every=2, eval_every_samples=8)

