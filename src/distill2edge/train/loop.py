"""One training loop for SFT and KD.

The loop knows nothing about losses: an *objective* maps (model, batch) to a dict of scalar tensors
whose "loss" is minimised. It handles gradient accumulation, mixed precision, validation with early
stopping, and resumable checkpoints.

Checkpoints hold the trainable weights, optimizer, scheduler, RNG states and the data position
(epoch and next micro-batch), written to a temporary folder and renamed into place (`train.checkpoint`),
so a kill at any moment leaves either the previous checkpoint or the new one. Resuming replays the same
data order and random draws, so an interrupted run reproduces the uninterrupted one.

Under N processes (`accelerate launch`, see `train.parallel`) a step takes `grad_accum * N` micro-batches,
process r every N-th one, so N processes at `grad_accum` 1 train like one at `grad_accum` N; logged
and validation losses are summed over processes, so history and early stopping agree everywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from distill2edge.config import TrainConfig
from distill2edge.data.tokenize import collate
from distill2edge.train import distributed as dist
from distill2edge.train.checkpoint import atomic_save_dir, load_trainable, trainable_state
from distill2edge.train.session import Session, make_optimizer, restore_or_seed, start_session

Objective = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
Collate = Callable[[Sequence[dict[str, list[int]]]], dict[str, torch.Tensor]]


STOP_AFTER_STEP_ENV = "DISTILL2EDGE_STOP_AFTER_STEP"
"""Environment variable: stop every training run after this many optimizer steps (simulates a kill)."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops rather than corrupting the weights."""


class SimulatedKill(RuntimeError):
    """Raised by `stop_after_step` to stand in for a killed process in tests."""


