"""The state of one `loop.train` call and its setup: placing the model, resuming from a checkpoint,
the optimizer and LR schedule, the random seeds, and writing checkpoints.

`loop.train` runs the steps; what it needs across them lives on a `Session`, so the loop can be a few
short functions instead of one long one with closures.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from transformers import get_scheduler

from distill2edge.config import TrainConfig
from distill2edge.train import distributed as dist
from distill2edge.train.checkpoint import (
    atomic_save_dir,
    load_trainable,
    recover_dir,
    rng_state,
    set_rng_state,
    trainable_state,
)

if TYPE_CHECKING:
    from distill2edge.train.loop import Collate, Objective


@dataclass
class Session:
    """The moving parts of one `train` call, shared by the functions it is split into."""

    model: nn.Module
    objective: Objective
    tracked: nn.ModuleDict
    """The model and `aux` together: what single-process checkpoints and the best weights hold."""
    cfg: TrainConfig
    device: torch.device
    desc: str
    collate_fn: Collate
    train_data: Sequence[dict[str, list[int]]]
    val_data: Sequence[dict[str, list[int]]] | None
    ckpt_dir: Path
    best_dir: Path
    world: int
    state: dict[str, Any]
    """What a checkpoint's state.json holds: step, data position, early stopping, history."""
    resume: bool
    par: Any = None
    """The `parallel.ParallelTrainer` under several processes; None for one."""
    params: list[nn.Parameter] = field(default_factory=list)
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    probe: Callable[[nn.Module], dict[str, float]] | None = None
    """Scores the model at each validation (e.g. token F1 of a few greedy answers); one process only."""
    t0: float = 0.0
    """`time.perf_counter()` at which this run would have started had it never been interrupted."""

    def save_checkpoint(self) -> None:
        """Write `checkpoint/` atomically: trainable weights, optimizer, scheduler, RNG states and `state`."""
        if self.par is not None:
            self.par.save_checkpoint(self.ckpt_dir, self.scheduler, self.state)
            return

        def write(tmp: Path) -> None:
            torch.save(trainable_state(self.tracked), tmp / "trainable.pt")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(rng_state(), tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps(self.state))

        atomic_save_dir(self.ckpt_dir, write)


def _aux_groups(aux: nn.Module, aux_lr: float | dict[str, float] | None, default: float) -> list[tuple[nn.Module, float]]:
    """(module, learning rate) pairs for the optimizer's extra parameter groups."""
    if not isinstance(aux_lr, dict):
        return [(aux, aux_lr or default)]
    if not isinstance(aux, nn.ModuleDict) or set(aux_lr) != set(aux.keys()):
        raise ValueError(f"aux_lr as a dict needs an nn.ModuleDict aux with the same keys, got {sorted(aux_lr)}")
    return [(aux[k], aux_lr[k]) for k in aux.keys()]


def start_session(
    model: nn.Module, objective: Objective, train_data: Sequence[dict[str, list[int]]],
    val_data: Sequence[dict[str, list[int]]] | None, cfg: TrainConfig, work_dir: Path, device: torch.device,
    desc: str, aux: nn.Module | None, collate_fn: Collate,
) -> Session:
    """Place the model, read the checkpoint's state (its weights loaded) when resuming, set up processes."""
    world = dist.world_size()
    if world > 1:
        dist.state(device)  # the process group, if the pipeline has not made it yet
    tracked = nn.ModuleDict({"model": model, **({"aux": aux} if aux is not None else {})})
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir, best_dir = work_dir / "checkpoint", work_dir / "best"
    if dist.is_main():
        recover_dir(ckpt_dir)
        recover_dir(best_dir)
    dist.barrier()
    if not train_data:
        raise ValueError("no training examples")

    model.to(device)
    if aux is not None:
        aux.to(device)
    state: dict[str, Any] = {
        "step": 0, "epoch": 0, "next_micro": 0, "best_val": None, "best_step": None, "bad_evals": 0,
        "stopped_early": False, "epochs_completed": 0, "history": [], "world_size": world,
    }
    resume = (ckpt_dir / "state.json").exists()
    if resume:
        state = json.loads((ckpt_dir / "state.json").read_text())
        if state.get("world_size", 1) != world:
            raise ValueError(f"{ckpt_dir} was written by {state.get('world_size', 1)} processes, this run has {world}: "
                             "resume with as many, or delete it to start the stage again")
        load_trainable(tracked, torch.load(ckpt_dir / "trainable.pt", weights_only=True))
        if dist.is_main():
            print(f"[{desc}] resumed from step {state['step']} (epoch {state['epoch']}) of {ckpt_dir}", flush=True)
    par = None
    if world > 1:
        from distill2edge.train.parallel import ParallelTrainer

        par = ParallelTrainer(device, model, aux, objective)
    return Session(model, objective, tracked, cfg, device, desc, collate_fn, train_data, val_data, ckpt_dir,
                    best_dir, world, state, resume, par)


def make_optimizer(
    s: Session, aux: nn.Module | None, aux_lr: float | dict[str, float] | None,
) -> tuple[int, int]:
    """AdamW over the trainable parameters (and `aux`'s groups), the LR schedule and the fp16 scaler on `s`;
    returns (micro-batches per epoch, total optimizer steps)."""
    cfg, par = s.cfg, s.par
    params = [p for p in (s.model if par is None else par.model).parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    groups: list[dict[str, Any]] = [{"params": params, "lr": cfg.lr}]
    if aux is not None:
        for part, lr in _aux_groups(aux, aux_lr, cfg.lr):
            part_params = [p for p in part.parameters() if p.requires_grad]
            groups.append({"params": part_params, "lr": lr})
            params = params + part_params
    s.params = params
    s.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    micro_per_epoch = math.ceil(len(s.train_data) / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / (cfg.grad_accum * s.world))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    s.scheduler = get_scheduler(
        cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
        s.optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps,
    )
    s.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    if par is not None:
        if s.scaler is not None and par.fsdp:
            raise ValueError("train.precision fp16 is not supported with FSDP (its gradients are sharded); use bf16")
        par.prepare(s.optimizer)
    return micro_per_epoch, total_steps


def restore_or_seed(s: Session) -> None:
    """Resuming: the checkpoint's optimizer, scheduler and random states; else seed the random draws."""
    if s.resume and s.par is not None:
        s.par.load_checkpoint(s.ckpt_dir, s.scheduler)
    elif s.resume:
        s.optimizer.load_state_dict(torch.load(s.ckpt_dir / "optimizer.pt", weights_only=True))
        s.scheduler.load_state_dict(torch.load(s.ckpt_dir / "scheduler.pt", weights_only=True))
        set_rng_state(torch.load(s.ckpt_dir / "rng.pt", weights_only=False))
    else:
        seed = s.cfg.seed + dist.rank()  # rank 0 draws what a single process draws; others differ (dropout)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
