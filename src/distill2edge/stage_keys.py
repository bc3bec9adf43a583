"""What a distillation stage's key is made of, beside the run's inputs.

`Run.stage` keys a stage by its config, its input stages and the content of the files it reads
(`content_keys`). This module builds the config part for a distillation: the stage's `DistillConfig`
without what cannot change the result (`cache.dir`), plus the version of its loss definition
(`LOSS_DEFINITION`), so that a stage trained under an older definition is recomputed rather than
reused; and the teacher part (a model reference, or the role of the stage that made it).
"""

from __future__ import annotations

from typing import Any

from distill2edge.config import DistillConfig, Recipe
from distill2edge.runs import StageResult
from distill2edge.schema.algorithms import algorithm_spec

LOSS_DEFINITION = {"vanilla": 2, "dskd": 2, "uld": 2}
"""Version of each loss family's definition: bumped when what it computes changes, so stages trained
under an older definition get another key and are recomputed, not reused (issue 15: 2 = DSKD, DSKD-CMA
and ULD as their reference implementations; vanilla KD's token-mean divergence without the T² factor,
as TRL's GKD and torchtune)."""


def _loss_families(dcfg: DistillConfig) -> list[str]:
    """The loss families (keys of `LOSS_DEFINITION`) a distillation computes. A multi-teacher `kd: auto`
    teacher counts as vanilla KD: on a shared vocabulary it becomes `kd: logits`, which the key cannot
    tell before the models load."""
    # Vanilla KD changed only by dropping T² (version 2): at T = 1 both definitions compute the same loss,
    # so such stages keep their key and are reused.
    vanilla_changed = dcfg.loss.temperature != 1.0
    spec = algorithm_spec(dcfg.algorithm)
    if not spec.several_teachers:
        family = spec.loss_family
        return [] if family is None or (family == "vanilla" and not vanilla_changed) else [family]
    kinds = {t.kd for t in dcfg.teachers.values()} or {"auto"}
    families = (("vanilla", {"logits", "auto"} if vanilla_changed else set()), ("dskd", {"dskd"}))
    return [f for f, ks in families if kinds & ks]


def distill_stage_key(dcfg: DistillConfig) -> dict[str, Any]:
    """A distillation's config as it enters the stage key: where a teacher cache lives does not change
    the result, so `cache.dir` is left out; the version of the loss definition is in: the version of its
    loss family, or {family: version} for a multi-teacher stage that mixes vanilla and DSKD teachers."""
    dumped = dcfg.model_dump(mode="json")
    dumped.get("cache", {}).pop("dir", None)
    families = _loss_families(dcfg)
    if len(families) == 1:
        dumped["loss_definition"] = LOSS_DEFINITION[families[0]]
    elif families:
        dumped["loss_definition"] = {f: LOSS_DEFINITION[f] for f in families}
    return dumped


def teacher_stage_config(
    dcfg: DistillConfig, teacher_roles: dict[str, str], models: dict[str, str], producers: dict[str, StageResult | None],
    recipe: Recipe,
) -> dict[str, Any]:
    """The teacher part of a distillation's stage config: a model reference, or the role of the stage that
    made it (whose key is among the inputs). A single teacher keeps the keys older run folders used."""
    refs = {t: models[r] if producers[r] is None else r for t, r in teacher_roles.items()}
    if not algorithm_spec(dcfg.algorithm).several_teachers:
        (t, ref), = refs.items()
        return {"teacher": ref, "teacher_dtype": recipe.teachers[t].dtype}
    return {"teachers": {t: {"model": ref, "dtype": recipe.teachers[t].dtype} for t, ref in refs.items()}}
