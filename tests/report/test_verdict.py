"""The report's "Is it worth it?": the fraction kept carries its paired interval, and the verdict weighs it."""

from __future__ import annotations

import numpy as np
import pytest

from distill2edge.config import load_recipe
from distill2edge.evaluate.generate import write_scores_csv
from distill2edge.report.verdict import verdict_lines


def _run(tmp_path, student_share: float, n: int, noise: float):
    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(n)]
    t = rng.random(n)
    s = student_share * t * rng.choice([1 - noise, 1 + noise], n)  # mean share kept, spread by noise
    models = {}
    for role, x in (("teacher_sft.smollm2", t), ("distilled.fullseq", s)):
        folder = tmp_path / "stages" / f"evaluate_{role}"
        folder.mkdir(parents=True)
        write_scores_csv(folder / "scores.csv", ids, {"token_f1": list(x)})
        models[role] = {"role": role, "token_f1": float(np.mean(x)), "params": 1e8 if "teacher" in role else 5e7,
                        "latency_ms": 10.0}
    return {"models": models}


@pytest.mark.parametrize("share, n, noise, verdict", [
    (0.7, 400, 0.2, "**yes**"),       # well above half, tight interval
    (0.55, 30, 1.0, "**probably**"),   # above half, but the interval reaches below it
    (0.3, 400, 0.2, "**not yet**"),
])
def test_verdict_weighs_the_interval(tmp_path, share, n, noise, verdict):
    recipe = load_recipe("telecom-qa")
    metrics = _run(tmp_path, share, n, noise)
    text = "\n".join(verdict_lines(recipe, metrics, tmp_path))
    assert verdict in text
    assert f"paired bootstrap over {n} test questions" in text


def test_without_scores_the_point_estimate_decides(tmp_path):
    recipe = load_recipe("telecom-qa")
    metrics = _run(tmp_path, 0.55, 30, 1.0)
    text = "\n".join(verdict_lines(recipe, metrics))
    assert "**yes**" in text and "interval" not in text.split("\n\n")[1]