@dataclass
class TrainResult:
    steps: int
    epochs_completed: int
    best_val_loss: float | None
    stopped_early: bool
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    """One row per optimizer step ({"step", "loss", "lr", ...}) and per validation ({"step", "val_loss"} and
    `val_TERM` for each other term of the objective, e.g. `val_ce`, the answer cross-entropy)."""
    parallel: str | None = None
    """How several processes trained, e.g. "DDP x 2" or "FSDP2 x 4"; None for one process."""
    best_by: str = "loss"
    """What chose the weights the run ended with (`TrainConfig.best_by`)."""
    best_step: int | None = None
    """The step whose validated weights the run ended with; None when no validation ran."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def autocast_context(precision: str, device: torch.device):
    """Mixed precision: bf16/fp16 autocast on GPU; on CPU only when asked for explicitly (bf16)."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, objective: Objective, data: Sequence[dict[str, list[int]]], batch_size: int,
    collate_fn: Collate, device: torch.device, precision: str,
) -> dict[str, float]:
    """Mean of each term the objective returns ("loss", and e.g. "ce", the answer cross-entropy) over
    `data`, weighted by batch size."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in collate_fn(data[i : i + batch_size]).items()}
        with autocast_context(precision, device):
            out = objective(model, batch)
        n = batch["input_ids"].shape[0]
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + float(v) * n
        count += n
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in totals.items()}


def train(
    model: nn.Module,
    objective: Objective,
    train_data: Sequence[dict[str, list[int]]],
    val_data: Sequence[dict[str, list[int]]] | None,
    cfg: TrainConfig,
    work_dir: Path,
    *,
    pad_id: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "train",
    stop_after_step: int | None = None,
    aux: nn.Module | None = None,
    aux_lr: float | dict[str, float] | None = None,
    collate_fn: Collate | None = None,
    probe: Callable[[nn.Module], dict[str, float]] | None = None,
) -> TrainResult:
    """Train the parameters of `model` that require grad; resume from `work_dir/checkpoint` if present.

    At the end the best validated weights (if any validation ran) are loaded back into `model`.
    `aux` holds extra trainable modules the objective uses (e.g. DSKD projectors), optimised with
    `aux_lr` (default `cfg.lr`; a dict gives each child of an `nn.ModuleDict` aux its own rate) and
    checkpointed with the model. `collate_fn` pads a list of
    features into a batch (default: `collate` with `pad_id`).
    `stop_after_step` raises after that many optimizer steps, standing in for a kill in tests (also
    read from the environment variable DISTILL2EDGE_STOP_AFTER_STEP, to stop launched processes).
    Under several processes every process calls `train` with the same arguments; `model` ends with
    the same weights on all of them.
    `probe` scores the model at each validation (e.g. `evaluate.probe.answer_probe`: token F1 of greedy
    answers); its values join the validation row as `val_NAME`. It runs in single-process training only.
    Every validation row also records `time_s`, the wall time since the run began (across resumes).
    """
    device = torch.device(device)
    if collate_fn is None:
        def collate_fn(features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
            return collate(features, pad_id)
    if stop_after_step is None and os.environ.get(STOP_AFTER_STEP_ENV):
        stop_after_step = int(os.environ[STOP_AFTER_STEP_ENV])
    s = start_session(model, objective, train_data, val_data, cfg, work_dir, device, desc, aux, collate_fn)
    micro_per_epoch, total_steps = make_optimizer(s, aux, aux_lr)
    # Sample-based periods count global samples: several processes take batch_size * world per micro-step.
    clock = cfg if s.world == 1 else cfg.model_copy(update={"batch_size": cfg.batch_size * s.world})
    eval_every, checkpoint_every = clock.eval_period(), clock.checkpoint_period()
    restore_or_seed(s)
    s.probe = probe
    s.t0 = time.perf_counter() - float(s.state.get("elapsed_s", 0.0))

    start = time.perf_counter()
    (s.tracked if s.par is None else s.par).train()
    bar = tqdm(
        total=total_steps, initial=s.state["step"], desc=desc, disable=not progress or not dist.is_main(),
        dynamic_ncols=True,
    )
    done = s.state["step"] >= total_steps or s.state["stopped_early"]
    while not done and s.state["epoch"] < cfg.epochs:
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed + s.state["epoch"]))
        micro = s.state["next_micro"]
        while micro < micro_per_epoch:
            logs, micro = _optimizer_step(s, order, micro, micro_per_epoch)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            done = _after_step(s, micro, micro_per_epoch, total_steps, eval_every, checkpoint_every)
            if stop_after_step is not None and s.state["step"] >= stop_after_step and not done:
                bar.close()
                raise SimulatedKill(f"stopped after step {s.state['step']}")
            if done or micro >= micro_per_epoch:
                break
    bar.close()
    return _finish(s, start)


def _validate(s: Session) -> bool:
    """Run validation, update early stopping; True when training should stop."""
    cfg, state, device = s.cfg, s.state, s.device
    if not s.val_data:
        return False
    terms = (
        evaluate_loss(s.model, s.objective, s.val_data, cfg.batch_size, s.collate_fn, device, cfg.precision)
        if s.par is None
        else s.par.evaluate(s.val_data, cfg.batch_size, s.collate_fn, device,
                            lambda: autocast_context(cfg.precision, device))
    )
    if s.probe is not None and s.par is None:
        terms.update(s.probe(s.model))
    val = terms.pop("loss")
    state["elapsed_s"] = round(time.perf_counter() - s.t0, 2)
    state["history"].append({"step": state["step"], "val_loss": val, **{f"val_{k}": v for k, v in terms.items()},
                             "time_s": state["elapsed_s"]})
    es = cfg.early_stopping
    best = state["best_val"]
    score = _selection_score(cfg.best_by, val, terms)
    if best is None or score < best - (es.min_delta if es else 0.0):
        state["best_val"], state["bad_evals"], state["best_step"] = score, 0, state["step"]
        weights = trainable_state(s.tracked) if s.par is None else s.par.trainable_state()
        if dist.is_main():
            atomic_save_dir(s.best_dir, lambda tmp: torch.save(weights, tmp / "trainable.pt"))
        dist.barrier()
    else:
        state["bad_evals"] += 1
    return es is not None and state["bad_evals"] >= es.patience


def _selection_score(best_by: str, val_loss: float, terms: dict[str, float]) -> float:
    """The validation figure the best weights minimise: the loss, or minus the greedy answers' token F1 (the
    loss where no F1 was measured, e.g. under several processes, which do not run the answer probe)."""
    if best_by == "token_f1" and "token_f1" in terms:
        return -terms["token_f1"]
    return val_loss


def _optimizer_step(
    s: Session, order: torch.Tensor, micro: int, micro_per_epoch: int,
) -> tuple[dict[str, float], int]:
    """One optimizer step over the next `grad_accum * world` micro-batches from `micro` (this process
    takes every world-th); appends its history row. Returns the step's logged terms and the next micro-batch."""
    cfg, state, par, scaler, device, world = s.cfg, s.state, s.par, s.scaler, s.device, s.world
    group = range(micro, min(micro + cfg.grad_accum * world, micro_per_epoch))
    s.optimizer.zero_grad(set_to_none=True)
    logs: dict[str, float] = {}
    mine = dist.shard(group, pad_with=group[0])  # (micro-batch, real); padding has weight 0
    for i, (m, real) in enumerate(mine):
        idx = order[m * cfg.batch_size : (m + 1) * cfg.batch_size].tolist()
        batch = {k: v.to(device) for k, v in s.collate_fn([s.train_data[i] for i in idx]).items()}
        with nullcontext() if par is None else par.no_sync(i < len(mine) - 1):
            with autocast_context(cfg.precision, device):
                out = s.objective(s.model, batch) if par is None else par.forward(batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"{s.desc}: non-finite loss ({float(loss.detach())}) at step {state['step'] + 1} "
                    f"(epoch {state['epoch']}, micro-batch {m}); lower train.lr or check the data"
                )
            # Processes' gradients are averaged, so each scales by world / micro-batches in the step.
            scaled = loss * world / len(group) if real else loss * 0.0
            (scaler.scale(scaled) if scaler else scaled).backward()
        for k, v in out.items():
            logs[k] = logs.get(k, 0.0) + (float(v.detach()) / len(group) if real else 0.0)
    if par is not None:
        logs = dict(zip(logs, dist.sum_over_ranks(list(logs.values()))))
    if scaler:
        scaler.unscale_(s.optimizer)
    if cfg.max_grad_norm is not None:
        if par is None:
            torch.nn.utils.clip_grad_norm_(s.params, cfg.max_grad_norm)
        else:
            par.clip_grad_norm_(cfg.max_grad_norm)
    if scaler:
        scaler.step(s.optimizer)
        scaler.update()
    else:
        s.optimizer.step()
    s.scheduler.step()
    micro = group[-1] + 1
    state["step"] += 1
    state["next_micro"] = micro
    state["elapsed_s"] = round(time.perf_counter() - s.t0, 2)
    state["history"].append({"step": state["step"], "lr": s.scheduler.get_last_lr()[0], **logs})
    return logs, micro


