"""Answer probes: greedy answers scored during training (`train.eval_answers`)."""

import json
from pathlib import Path

import pytest
import torch

from distill2edge.config import TrainConfig
from distill2edge.data.qa import QAExample
from distill2edge.evaluate.generate import generate_answers
from distill2edge.evaluate.probe import answer_probe, probe_factory
from distill2edge.models import load_model
from distill2edge.train.loop import SimulatedKill, train
from distill2edge.train.objectives import sft_objective

TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"


def examples(n: int) -> list[QAExample]:
    return [QAExample(id=str(i), context_id=str(i), context=f"cell {i} uses band n{70 + i}.",
                      question=f"which band does cell {i} use?", answers=(f"n{70 + i}",)) for i in range(n)]


def test_probe_scores_greedy_answers_like_evaluate(tiny_llama_dir: Path) -> None:
    """Half the questions get the model's own greedy answer as reference, half an answer sharing no token
    with it: token F1 and exact match are exactly 0.5, and the model's train mode is restored."""
    model, tok = load_model(str(tiny_llama_dir))
    exs = examples(6)
    preds = [r["prediction"] for r in generate_answers(model, tok, exs, template=TEMPLATE, max_length=64,
                                                       max_new_tokens=4, progress=False)]
    assert all(p.strip() for p in preds), preds
    graded = [QAExample(id=e.id, context_id=e.context_id, context=e.context, question=e.question,
                        answers=(p,) if i % 2 == 0 else ("zzzqqq",)) for i, (e, p) in enumerate(zip(exs, preds))]
    probe = answer_probe(tok, graded, template=TEMPLATE, max_length=64, max_new_tokens=4, batch_size=4)
    model.train()
    scores = probe(model)
    assert model.training
    assert scores == {"token_f1": pytest.approx(0.5), "exact_match": pytest.approx(0.5)}


def test_probe_factory_takes_the_first_questions_and_none_when_off(tiny_llama_dir: Path) -> None:
    _, tok = load_model(str(tiny_llama_dir))
    assert probe_factory([], 3, template=TEMPLATE, max_length=64, max_new_tokens=4)(tok) is None
    with pytest.raises(ValueError, match="at least one question"):
        answer_probe(tok, [], template=TEMPLATE, max_length=64, max_new_tokens=4)


def test_probe_values_and_wall_time_join_validation_rows(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """Each validation row carries the probe's values and `time_s`; after a kill and resume the clock
    continues from the checkpoint rather than restarting at zero."""
    model, tok = load_model(str(tiny_llama_dir))
    feats = [{"input_ids": tok(f"cell {i} band n{i}")["input_ids"], "labels": tok(f"cell {i} band n{i}")["input_ids"]}
             for i in range(8)]
    calls: list[int] = []

    def probe(m: torch.nn.Module) -> dict[str, float]:
        calls.append(1)
        return {"probe": float(len(calls))}

    cfg = TrainConfig(epochs=2, batch_size=2, lr=1e-3, eval_every=2, checkpoint_every=2, early_stopping=None)
    with pytest.raises(SimulatedKill):
        train(model, sft_objective, feats, feats[:2], cfg, tmp_path, pad_id=tok.pad_token_id, progress=False,
              probe=probe, stop_after_step=3)
    before = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["elapsed_s"]
    model, _ = load_model(str(tiny_llama_dir))
    result = train(model, sft_objective, feats, feats[:2], cfg, tmp_path, pad_id=tok.pad_token_id, progress=False,
                   probe=probe)
    rows = [h for h in result.history if "val_loss" in h]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert [r["val_probe"] for r in rows] == [1.0, 2.0, 3.0, 4.0]  # step 2's row comes from the checkpoint
    times = [r["time_s"] for r in rows]
    assert times == sorted(times) and times[1] >= before > 0


def test_recipe_eval_answers_records_validation_f1(tmp_path: Path, tiny_recipe) -> None:
    """`train.eval_answers` in a recipe: the stage's train_history.json has val_token_f1 at each validation;
    left at 0 it adds nothing (and stays out of the stage key)."""
    from distill2edge.config import load_recipe
    from distill2edge.pipeline import run_recipe

    sets = ["evaluate.models=[distilled.kd]", "distill.kd.train.eval_answers=3", "distill.kd.train.eval_every=1"]
    recipe = load_recipe(str(tiny_recipe()), sets)
    run_recipe(recipe, tmp_path / "run", progress=False, log=lambda _: None)
    history = json.loads((tmp_path / "run/stages/distill.kd/model/train_history.json").read_text())["history"]
    rows = [h for h in history if "val_loss" in h]
    assert len(rows) == 2 and all(0.0 <= r["val_token_f1"] <= 1.0 and "val_exact_match" in r for r in rows)
    assert (tmp_path / "run/f1_curves.png").exists()
    report = (tmp_path / "run/report.md").read_text()
    assert "- distill.kd: " in report and "![F1 against minutes](f1_curves.png)" in report
    teacher = json.loads((tmp_path / "run/stages/sft_teacher.tiny/model/train_history.json").read_text())["history"]
    assert not any("val_token_f1" in h for h in teacher)
    assert "eval_answers" not in load_recipe(str(tiny_recipe())).distill["kd"].train.model_dump(mode="json")
    assert recipe.distill["kd"].train.model_dump(mode="json")["eval_answers"] == 3
