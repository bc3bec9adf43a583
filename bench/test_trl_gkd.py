"""KD training throughput (tokens/s): distill2edge's loop with vanilla KD against TRL's GKDTrainer at
beta=0, on the embedded same-vocabulary pair, side by side in one session.

Pair: teacher SmolLM2-135M-Instruct (`teacher-torch`, 134.5M parameters, fp32) -> student cut from it
to 8 of its 30 layers (`student-torch`, 56.6M, fp32, untrained), as the telecom-qa recipe's `vanilla`
stage (there both are SFT'd first; weights do not change the cost). Same tokenizer, 49,152 entries.

Data: the first BATCH * STEPS embedded telecom-qa examples that `encode_for_training` fills to exactly
LENGTH tokens (prompt cut at its context, answer + EOS kept), so no batch has padding and both sides
process the same BATCH * LENGTH tokens per step. Both sides see the same batches in the same order
(TRL's sampler is made sequential over the permutation our loop draws), start from the same student
weights, and run the same optimizer: torch AdamW (betas 0.9/0.999, eps 1e-8, no weight decay), lr LR,
cosine schedule without warm-up over STEPS steps, grad-norm clip 1.0, fp32, no gradient checkpointing,
batch BATCH, no gradient accumulation, no evaluation, no saving, THREADS torch threads.

What each side computes per step (loss and work):
- ours: `distill2edge.train.loop.train` with `VanillaKD` (loss forward_kl, alpha=1, temperature 1):
  teacher forward (no grad) and student forward with `logits_to_keep` = the positions that predict an
  answer token in any row of the batch, so both LM heads (576 x 49,152) and the float32 softmaxes run
  on those K positions only (K = answer length + EOS: 4 to 10 of 127 here); loss = mean over answer
  tokens of KL(p_teacher || p_student) over the full shared vocabulary, computed in row chunks. Since
  issue 15 vanilla KD has no T^2 factor at any T (`loss.hinton_t2` opts in), as TRL's
  `generalized_jsd_loss`; at T 1 the two definitions coincided anyway. The CE on the gold answer is
  computed as well and weighted by 1 - alpha = 0. The loop also writes its resumable checkpoint at the
  last step (weights + AdamW state, ~0.7 GB).
- TRL (`trl.experimental.gkd.GKDTrainer`, GKDConfig(beta=0, lmbda=0, seq_kd=False)): lmbda=0 means
  `random.random() <= 0` never holds, so no on-policy generation: every step is supervised KD on the
  batch as given. `compute_loss` runs teacher (no grad) and student on all T positions with full
  logits [B, T, V], shifts them, and `generalized_jsd_loss` at beta == 0 takes
  `F.kl_div(log_softmax(student), log_softmax(teacher), log_target=True)` elementwise over all
  B x (T-1) x V entries, i.e. KL(p_teacher || p_student) at every position, then keeps the positions
  whose shifted label != -100 (the same answer tokens) and divides the sum by their number. Its
  loss temperature is 1: `compute_loss` calls `generalized_jsd_loss` at its default temperature
  (GKDConfig.temperature only affects sampling), which is why both sides run at T 1. So the loss value
  is the same quantity as ours, with no rescaling: the test asserts that the step-1 losses (same
  weights, same batch) agree, and records the largest difference over all steps (the two trajectories
  match to ~2e-5). Away from T 1, `tests/losses/test_kd_reference.py` pins our KD term to the numbers
  of `generalized_jsd_loss` called at T directly.
The difference in work is the LM head and softmax on all T positions (TRL) against the K answer
positions (ours); the transformer layers cost the same on both sides.

Measured (each side timed by its own clock; model loading and trainer construction excluded). A step
lasts from the entry of its loss function to the next step's (forward passes, loss, backward, clip,
AdamW, scheduler, logging, next batch); steps 2 .. STEPS-1 count, so first-step warm-up, TRL's set-up
inside `train()` and our final checkpoint are outside:
- `tokens_per_s`: non-padding tokens of the fastest of those steps over its time. On a shared machine
  noise only adds time, so the fastest step is the steadiest estimate (as the gates use `min`);
- `tokens_per_s_steady_mean`: their tokens over their summed time;
- `tokens_per_s_end_to_end`: all non-padding tokens over the wall time of the whole `train()` call.
The ratios (ours / TRL) go into `benchmark.extra_info`; there is no floor on them (not a gate).
The pytest-benchmark time of this test is the two training runs together (one round).
Needs TRL (`trl==1.14.2`, dev extra); skipped without it. About 45 s in all on 2 cores at THREADS=1.

Measured on the shared 2-core machine, THREADS=1, torch 2.13.0+cpu, transformers 4.57.6, trl 1.14.2:
fastest step 163 (ours) vs 110 (TRL) tokens/s, 1.48x; steady mean 147 vs 98, 1.51x; end to end 126 vs
96, 1.31x (ours pays ~2 s of final checkpoint there). An earlier 6-step run gave 1.60x / 1.30x; one
run with another job on the cores gave 1.01x (ours slowed to 96 tokens/s): read the fastest-step
ratio, and rerun when the machine is busy. Step losses agree to 2e-5 over all steps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from distill2edge.bench.measure import DEFAULT_TEMPLATE
from distill2edge.config import KDLossConfig, TrainConfig
from distill2edge.data.qa import load_embedded
from distill2edge.data.tokenize import collate, encode_for_training
from distill2edge.models import check_same_vocabulary, load_model
from distill2edge.train.loop import train
from distill2edge.train.objectives import VanillaKD

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

BATCH = 2
LENGTH = 128
STEPS = 8
LR = 2.0e-4  # the telecom-qa recipe's KD learning rate
SEED = 0
THREADS = int(os.environ.get("D2E_BENCH_THREADS", os.environ.get("OMP_NUM_THREADS", "2")))
"""Torch threads for both sides: D2E_BENCH_THREADS as in conftest, else OMP_NUM_THREADS, else 2."""


class _Probe:
    """Timestamps, token counts and losses of each training step, taken where the loss is computed."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.tokens: list[int] = []
        self.losses: list[float] = []

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        self.starts.append(time.perf_counter())
        self.tokens.append(int(batch["attention_mask"].sum()))

    def summary(self, wall_s: float) -> dict[str, Any]:
        n = len(self.starts)
        assert n == STEPS, f"{n} loss calls for {STEPS} steps"
        # Steps 2 .. STEPS-1 (1-based), each from its loss call to the next step's: whole steps.
        durations = [b - a for a, b in zip(self.starts[1:-1], self.starts[2:])]
        tokens = self.tokens[1:-1]
        best = min(range(len(durations)), key=lambda i: durations[i])
        return {
            "steps": n, "tokens": sum(self.tokens), "wall_s": wall_s,
            "tokens_per_s": tokens[best] / durations[best],
            "tokens_per_s_steady_mean": sum(tokens) / sum(durations),
            "tokens_per_s_end_to_end": sum(self.tokens) / wall_s,
            "s_per_step": durations,
            "losses": self.losses,
        }


def _data(tok: Any) -> list[dict[str, list[int]]]:
    """BATCH * STEPS training features of exactly LENGTH tokens (no padding anywhere)."""
    feats = []
    for ex in load_embedded():
        f = encode_for_training(tok, ex, DEFAULT_TEMPLATE, LENGTH)
        if len(f["input_ids"]) == LENGTH:
            feats.append(f)
        if len(feats) == BATCH * STEPS:
            return feats
    raise AssertionError(f"fewer than {BATCH * STEPS} embedded examples fill {LENGTH} tokens")


def _ours(teacher: Any, student: Any, tok: Any, vocab: int, data: Sequence[dict[str, list[int]]],
          work: Path) -> dict[str, Any]:
    probe = _Probe()
    kd = VanillaKD(teacher=teacher, loss=KDLossConfig(name="forward_kl", alpha=1.0, temperature=1.0),
                   vocab_size=vocab)

    def objective(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        probe.step(batch)
        out = kd(model, batch)
        probe.losses.append(float(out["loss"].detach()))
        return out

    cfg = TrainConfig(epochs=1, max_steps=STEPS, batch_size=BATCH, lr=LR, scheduler="cosine",
                      warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0, precision="fp32",
                      early_stopping=None, checkpoint_every=10_000, seed=SEED)
    start = time.perf_counter()
    result = train(student, objective, data, None, cfg, work, pad_id=tok.pad_token_id, progress=False)
    wall = time.perf_counter() - start
    assert result.steps == STEPS
    return probe.summary(wall)


def _trl(teacher: Any, student: Any, tok: Any, data: Sequence[dict[str, list[int]]],
         work: Path) -> dict[str, Any]:
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    probe = _Probe()

    class TimedGKD(GKDTrainer):
        def compute_loss(  # type: ignore[override]
            self, model, inputs, return_outputs=False, num_items_in_batch=None
        ):
            probe.step(inputs)
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            probe.losses.append(float((loss[0] if return_outputs else loss).detach()))
            return loss

        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return SequentialSampler(self.train_dataset)  # our loop's order, given below

    # Our loop's first-epoch order, so both sides see the same batches in the same order.
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(SEED)).tolist()
    dataset = Dataset.from_list([data[i] for i in order])
    args = GKDConfig(
        output_dir=str(work), beta=0.0, lmbda=0.0, seq_kd=False, temperature=1.0, max_length=LENGTH,
        per_device_train_batch_size=BATCH, gradient_accumulation_steps=1, max_steps=STEPS, num_train_epochs=1,
        learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        eval_strategy="no", save_strategy="no", logging_steps=1, report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, seed=SEED, data_seed=SEED,
    )
    trainer = TimedGKD(model=student, teacher_model=teacher, args=args, train_dataset=dataset,
                       processing_class=tok, data_collator=lambda feats: collate(feats, tok.pad_token_id))
    start = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - start
    assert out.global_step == STEPS
    return {**probe.summary(wall), "training_loss": out.training_loss}


