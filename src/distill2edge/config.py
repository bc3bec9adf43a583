"""Recipes: YAML files validated by typed config classes.

A recipe is data. `load_recipe` reads the YAML, applies `--quick` and `--set a.b=c` overrides, and
validates the result against `Recipe`; unknown keys and wrong types are refused with an error that names
the file, the field path and the line (or the `--set` that gave the field).

This module is the one place callers import recipe names from. It holds no code of its own: the typed
classes live in `distill2edge.schema` (one module per recipe section) and loading (finding the file,
reading the YAML, overrides, line-aware errors) in `distill2edge.config_overrides`.
"""

from __future__ import annotations

from distill2edge.config_overrides import (
    find_recipe,
    format_validation_error,
    list_recipes,
    load_recipe,
    parse_override,
    recipes_dir,
)
from distill2edge.schema.base import RecipeError, Strict, config_hash
from distill2edge.schema.data import DataConfig, SplitConfig
from distill2edge.schema.distill import (
    CACHEABLE_ALGORITHMS,
    DistillConfig,
    DSKDConfig,
    HiddenConfig,
    KDLossConfig,
    LayerMapSpec,
    ShortcutConfig,
    TeacherCacheConfig,
    TeacherWeightConfig,
)
from distill2edge.schema.models import ModelConfig, StudentConfig, VocabularyConfig
from distill2edge.schema.recipe import BenchConfig, EvaluateConfig, ExportConfig, Recipe
from distill2edge.schema.teacher_data import TeacherDataConfig
from distill2edge.schema.texts import TextSourceConfig
from distill2edge.schema.training import (
    EarlyStoppingConfig,
    LoraConfig,
    SFTConfig,
    SFTStageConfig,
    TrainConfig,
)
from distill2edge.tasks.spec import CLASSIFY_TEMPLATE, QA_TEMPLATE

__all__ = [
    "CACHEABLE_ALGORITHMS",
    "CLASSIFY_TEMPLATE",
    "QA_TEMPLATE",
    "BenchConfig",
    "DSKDConfig",
    "DataConfig",
    "DistillConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "ExportConfig",
    "HiddenConfig",
    "KDLossConfig",
    "LayerMapSpec",
    "LoraConfig",
    "ModelConfig",
    "Recipe",
    "RecipeError",
    "SFTConfig",
    "SFTStageConfig",
    "ShortcutConfig",
    "SplitConfig",
    "Strict",
    "StudentConfig",
    "TeacherCacheConfig",
    "TeacherDataConfig",
    "TeacherWeightConfig",
    "TextSourceConfig",
    "TrainConfig",
    "VocabularyConfig",
    "config_hash",
    "find_recipe",
    "format_validation_error",
    "list_recipes",
    "load_recipe",
    "parse_override",
    "recipes_dir",
]
