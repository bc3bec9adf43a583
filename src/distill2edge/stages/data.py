"""Stages `data` and `data.NAME`: the recipe's examples split into train/validation/test, and the data a
distillation names for itself (`distill.NAME.data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill2edge.config import DataConfig, DistillConfig, Recipe
from distill2edge.data.splits import prepare_data, read_data
from distill2edge.runs import Run, StageResult
from distill2edge.stages.context import Context, Log

DistillData = tuple[StageResult, dict[str, list]]


def data_stage(recipe: Recipe, run: Run, log: Log) -> DistillData:
    """The stage `data` (its key holds the data config and the source's content) and its splits."""
    rdata = recipe.data
    data = run.stage("data", rdata.model_dump(mode="json"), lambda out, _w: prepare_data(rdata, out, log=log), log=log,
                     content=run.content(source=rdata.source))
    return data, read_data(rdata, data.out_dir)


def distill_data(ctx: Context, distills: dict[str, DistillConfig]) -> dict[str, DistillData]:
    """The data of each distillation: the recipe's, or its own (`distill.NAME.data`) in a stage
    `data.NAME` (distillations with identical data share the stage of the recipe's first one)."""
    out: dict[str, DistillData] = {}
    made: dict[str, DistillData] = {}
    first = {d.data.model_dump_json(): n for n, d in reversed(ctx.recipe.distill.items()) if d.data is not None}
    for name, dcfg in distills.items():
        if dcfg.data is None or dcfg.data == ctx.recipe.data:
            out[name] = (ctx.data, ctx.splits)
            continue
        cfg = dcfg.data
        key = cfg.model_dump_json()
        if key not in made:
            def prepare(out_dir: Path, _work: Path, _cfg: DataConfig = cfg) -> dict[str, Any]:
                return prepare_data(_cfg, out_dir, log=ctx.log)  # `_cfg` binds this iteration's data config

            st = ctx.run.stage(f"data.{first[key]}", cfg.model_dump(mode="json"), prepare, log=ctx.log,
                               content=ctx.run.content(source=cfg.source))
            made[key] = (st, read_data(cfg, st.out_dir))
        out[name] = made[key]
    return out

