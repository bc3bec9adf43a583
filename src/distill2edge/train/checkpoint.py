"""Checkpoint pieces of the training loop: trainable weights, random states, folders written atomically.

`loop.train` (one process) and `parallel.ParallelTrainer` (several) both checkpoint through these: a
folder is written under a temporary name and renamed into place, so a kill at any moment leaves
either the previous checkpoint or the new one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill2edge import atomic


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the parameters that require grad (all a checkpoint needs of the model)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (from `trainable_state`) into `model`; refuses a checkpoint of another model."""
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing[:3]}, unexpected {unknown[:3]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) random states, so a resumed run draws what the uninterrupted one would."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states saved by `rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_temps(target: Path) -> tuple[Path, Path]:
    """The fixed `<name>.tmp` and `<name>.old` siblings of a checkpoint folder: `ParallelTrainer` writes
    each process's RNG state into `.tmp`, and `recover_dir` looks for `.old`."""
    return target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")


def atomic_save_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder through `write(tmp)` and rename it into place; the old one goes only after."""
    tmp, old = checkpoint_temps(target)
    atomic.write_dir_atomic(target, write, tmp=tmp, old=old)


def recover_dir(target: Path) -> None:
    """After a kill between the two renames of `atomic_save_dir`, the previous folder sits at `.old`."""
    atomic.recover_dir(target, checkpoint_temps(target)[1])
