"""`distill2edge` under FSDP on CPU, for tests only: `accelerate launch --use_fsdp ... tests/train/fsdp_cpu_main.py ARGS`.

accelerate 1.15 applies FSDP only on GPUs and other accelerators: on CPU it sets up MULTI_CPU and
`prepare` wraps the model in DDP, ignoring `--use_fsdp`. PyTorch's FSDP2 (`fully_shard`) itself runs
on CPU with gloo, so this entry point builds the FSDP plugin from the FSDP_* variables that
`accelerate launch --use_fsdp` sets and forces accelerate's shared state to FSDP before running the
command line, so the training loop's FSDP code path (sharded parameters, gathered checkpoints, the
trained copy handed back) runs here. FSDP version 1 does not run on CPU (see test_distributed.py).
"""

import sys

from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from distill2edge.cli.main import main
from distill2edge.train import distributed as dist

if __name__ == "__main__":
    dist.state()  # the process group (gloo), made the way the CLI makes it
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables
    Accelerator(cpu=True, fsdp_plugin=plugin)
    # Every later AcceleratorState() copies PartialState's distributed type, so both are set.
    PartialState().distributed_type = DistributedType.FSDP
    state = AcceleratorState()
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    sys.exit(main(sys.argv[1:]))
