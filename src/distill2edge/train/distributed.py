"""Several processes, one run: rank, world size, barriers and broadcasts around `accelerate`.

A plain `python -m distill2edge ...` is one process, and then nothing here touches torch.distributed:
every helper gives the single-process answer (rank 0, world size 1, barriers and broadcasts are
no-ops), so the single-process code path is the one that existed before multi-process support.
Under `accelerate launch` (torchrun underneath; mpirun with `--cpu --mpirun_hostfile`) the launcher
sets WORLD_SIZE > 1 and the process group is created by `accelerate.PartialState` on first use: gloo
on CPU, NCCL on CUDA.

The run folder must be on a filesystem every process sees (one machine, or shared storage across
machines): the main process writes data splits, stage outputs and checkpoints, the others read them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

T = TypeVar("T")

_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")


def _env_int(names: Sequence[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def world_size() -> int:
    """Number of training processes (1 unless started by a launcher such as `accelerate launch`)."""
    return _env_int(_SIZE_VARS, 1)


def is_distributed() -> bool:
    """True when several processes train together (and only then is accelerate used)."""
    return world_size() > 1


def rank() -> int:
    """This process's global index, 0 on the main process."""
    return _env_int(_RANK_VARS, 0) if is_distributed() else 0


def local_rank() -> int:
    """This process's index on its machine (selects its GPU)."""
    return _env_int(_LOCAL_RANK_VARS, 0) if is_distributed() else 0


def is_main() -> bool:
    """True on the process that writes shared files (run manifest, stage outputs, checkpoints)."""
    return rank() == 0


def state(device: torch.device | None = None) -> PartialState:
    """The process group, created on first call: gloo when training on CPU, NCCL on CUDA.

    The first call should name the training `device` (the pipeline and the loop do); without one,
    CPU is assumed when CUDA is absent. accelerate keeps one state per process, so later calls return
    the same. Only meaningful when `is_distributed()`.
    """
    from accelerate import PartialState

    _load_full_models_everywhere()
    cpu = device.type == "cpu" if device is not None else not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _load_full_models_everywhere() -> None:
    """Turn off FSDP's "CPU-RAM-efficient loading" (`accelerate launch --use_fsdp` turns it on).

    With it, transformers' `from_pretrained` loads real weights on local rank 0 only and leaves the
    other processes' tensors uninitialised, for FSDP to broadcast when it wraps the model. The stages
    load the teacher on every process and never hand it to FSDP (it is frozen, not sharded), so every
    process but the first would distil from garbage. Weights are read on every process instead.
    """
    flag = "FSDP_CPU_RAM_EFFICIENT_LOADING"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and os.environ.get(flag, "").lower() in ("true", "1"):
        os.environ[flag] = "false"
        if rank() == 0:
            warnings.warn(
                f"{flag} (fsdp_cpu_ram_efficient_loading) turned off: every process loads the full teacher and student",
                stacklevel=3,
            )


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if is_distributed():
        state().wait_for_everyone()


def broadcast_object(obj: T) -> T:
    """The main process's `obj` on every process (any picklable value; others may pass None)."""
    if not is_distributed():
        return obj
    state()
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    """Element-wise sum of `values` over all processes, in float64 (the same result on every process)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=state().device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t.tolist()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the body on the main process first, then on the others (e.g. to fill a cache once)."""
    if not is_distributed():
        yield
        return
    with state().main_process_first():
        yield


def shard(items: Sequence[T], *, pad_with: T | None = None) -> list[tuple[T, bool]]:
    """This process's share of `items`: every world_size-th one starting at its rank.

    Each entry is (item, real). With `pad_with`, every process gets the same number of entries (the
    largest share) and the extra ones are (pad_with, False): collective operations (DDP's gradient
    all-reduce, FSDP's all-gathers) need every process to run the same number of forward passes, and
    the caller gives the padding entries zero weight.
    """
    mine = [(item, True) for item in items[rank() :: world_size()]]
    if pad_with is not None:
        longest = -(-len(items) // world_size())
        mine += [(pad_with, False)] * (longest - len(mine))
    return mine


def make_accelerator(device: torch.device) -> Accelerator:
    """An `Accelerator` for a multi-process training run; DDP or FSDP come from the launch config.

    The loop places models itself (`device_placement=False`; the pipeline gives each process its own
    GPU). DDP looks for unused parameters because some objectives own trainable modules that a given
    configuration never calls (e.g. multi-teacher projectors). DeepSpeed is refused: the loop steps
    the optimizer, accumulates gradients and writes checkpoints itself, which a DeepSpeed engine does
    its own way, and no DeepSpeed run has been tested.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import DistributedType

    accelerator = Accelerator(
        cpu=device.type == "cpu", device_placement=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        raise ValueError(
            "DeepSpeed launches are not supported by distill2edge's training loop (it accumulates, clips and "
            "checkpoints itself); launch with DDP (--multi_gpu) or FSDP (--use_fsdp; ZeRO-3 ~ FULL_SHARD, "
            "ZeRO-2 ~ SHARD_GRAD_OP)"
        )
    wants_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if wants_fsdp and kind != DistributedType.FSDP and is_main():
        warnings.warn(
            f"FSDP was asked for but accelerate set up {kind.value} (accelerate applies FSDP only on GPUs and "
            "other accelerators, not on CPU): training runs as plain data parallel", stacklevel=2,
        )
    return accelerator


def is_fsdp(accelerator: Accelerator) -> bool:
    """True when accelerate shards the model with FSDP (version 1 or 2)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP
