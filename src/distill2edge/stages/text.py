"""Stages `text.NAME`: a recipe's file of unlabelled text (`texts.NAME`) read into passages.

The stage writes `passages.jsonl` (the `TextExample`s, as `teacher_data` writes its passages) and
`stats.json`; its key holds the file's content digest and the settings, so an edited file re-runs it and
the distillations that name it in `extra_data`, and an unchanged one is reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill2edge.atomic import write_json_atomic
from distill2edge.data.examples import TextExample
from distill2edge.data.text import read_passages, read_passages_jsonl, write_passages_jsonl
from distill2edge.runs import StageResult
from distill2edge.schema.texts import TextSourceConfig
from distill2edge.stages.context import Context


def write_text_stage(cfg: TextSourceConfig, out_dir: Path, name: str) -> dict[str, Any]:
    """Read `cfg.path` into `out_dir/passages.jsonl`; returns the stats (passages, words)."""
    passages = read_passages(cfg.path, cfg, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_passages_jsonl(passages, out_dir / "passages.jsonl")
    stats = {"passages": len(passages), "words": sum(len(p.text.split()) for p in passages)}
    write_json_atomic(out_dir / "stats.json", stats)
    return stats


def read_text_stage(stage: StageResult) -> list[TextExample]:
    """The passages a `text.NAME` stage wrote."""
    return read_passages_jsonl(stage.out_dir / "passages.jsonl")


def text_stages(ctx: Context, names: set[str]) -> None:
    """Run (or reuse) the stages `text.NAME` in `names` into `ctx.extra`, with their passages."""
    for text, cfg in ctx.recipe.texts.items():
        name = f"text.{text}"
        if name not in names:
            continue

        def fn(o: Path, _w: Path, _c: TextSourceConfig = cfg, _n: str = name) -> dict[str, Any]:
            return write_text_stage(_c, o, _n)

        stage = ctx.run.stage(name, {"texts": cfg.model_dump(mode="json")}, fn, log=ctx.log,
                              content=ctx.run.content(file=cfg.path))
        if not stage.reused:
            ctx.log(f"[{name}] {stage.metrics['passages']} passages, {stage.metrics['words']:,} words from {cfg.path}")
        ctx.extra[name] = (stage, read_text_stage(stage))