def _after_step(
    s: Session, micro: int, micro_per_epoch: int, total_steps: int, eval_every: int | None, checkpoint_every: int,
) -> bool:
    """Validation, epoch end, early stopping and checkpointing after a step; True when training is done."""
    state = s.state
    stop = False
    if eval_every and state["step"] % eval_every == 0:
        stop = _validate(s)
    if micro >= micro_per_epoch:
        state["epoch"] += 1
        state["next_micro"] = 0
        state["epochs_completed"] = state["epoch"]
        if not eval_every:
            stop = _validate(s) or stop
    if stop:
        state["stopped_early"] = True
    done = stop or state["step"] >= total_steps
    if done and not stop and state["history"][-1].get("val_loss") is None:
        _validate(s)  # reached max_steps between validations: judge the final weights too
    if done or state["step"] % checkpoint_every == 0:
        s.save_checkpoint()
    return done


def _finish(s: Session, start: float) -> TrainResult:
    """Load the best validated weights back (on every process) and report the run."""
    state = s.state
    best = None
    if state["best_val"] is not None and (s.best_dir / "trainable.pt").exists():
        best = torch.load(s.best_dir / "trainable.pt", weights_only=True)
    if s.par is not None:
        s.par.finish(s.model, best)
    elif best is not None:
        load_trainable(s.tracked, best)
    s.tracked.eval()
    best_step = state.get("best_step")
    val_losses = {r["step"]: r["val_loss"] for r in state["history"] if "val_loss" in r}
    return TrainResult(
        steps=state["step"], epochs_completed=state["epochs_completed"],
        best_val_loss=val_losses.get(best_step, state["best_val"]) if best is not None else None,
        stopped_early=state["stopped_early"], wall_time_s=time.perf_counter() - start, history=state["history"],
        parallel=None if s.par is None else s.par.mode, best_by=s.cfg.best_by,
        best_step=best_step if best is not None else None,
    )
