"""What `loop.train` does differently when several processes train together (DDP or FSDP).

The objective stays `objective(model, batch)`. DDP and FSDP act through the forward of the module
they wrap (DDP's gradient hooks are armed there, FSDP all-gathers the shards there), so the student
and the objective's extra trainable modules (`aux`, e.g. DSKD projectors) are joined in one
`ObjectiveModule` whose forward *is* the objective, and that module is what accelerate prepares.
Calls the objective makes inside that forward — `model(..., logits_to_keep=..., output_hidden_states=...)`,
`model.get_input_embeddings()`, direct use of the LM head weight — then see synchronised, unsharded
parameters, and gradients are averaged over processes in backward.

FSDP shards the modules it wraps in place. The student is therefore trained as a copy under FSDP and
the caller's model receives the trained weights at the end (`finish`), so the stage code gets back
a plain, full model to merge and save. `aux` is wrapped in place (the objective holds it; it is
discarded after training).

Checkpoints hold the same files as a single-process run, gathered to the main process: full
trainable weights (same names and format), the optimizer as a full state dict keyed by parameter
names (torch.distributed.checkpoint's format, loadable under DDP or FSDP), the scheduler, and one RNG
file per process.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from distill2edge.train import distributed as dist
from distill2edge.train.checkpoint import (
    atomic_save_dir,
    checkpoint_temps,
    load_trainable,
    rng_state,
    set_rng_state,
)

Objective = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class ObjectiveModule(nn.Module):
    """`model` and `aux` as one module whose forward(batch) is objective(model, batch).

    The objective is kept out of the module tree (it holds the frozen teacher, which must be neither
    broadcast by DDP nor sharded by FSDP). `_no_split_modules` is the student's, so accelerate's FSDP
    auto-wrap finds its transformer layers.
    """

    _objective: Objective  # set with object.__setattr__, so nn.Module's attribute typing does not apply

    def __init__(self, model: nn.Module, aux: nn.Module | None, objective: Objective) -> None:
        super().__init__()
        self.model = model
        if aux is not None:
            self.aux = aux
        object.__setattr__(self, "_objective", objective)
        self._no_split_modules = getattr(model, "_no_split_modules", None)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._objective(self.model, batch)


class ParallelTrainer:
    """The multi-process parts of one `loop.train` call: create after resuming the trainable weights
    into the caller's modules, build the optimizer over `.model` and aux, then `prepare` it."""

    def __init__(self, device: torch.device, model: nn.Module, aux: nn.Module | None, objective: Objective) -> None:
        self.accelerator = dist.make_accelerator(device)
        self.fsdp = dist.is_fsdp(self.accelerator)
        if self.fsdp and self.accelerator.state.fsdp_plugin.fsdp_version == 1:
            frozen = any(not p.requires_grad for p in model.parameters())
            if frozen and not self.accelerator.state.fsdp_plugin.use_orig_params:
                raise ValueError("FSDP (version 1) with frozen weights (LoRA) needs fsdp_use_orig_params: true")
        self.model = copy.deepcopy(model) if self.fsdp else model
        fsdp = f"FSDP{self.accelerator.state.fsdp_plugin.fsdp_version}" if self.fsdp else None
        self.mode = f"{fsdp or 'DDP'} x {dist.world_size()}"
        """What wraps the model, and over how many processes (recorded in the training result)."""
        self.module = ObjectiveModule(self.model, aux, objective)
        self.trainable = [n for n, p in self.module.named_parameters() if p.requires_grad]
        # Randomly initialised weights (LoRA adapters, projectors) start as the main process's everywhere;
        # DDP would broadcast them when wrapping, FSDP shards each process's own values.
        with torch.no_grad():
            for p in self.module.parameters():
                if p.requires_grad:
                    torch.distributed.broadcast(p.data, src=0)
        self.wrapped: nn.Module = self.module
        self.optimizer: torch.optim.Optimizer | None = None

    def prepare(self, optimizer: torch.optim.Optimizer) -> None:
        """Wrap the module for DDP/FSDP; the optimizer's parameter groups are updated in place."""
        self.wrapped, _ = self.accelerator.prepare(self.module, optimizer)
        self.optimizer = optimizer

    def _prepared_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer `prepare` was given; checkpoints save and load its state."""
        if self.optimizer is None:
            raise RuntimeError("ParallelTrainer: call prepare(optimizer) before saving or loading a checkpoint")
        return self.optimizer

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.wrapped(batch)

    def no_sync(self, active: bool) -> AbstractContextManager[Any]:
        """Skip the gradient all-reduce (`active`) on micro-batches before the last of an optimizer step."""
        return self.accelerator.no_sync(self.wrapped) if active else nullcontext()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip by the norm over all processes' gradients (FSDP: over the shards)."""
        return self.accelerator.clip_grad_norm_(self.wrapped.parameters(), max_norm)

    def train(self, mode: bool = True) -> None:
        self.wrapped.train(mode)

    def trainable_state(self, everywhere: bool = False) -> dict[str, torch.Tensor]:
        """Full trainable weights named as in a single-process checkpoint ("model.…", "aux.…").

        A collective: every process must call it. The result is on the CPU of the main process only
        (others get {}), or of every process with `everywhere`.
        """
        options = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere, ignore_frozen_params=True)
        full = get_model_state_dict(self.wrapped, options=options)
        if not full:
            return {}
        missing = sorted(set(self.trainable) - set(full))
        if missing:
            raise RuntimeError(f"gathered state lacks trainable weights {missing[:3]}")
        out: dict[str, torch.Tensor] = {}
        for n in self.trainable:
            value = full[n]
            if not isinstance(value, torch.Tensor):  # full_state_dict gathers plain tensors
                raise RuntimeError(f"gathered state holds a {type(value).__name__} for {n}, not a tensor")
            out[n] = value.detach().cpu().clone()
        return out

    def save_checkpoint(self, ckpt_dir: Path, scheduler: Any, state: dict[str, Any]) -> None:
        """Weights and optimizer gathered to the main process (collectives: every process calls this),
        which writes them with the scheduler and `state` through `atomic_save_dir`; each process writes
        its RNG state into the same temporary folder between two barriers, before it is renamed."""
        weights = self.trainable_state()
        optimizer = get_optimizer_state_dict(
            self.wrapped, self._prepared_optimizer(), options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

        def write(tmp: Path) -> None:
            dist.barrier()  # the folder exists: the other processes write their RNG states into it
            torch.save(rng_state(), tmp / "rng_0.pt")
            torch.save(weights, tmp / "trainable.pt")
            torch.save(optimizer, tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / "state.json").write_text(json.dumps(state))
            dist.barrier()  # every file is written

        if dist.is_main():
            atomic_save_dir(ckpt_dir, write)
        else:
            dist.barrier()
            torch.save(rng_state(), checkpoint_temps(ckpt_dir)[0] / f"rng_{dist.rank()}.pt")
            dist.barrier()
        dist.barrier()  # renamed into place before anyone goes on

    def load_checkpoint(self, ckpt_dir: Path, scheduler: Any) -> None:
        """Optimizer, scheduler and this process's RNG state from `ckpt_dir` (the trainable weights were
        loaded into the caller's modules before this trainer was made). Every process reads the files."""
        optimizer = torch.load(ckpt_dir / "optimizer.pt", weights_only=True)
        set_optimizer_state_dict(
            self.wrapped, self._prepared_optimizer(), optimizer, options=StateDictOptions(full_state_dict=True)
        )
        scheduler.load_state_dict(torch.load(ckpt_dir / "scheduler.pt", weights_only=True))
        set_rng_state(torch.load(ckpt_dir / f"rng_{dist.rank()}.pt", weights_only=False))

    @torch.no_grad()
    def evaluate(
        self, data: Sequence[dict[str, list[int]]], batch_size: int, collate_fn: Callable[..., dict[str, torch.Tensor]],
        device: torch.device, autocast: Callable[[], AbstractContextManager[Any]],
    ) -> dict[str, float]:
        """Mean of each objective term over `data` weighted by batch size, as `loop.evaluate_loss`, with
        the batches shared out over processes (padded so every process runs as many forwards) and the sums
        added up; every process gets the same values, so early stopping decides the same everywhere."""
        starts = list(range(0, len(data), batch_size))
        was_training = self.wrapped.training
        self.wrapped.eval()
        totals: dict[str, float] = {}
        count = 0
        for start, real in dist.shard(starts, pad_with=starts[0]):
            batch = {k: v.to(device) for k, v in collate_fn(data[start : start + batch_size]).items()}
            with autocast():
                out = self.wrapped(batch)
            n = batch["input_ids"].shape[0] if real else 0
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
        self.wrapped.train(was_training)
        keys = list(totals)  # the objective's order, the same on every process (each runs as many forwards)
        summed = dist.sum_over_ranks([*(totals[k] for k in keys), count])
        return {k: v / max(summed[-1], 1.0) for k, v in zip(keys, summed[:-1])}

    def finish(self, model: nn.Module, best: dict[str, torch.Tensor] | None) -> None:
        """Leave the caller's `model` with the `best` validated weights (a trainable state dict), else
        the trained ones, on every process, and release the wrappers. Under FSDP the trained copy's
        weights are gathered into `model`; `aux` stays sharded (it is discarded after training)."""
        if not self.fsdp:
            if best is not None:
                load_trainable(self.module, best)
        else:
            state = best if best is not None else self.trainable_state(everywhere=True)
            load_trainable(model, {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        self.wrapped = self.module
        self.optimizer = None
        self.accelerator.free_memory()
