"""distill2edge: fine-tune, distill and export small language models for edge devices.

The Python API, one function per CLI command (see `distill2edge.api`):

    import distill2edge as d2e

    recipe = d2e.load_recipe("telecom-qa", quick=True)       # distill2edge recipe show telecom-qa --quick
    run = d2e.run_recipe(recipe, "runs/tq")                   # distill2edge recipe telecom-qa --quick --out runs/tq
    d2e.export_gguf(MODEL_DIR, "student.q8_0.gguf")           # distill2edge export gguf MODEL_DIR --out ...
    d2e.export_onnx(MODEL_DIR, "student-onnx")                # distill2edge export onnx MODEL_DIR --out ...
    d2e.run_bench([MODEL_DIR], "bench")                       # distill2edge bench MODEL_DIR --out bench
    d2e.evaluate_models([MODEL_DIR], "eval")                  # distill2edge evaluate MODEL_DIR --out eval

The names load on first use, so `import distill2edge` does not import torch. The evaluation function is
`evaluate_models`, not `evaluate`: `distill2edge.evaluate` is the subpackage, and Python rebinds the package
attribute to it as soon as it is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distill2edge._version import __version__

__all__ = [
    "Evaluation", "ExportResult", "RecipeRun", "__version__",
    "evaluate_models", "export_gguf", "export_onnx", "load_recipe", "run_bench", "run_recipe",
]

_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from distill2edge.api import (
        Evaluation,
        ExportResult,
        RecipeRun,
        evaluate_models,
        export_gguf,
        export_onnx,
        load_recipe,
        run_bench,
        run_recipe,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from distill2edge import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'distill2edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
