"""KD training throughput (tokens/s) with the online teacher against the teacher cache, side by side.

Pair: SmolLM2-135M-Instruct (`teacher-torch`) -> the 8-layer student cut from it (`student-torch`), the
telecom-qa recipe's vanilla and DSKD stages (T = 2, alpha 0.5, all student weights, AdamW, fp32).
Data: BATCH * STEPS embedded telecom-qa samples of exactly LENGTH tokens (no padding). For each
algorithm the online run and the cached run start from the same student weights and see the same
batches; the cache entries (top-64 targets, float16 hidden states) are built first and their build time
recorded, not counted. A step is timed from one loss call to the next (forward, loss, backward, AdamW);
the fastest of steps 2 .. STEPS-1 gives `tokens_per_s` (noise only adds time), and their mean
`tokens_per_s_mean`. Ratios cached / online go into `extra_info`; no floor (not a gate).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from distill2edge.bench.measure import DEFAULT_TEMPLATE
from distill2edge.config import DataConfig, DistillConfig
from distill2edge.data.qa import load_embedded
from distill2edge.models import load_model
from distill2edge.train.algorithms import build_algorithm
from distill2edge.train.cached import cached_distill_setup
from distill2edge.train.loop import train
from distill2edge.train.lora import apply_lora
from distill2edge.train.trainers import encode_all

THREADS = int(os.environ.get("D2E_BENCH_THREADS", "2"))  # as bench/conftest.py

BATCH, LENGTH, STEPS = 2, 128, 6


def _examples(tok: Any) -> list[Any]:
    """BATCH * STEPS embedded examples whose training encoding fills exactly LENGTH tokens."""
    data = DataConfig(prompt_template=DEFAULT_TEMPLATE, max_length=LENGTH)
    out = [ex for ex in load_embedded() if len(encode_all(tok, [ex], data)[0]["input_ids"]) == LENGTH]
    assert len(out) >= BATCH * STEPS
    return out[: BATCH * STEPS]


def _timed(objective: Any, student: Any, rows: list, collate_fn: Any, cfg: DistillConfig, pad: int, work: Path,
           aux: Any = None, aux_lr: Any = None) -> dict[str, Any]:
    starts: list[float] = []
    losses: list[float] = []

    def probe(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        starts.append(time.perf_counter())
        out = objective(model, batch)
        losses.append(float(out["loss"].detach()))
        return out

    train(student, probe, rows, None, cfg.train, work, pad_id=pad, progress=False, aux=aux, aux_lr=aux_lr,
          collate_fn=collate_fn)
    shutil.rmtree(work)  # its final checkpoint (weights + AdamW state, ~0.7 GB) is not needed
    steps = [b - a for a, b in zip(starts[1:-1], starts[2:])]
    return {"tokens_per_s": BATCH * LENGTH / min(steps), "tokens_per_s_mean": BATCH * LENGTH * len(steps) / sum(steps),
            "s_per_step": steps, "losses": losses}


@pytest.mark.parametrize("algorithm", ["vanilla", "dskd"])
def test_kd_throughput_cached_vs_online(algorithm: str, benchmark: Any, zoo: Any, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        teacher_path, student_path = zoo.get("teacher-torch")[1], zoo.get("student-torch")[1]
        _, tok = load_model(str(student_path))
        examples = _examples(tok)
        data = DataConfig(prompt_template=DEFAULT_TEMPLATE, max_length=LENGTH)
        common = {"algorithm": algorithm, "loss": {"alpha": 0.5, "temperature": 2.0},
                  "train": {"epochs": 1, "max_steps": STEPS, "batch_size": BATCH, "lr": 2e-4, "early_stopping": None,
                            "checkpoint_every": 10_000}}
        online_cfg = DistillConfig(**common)
        cached_cfg = DistillConfig(**common, cache={"enabled": True, "top_k": 64, "hidden_dtype": "float16"})
        splits = {"train": examples}
        kw = {"encode": encode_all, "apply_lora": apply_lora, "device": torch.device("cpu"), "teacher_dtype": "float32",
              "student_dtype": "float32", "progress": False}
        t0 = time.perf_counter()
        built = cached_distill_setup(str(teacher_path), str(student_path), splits, data, cached_cfg, tmp_path / "cache", **kw)
        build_s = time.perf_counter() - t0
        results: dict[str, dict[str, Any]] = {}

        def run_both() -> None:
            teacher, t_tok = load_model(str(teacher_path))
            student, s_tok = load_model(str(student_path))
            torch.manual_seed(0)
            setup = build_algorithm(algorithm, teacher.requires_grad_(False), student, t_tok, s_tok, online_cfg)
            rows = encode_all(s_tok, examples, data)
            results["online"] = _timed(setup.objective, student, rows, None, online_cfg, s_tok.pad_token_id,
                                       tmp_path / "online", setup.aux, setup.aux_lr)
            del teacher, student, setup
            c = cached_distill_setup(str(teacher_path), str(student_path), splits, data, cached_cfg, tmp_path / "cache", **kw)
            assert c.setup.info["teacher_cache_hit"]
            results["cached"] = _timed(c.setup.objective, c.student, c.train_data, c.collate_fn, cached_cfg,
                                       c.tokenizer.pad_token_id, tmp_path / "cached", c.setup.aux, c.setup.aux_lr)

        benchmark.pedantic(run_both, rounds=1, iterations=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(before)
    online, cached = results["online"], results["cached"]
    for side in (online, cached):
        assert len(side["losses"]) == STEPS and all(math.isfinite(x) for x in side["losses"])
    if algorithm == "dskd":  # float16 hidden states: the same loss up to their rounding
        assert cached["losses"][0] == pytest.approx(online["losses"][0], rel=1e-2)
    benchmark.extra_info.update(
        algorithm=algorithm, threads=THREADS, batch=BATCH, length=LENGTH, steps=STEPS,
        cache_build_s=build_s, cache_mb=built.setup.info["teacher_cache_mb"], kd_targets=built.setup.info["kd_targets"],
        online=online, cached=cached,
        ratio_tokens_per_s=cached["tokens_per_s"] / online["tokens_per_s"],
        ratio_tokens_per_s_mean=cached["tokens_per_s_mean"] / online["tokens_per_s_mean"],
    )