def test_kd_train_throughput_vs_trl_gkd(benchmark: Any, zoo: Any, tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        teacher, t_tok = load_model(str(zoo.get("teacher-torch")[1]))
        student_path = zoo.get("student-torch")[1]
        probe_model, s_tok = load_model(str(student_path))  # the weights are loaded fresh for each side
        vocab = check_same_vocabulary(t_tok, s_tok, teacher.config, probe_model.config).shared_size
        del probe_model
        data = _data(s_tok)
        results: dict[str, dict[str, Any]] = {}

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (load_model(str(student_path))[0], load_model(str(student_path))[0]), {}

        def run_both(student_ours: Any, student_trl: Any) -> None:
            results["ours"] = _ours(teacher, student_ours, s_tok, vocab, data, tmp_path / "ours")
            results["trl"] = _trl(teacher, student_trl, s_tok, data, tmp_path / "trl")

        benchmark.pedantic(run_both, setup=setup, rounds=1, iterations=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads_before)

    ours, gkd = results["ours"], results["trl"]
    for side in (ours, gkd):
        assert len(side["losses"]) == STEPS and all(math.isfinite(x) for x in side["losses"]), side["losses"]
        assert side["tokens_per_s"] > 0 and side["tokens_per_s_end_to_end"] > 0
    assert ours["tokens"] == gkd["tokens"] == BATCH * LENGTH * STEPS
    # Same weights, batch and objective: step 1 must give the same loss, or the sides are not comparable.
    step1_rel = abs(ours["losses"][0] - gkd["losses"][0]) / max(abs(gkd["losses"][0]), 1e-12)
    assert step1_rel < 1e-3, f"step-1 KD loss differs: ours {ours['losses'][0]}, TRL {gkd['losses'][0]}"
    benchmark.extra_info.update(
        trl_version=trl.__version__, threads=THREADS, batch=BATCH, length=LENGTH, steps=STEPS, lr=LR,
        teacher="embedded:smollm2-135m-instruct", student="smollm2-135m-instruct cut to 8 layers",
        ours=ours, trl_gkd_beta0=gkd,
        ratio_tokens_per_s=ours["tokens_per_s"] / gkd["tokens_per_s"],
        ratio_tokens_per_s_steady_mean=ours["tokens_per_s_steady_mean"] / gkd["tokens_per_s_steady_mean"],
        ratio_tokens_per_s_end_to_end=ours["tokens_per_s_end_to_end"] / gkd["tokens_per_s_end_to_end"],
        step1_loss_rel_diff=step1_rel,
        max_loss_abs_diff=max(abs(a - b) for a, b in zip(ours["losses"], gkd["losses"])),
    )
