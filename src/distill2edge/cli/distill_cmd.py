"""`distill2edge distill RECIPE --out DIR`: a recipe's training stages only, the command to start under
`accelerate launch` to train on several GPUs or machines."""

from __future__ import annotations

import argparse
from pathlib import Path

from distill2edge.cli.options import add_recipe_run_options

_HELP = """Run the data, SFT and distillation stages of a recipe into a run folder, without evaluation, export or
benchmarks, and print where the distilled models are. All distillations run, or the ones named with --name
plus the distillations they start from and the SFT stages they need.

Start it under `accelerate launch` to train with several processes: DDP, or FSDP from accelerate's
flags or config file (examples/accelerate/ has FSDP configs; DeepSpeed is not supported by the training
loop). The SFT and distillation stages train on every process, each optimizer step taking
grad_accum x processes micro-batches of train.batch_size, so N processes at grad_accum 1 train like one
process at grad_accum N. Data preparation, student initialisation, manifest and model saving happen on
the main process. The run folder must be visible to every process.

Running again with the same --out reuses completed stages and resumes an interrupted one from its last
checkpoint (with as many processes as wrote it). `distill2edge recipe` with the same --out later
evaluates, exports and reports, reusing these stages."""

_EPILOG = """examples:
  distill2edge distill telecom-qa --quick --out runs/x
  accelerate launch --num_processes 2 -m distill2edge distill telecom-qa --out runs/x
  accelerate launch --config_file examples/accelerate/fsdp.yaml -m distill2edge distill telecom-qa --name dskd --out runs/x
  accelerate launch --multi_gpu --num_processes 2 -m distill2edge distill my.yaml --set distill.kd.train.grad_accum=1 --out runs/x

  On a machine without GPUs, `accelerate launch --multi_gpu --num_processes 2 ...` trains on CPU (gloo).
"""


def add_distill_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `distill` on the top-level subparsers."""
    p = subparsers.add_parser(
        "distill", help="train a recipe's SFT and distillation stages only (multi-GPU with accelerate launch)",
        description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
    )
    p.add_argument("recipe", help="recipe name or YAML file")
    p.add_argument("--name", dest="names", action="append", metavar="NAME",
                   help="a distillation of the recipe to run (repeatable; default all)")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder (every process must see it); an existing one is resumed")
    add_recipe_run_options(p, set_example="distill.kd.train.batch_size=8")


def run_distill_cmd(args: argparse.Namespace) -> int:
    """Run the parsed `distill` command; 0 when every requested distillation is trained."""
    from distill2edge.config import load_recipe
    from distill2edge.pipeline import run_recipe
    from distill2edge.stages.evaluate import role_label
    from distill2edge.train import distributed as dist

    recipe = load_recipe(args.recipe, args.overrides, quick=args.quick)
    processes = f" ({dist.world_size()} processes)" if dist.is_distributed() else ""
    if dist.is_main():
        print(f"run folder: {args.out}{processes}")
    result = run_recipe(recipe, args.out, progress=not args.no_progress, until="distill", distill=args.names)
    if dist.is_main():
        for role, path in result["models"].items():
            print(f"{role_label(role)}: {path}")
    return 0
