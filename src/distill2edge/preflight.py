"""Checks of a recipe's model references that take milliseconds, run before the run folder is touched.

A missing teacher folder or a student asking for more layers than its source has would otherwise fail
inside a stage, minutes in, with a message about a path or a layer count but not about the recipe
field to fix. These checks read only local paths and `config.json` files; references that need the hub
or the embedded-model cache are left to the stages (whose errors are caught and named there).
"""

from __future__ import annotations

import json
from pathlib import Path

from distill2edge.config import Recipe


def _model_refs(recipe: Recipe) -> dict[str, str]:
    """Recipe field -> model reference, for every model the recipe names directly."""
    refs = {f"teachers.{name}.path": cfg.path for name, cfg in recipe.teachers.items()}
    if recipe.student.path is not None:
        refs["student.path"] = recipe.student.path
    if recipe.student.init_from is not None and recipe.student.source_teacher() is None:
        refs["student.init_from"] = recipe.student.init_from
    return refs


def _local_layers(ref: str) -> int | None:
    """`num_hidden_layers` from a local folder's config.json (None when not local or not readable)."""
    config = Path(ref).expanduser() / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = data.get("text_config", data) if isinstance(data.get("text_config"), dict) else data
    layers = data.get("num_hidden_layers")
    return layers if isinstance(layers, int) else None


def preflight_recipe(recipe: Recipe) -> None:
    """Raise ValueError naming the recipe field for a missing local model path or impossible layer choice."""
    from distill2edge.models.loading import ModelLoadError, resolve_model

    for field, ref in _model_refs(recipe).items():
        if ref.startswith("embedded:"):
            continue
        try:
            resolve_model(ref)
        except (FileNotFoundError, ModelLoadError) as e:
            raise ValueError(f"{field}: {e}") from None
    student, source = recipe.student, recipe.student_source_ref()
    if source is None:
        return
    total = _local_layers(source)
    if total is None:
        return
    if student.num_layers is not None and student.num_layers > total:
        raise ValueError(f"student.num_layers: {student.num_layers} is more than the {total} layers of "
                         f"student.init_from ({student.init_from})")
    bad = [i for i in (student.layers if isinstance(student.layers, list) else []) if not 0 <= i < total]
    if bad:
        raise ValueError(f"student.layers: {bad} out of range for the {total} layers of student.init_from "
                         f"({student.init_from}: 0..{total - 1})")


def name_layer_error(error: ValueError, recipe: Recipe) -> ValueError:
    """A pruning error (from a model that was not local at preflight) prefixed with its recipe field."""
    field = "student.num_layers" if recipe.student.num_layers is not None else "student.layers"
    return ValueError(f"{field}: {error} (student.init_from: {recipe.student.init_from})")
