"""The recipe pipeline: data -> student init -> SFT (teachers, student) -> distillations -> evaluate -> report.

Every stage goes through `Run.stage`, so completed stages are reused and a killed one resumes. The
run is complete (exit 0) only when `metrics.json` and `report.md` are written. Under `accelerate launch`
the SFT and distillation stages train on every process; the other stages run on the main process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Literal

import torch

from distill2edge.atomic import write_json_atomic
from distill2edge.config import DataConfig, DistillConfig, Recipe, SFTStageConfig, TrainConfig
from distill2edge.data.splits import prepare_data, read_data
from distill2edge.output_stages import evaluate_stages, run_bench_stage, run_export_stages
from distill2edge.preflight import name_layer_error, preflight_recipe
from distill2edge.report.markdown import write_report
from distill2edge.runs import Run, StageResult, ending_status
from distill2edge.stage_keys import distill_stage_key, teacher_stage_config
from distill2edge.student_init import init_student, log_student_init
from distill2edge.tasks import get_task
from distill2edge.teacher_data import teacher_data_stages
from distill2edge.train import distributed as dist
from distill2edge.train.trainers import ProbeFactory, run_distill, run_multi_distill, run_sft

Log = Callable[[str], None]


def resolve_device(pref: str) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no CUDA device is available")
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda" and device.index is None and dist.is_distributed():
        device = torch.device("cuda", dist.local_rank())  # one GPU per process
    return device


def run_recipe(
    recipe: Recipe, out_dir: Path, *, progress: bool = True, log: Log = print,
    until: Literal["report", "distill"] = "report", distill: Collection[str] | None = None,
) -> dict[str, Any]:
    """Run every stage of `recipe` in `out_dir`; returns the metrics written to metrics.json.

    `until="distill"` stops after the distillations (no evaluation, export, bench or report) and returns
    {"models": {role: model folder}, "training": {stage: metrics}}; `distill` then names the
    distillations to run (plus those they start from; default all). Processes other than the main one
    return {} (under `accelerate launch`; the main process writes every file).
    """
    t_start = time.perf_counter()
    device = resolve_device(recipe.device)
    if dist.is_distributed():
        dist.state(device)
    if not dist.is_main():
        progress, log = False, lambda _msg: None
    config = recipe.model_dump(mode="json")
    distills = _with_upstream(recipe, distill)
    preflight_recipe(recipe)
    run = Run(out_dir, recipe.name, config, recipe.seed, str(device))
    try:
        metrics = _run_stages(recipe, run, device, progress, log, until == "distill", distills)
        if until == "distill" or not dist.is_main():
            run.finish("distilled" if until == "distill" else "complete")
            return metrics
        metrics["wall_time_s"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(out_dir / "metrics.json", metrics)
        write_report(out_dir, recipe, metrics, run.manifest)
        run.finish("complete")
    except BaseException as e:
        run.finish(ending_status(e), f"{type(e).__name__}: {e}")
        raise
    finally:
        run.close()
    return metrics


def _with_upstream(recipe: Recipe, names: Collection[str] | None) -> dict[str, DistillConfig]:
    """The distillations `names` (all when None) and those whose student they start from, in recipe order."""
    need = set(recipe.distill if names is None else names)
    if need - set(recipe.distill):
        raise ValueError(f"no distillation named {', '.join(sorted(need - set(recipe.distill)))}; "
                         f"the recipe has: {', '.join(recipe.distill)}")
    for name in reversed(recipe.distill):  # a distillation can only start from an earlier one
        if name in need and recipe.distill[name].student in recipe.distill:
            need.add(recipe.distill[name].student)
    return {n: d for n, d in recipe.distill.items() if n in need}


def _answer_probe(
    recipe: Recipe, train_cfg: TrainConfig, splits: dict[str, list], data_cfg: DataConfig, device: torch.device,
) -> ProbeFactory | None:
    """`train.eval_answers` > 0 on a task that generates answers (QA): greedy answers to that many validation
    questions at each validation, generated as the evaluate stage does (its `max_new_tokens` and batch size)."""
    return get_task(data_cfg.task).answer_probe(
        splits.get("validation") or [], train_cfg.eval_answers, data_cfg, recipe.evaluate, device,
    )


def _with_extra(splits: dict[str, list], refs: list[str], extra: dict[str, tuple[StageResult, list]]) -> dict[str, list]:
    """`splits` with the examples of the `teacher_data` stages `refs` added to the training split (only)."""
    if not refs:
        return splits
    return {**splits, "train": [*splits["train"], *(ex for ref in refs for ex in extra[ref][1])]}


def _sft_stage(
    recipe: Recipe, run: Run, role: str, sft_cfg: SFTStageConfig, base_ref: str, dtype: str,
    upstream: StageResult | None, splits: dict[str, list], data: StageResult, device: torch.device, progress: bool,
    log: Log, extra: dict[str, tuple[StageResult, list]],
) -> StageResult:
    """The SFT stage of `role` (`teacher_sft.NAME` or `student_sft`) from `base_ref`, produced by `upstream`
    (the student_init stage) or, when None, a model outside the run folder; `sft.student.extra_data` adds
    examples of the `teacher_data` stages in `extra` to its training split."""
    splits = _with_extra(splits, sft_cfg.extra_data, extra)
    def sft_fn(out: Path, work: Path) -> dict[str, Any]:
        result = run_sft(
            base_ref, splits, recipe.data, sft_cfg, out / "model", work, device=device, dtype=dtype,
            progress=progress, desc=f"sft {role}", probe=_answer_probe(recipe, sft_cfg.train, splits, recipe.data, device),
        )
        return result.metrics()

    inputs = {"data": data, **({"student_init": upstream} if upstream else {}),
              **{ref: extra[ref][0] for ref in sft_cfg.extra_data}}
    config = {"model": base_ref if upstream is None else "student_init", "sft": sft_cfg.model_dump(mode="json")}
    return run.stage(_sft_stage_name(role), config, sft_fn, inputs=inputs, log=log, ranks="all",
                     content=run.content(model=base_ref if upstream is None else None))


def _student_init_stage(
    recipe: Recipe, run: Run, splits: dict[str, list], data: StageResult, models: dict[str, str],
    producers: dict[str, StageResult | None], device: torch.device, log: Log, progress: bool = True,
) -> StageResult | None:
    """Cut the student from `student.init_from` (a model, or `teacher_sft.NAME`: that teacher's SFT stage,
    which must have run); None for a student used as is."""
    student_cfg = recipe.student
    if student_cfg.init_from is None:
        return None
    source_teacher = student_cfg.source_teacher()
    source = models[student_cfg.init_from] if source_teacher else student_cfg.init_from
    upstream = producers[student_cfg.init_from] if source_teacher else None

    def init_fn(out: Path, _work: Path) -> dict[str, Any]:
        try:
            return init_student(recipe, splits, out / "model", device, source=source, progress=progress)
        except ValueError as e:
            raise name_layer_error(e, recipe) from None

    stage = run.stage(
        "student_init", student_cfg.model_dump(mode="json"), init_fn, log=log,
        inputs={"data": data, **({upstream.name: upstream} if upstream else {})},
        content=run.content(init_from=None if upstream else student_cfg.init_from),
    )
    if not stage.reused:
        log_student_init(stage.metrics, log)
    return stage


def _distill_stage(
    recipe: Recipe, run: Run, name: str, dcfg: DistillConfig, stage_data: tuple[StageResult, dict[str, list]],
    models: dict[str, str], producers: dict[str, StageResult | None], device: torch.device, progress: bool, log: Log,
    extra: dict[str, tuple[StageResult, list]],
) -> tuple[StageResult, str]:
    """The stage `distill.NAME`: its teachers (base or SFT) and student role resolved against the models made
    so far; returns the stage and the role of the student it started from. `extra`: the `teacher_data.TEACHER`
    stages run, whose examples join the training split of the distillations that name them (`extra_data`)."""
    teacher_roles = {
        t: f"teacher_sft.{t}" if dcfg.teacher_state == "sft" else f"teacher.{t}" for t in dcfg.teacher_names()
    }
    student_role = {"base": "student_base", "sft": "student_sft"}.get(dcfg.student, f"distilled.{dcfg.student}")
    for role, what in [*((r, "teacher_state") for r in teacher_roles.values()), (student_role, "student")]:
        if role not in models:
            raise ValueError(f"distill.{name}.{what} needs {role}, but sft.{role.split('_')[0]}.enabled is false")
    d_data, d_splits = stage_data
    d_splits = _with_extra(d_splits, dcfg.extra_data, extra)
    d_data_cfg = dcfg.data or recipe.data
    teachers: dict[str, tuple[str, str]] = {t: (models[r], recipe.teachers[t].dtype) for t, r in teacher_roles.items()}
    student_ref = models[student_role]

    def distill_fn(out: Path, work: Path) -> dict[str, Any]:
        common: dict[str, Any] = {
            "device": device, "student_dtype": recipe.student.dtype, "progress": progress, "desc": f"distill {name}",
            "probe": _answer_probe(recipe, dcfg.train, d_splits, d_data_cfg, device),
        }
        if dcfg.algorithm == "multi_teacher":
            result = run_multi_distill(teachers, student_ref, d_splits, d_data_cfg, dcfg, out / "model", work,
                                       stage=f"distill.{name}", **common)
        else:
            (t_ref, t_dtype), = teachers.values()
            t_cfg = recipe.teachers[dcfg.teacher_names()[0]]
            result = run_distill(
                t_ref, student_ref, d_splits, d_data_cfg, dcfg, out / "model", work, teacher_dtype=t_dtype,
                cache_root=run.root / "cache" / "teacher", teacher_device=t_cfg.device,
                teacher_offload=t_cfg.offload, **common,
            )
        return result.metrics()

    inputs = {d_data.name: d_data, **{ref: extra[ref][0] for ref in dcfg.extra_data}}
    for role in (*teacher_roles.values(), student_role):
        if (producer := producers[role]) is not None:
            inputs[producer.name] = producer
    config = {
        "distill": distill_stage_key(dcfg), "student": student_role,
        **teacher_stage_config(dcfg, teacher_roles, models, producers, recipe),
    }
    content = run.content(**{r: models[r] for r in (*teacher_roles.values(), student_role) if producers[r] is None})
    stage = run.stage(f"distill.{name}", config, distill_fn, inputs=inputs, log=log, ranks="all", content=content)
    return stage, student_role


def _run_stages(
    recipe: Recipe, run: Run, device: torch.device, progress: bool, log: Log, train_only: bool,
    distills: dict[str, DistillConfig],
) -> dict[str, Any]:
    rdata = recipe.data
    data = run.stage("data", rdata.model_dump(mode="json"), lambda out, _w: prepare_data(rdata, out, log=log), log=log,
                     content=run.content(source=rdata.source))
    splits = read_data(rdata, data.out_dir)
    stage_data = _stage_data(recipe, distills, run, data, splits, log)

    student_cfg = recipe.student
    models: dict[str, str] = {f"teacher.{t}": cfg.path for t, cfg in recipe.teachers.items()}
    producers: dict[str, StageResult | None] = {role: None for role in models}
    stages: dict[str, StageResult] = {}
    starts: dict[str, str] = {}  # training stage -> the role of the model it starts from
    extra: dict[str, tuple[StageResult, list]] = {}  # teacher_data.TEACHER -> (stage, its examples)

    def add_sft(role: str, sft_cfg: SFTStageConfig, base_ref: str, dtype: str, upstream: StageResult | None) -> None:
        stage = _sft_stage(recipe, run, role, sft_cfg, base_ref, dtype, upstream, splits, data, device, progress, log,
                           extra)
        stages[stage.name] = stage
        starts[stage.name] = "student_base" if role == "student_sft" else role.replace("teacher_sft.", "teacher.")
        models[role], producers[role] = str(stage.out_dir / "model"), stage

    def cut_student() -> StageResult | None:
        # Layers cut from a same-family model (or a fine-tuned teacher), or a model used as is; the layer maps
        # are checked against it before anything trains (or, cut from a teacher's SFT, right after that SFT).
        init = _student_init_stage(recipe, run, splits, data, models, producers, device, log, progress)
        models["student_base"] = str(init.out_dir / "model") if init else str(student_cfg.path)
        producers["student_base"] = init
        _preflight_layer_maps(recipe, models["student_base"])
        return init

    student_init = None if student_cfg.source_teacher() else cut_student()
    # SFT of every teacher that a distillation, the student's initialisation or the evaluation asks for.
    wanted = set() if train_only else set(recipe.roles()) if "all" in recipe.evaluate.models else set(recipe.evaluate.models)
    student_sft = recipe.sft.student.enabled and ("student_sft" in wanted or any(d.student == "sft" for d in distills.values()))
    extra_data = {ref for d in distills.values() for ref in d.extra_data} | set(recipe.sft.student.extra_data if student_sft else [])
    for t, cfg in recipe.teachers.items():
        used = t == student_cfg.source_teacher() or f"teacher_data.{t}" in extra_data or any(
            t in d.teacher_names() and d.teacher_state == "sft" for d in distills.values())
        if recipe.sft.teacher.enabled and (used or f"teacher_sft.{t}" in wanted):
            add_sft(f"teacher_sft.{t}", recipe.sft.teacher, cfg.path, cfg.dtype, None)
    # Extra training examples the SFT teachers write about the training contexts (`teacher_data`).
    extra |= teacher_data_stages(recipe, run, extra_data, models, producers, data, splits, device, progress, log)
    if student_cfg.source_teacher():
        student_init = cut_student()
    if student_sft:
        add_sft("student_sft", recipe.sft.student, models["student_base"], student_cfg.dtype, student_init)

    # Distillations, in recipe order (a later one may start from an earlier one's student).
    for name, dcfg in distills.items():
        stage, student_role = _distill_stage(
            recipe, run, name, dcfg, stage_data[name], models, producers, device, progress, log, extra)
        stages[stage.name] = stage
        starts[stage.name] = student_role
        models[f"distilled.{name}"], producers[f"distilled.{name}"] = str(stage.out_dir / "model"), stage
    if train_only:
        trained = {r: m for r, m in models.items() if (made := producers[r]) is not None and made.name in stages}
        return {"models": trained, "training": {name: s.metrics for name, s in stages.items()}}
    if not run.main_only_from_here():
        return {}  # training is over; the main process evaluates, exports and benchmarks alone

    # Evaluation of each model on the test split, then exports and the bench.
    results = evaluate_stages(recipe, run, models, producers, data, splits, device, progress, log)
    export_stages = run_export_stages(recipe, run, models, producers, results, progress, log)
    exports = {name: st.metrics for name, st in export_stages.items()}
    bench = run_bench_stage(recipe, run, models, producers, export_stages, data, splits, log)
    return {
        "recipe": recipe.name,
        "models": results,
        "exports": exports,
        "bench": bench,
        "training": {name: {**s.metrics, "starts_from": starts[name]} for name, s in stages.items()},
        "student_init": student_init.metrics if student_init is not None else None,
        "data": data.metrics,
        "stage_seconds": {
            name: rec.get("seconds") for name, rec in run.manifest["stages"].items() if rec.get("status") == "complete"
        },
    }


def _preflight_layer_maps(recipe: Recipe, student_ref: str) -> None:
    """Check every multi-teacher layer map against the models' layer counts (read from their configs)
    before any stage trains, so a wrong map fails in seconds rather than after the SFT stages."""
    from transformers import AutoConfig

    from distill2edge.models.loading import resolve_model
    from distill2edge.train.multi import check_layer_maps

    def layers(ref: str) -> int:
        config = AutoConfig.from_pretrained(resolve_model(ref))
        return int((config.get_text_config() if hasattr(config, "get_text_config") else config).num_hidden_layers)

    multi = {n: d for n, d in recipe.distill.items() if d.algorithm == "multi_teacher" and d.hidden.weight > 0}
    if not multi:
        return
    try:
        n_student = layers(student_ref)
        counts = {t: layers(recipe.teachers[t].path) for d in multi.values() for t in d.teacher_names()}
    except Exception:  # noqa: BLE001 - a model that cannot be read fails in its stage, with load_model's message
        return
    for name, d in multi.items():
        check_layer_maps(d, n_student, counts, stage=f"distill.{name}")


def _stage_data(
    recipe: Recipe, distills: dict[str, DistillConfig], run: Run, data: StageResult, splits: dict[str, list], log: Log,
) -> dict[str, tuple[StageResult, dict[str, list]]]:
    """The data of each distillation: the recipe's, or its own (`distill.NAME.data`) in a stage
    `data.NAME` (distillations with identical data share the stage of the recipe's first one)."""
    out: dict[str, tuple[StageResult, dict[str, list]]] = {}
    made: dict[str, tuple[StageResult, dict[str, list]]] = {}
    first = {d.data.model_dump_json(): n for n, d in reversed(recipe.distill.items()) if d.data is not None}
    for name, dcfg in distills.items():
        if dcfg.data is None or dcfg.data == recipe.data:
            out[name] = (data, splits)
            continue
        cfg = dcfg.data
        key = cfg.model_dump_json()
        if key not in made:
            def prepare(out_dir: Path, _work: Path, _cfg: DataConfig = cfg) -> dict[str, Any]:
                return prepare_data(_cfg, out_dir, log=log)  # `_cfg` binds this iteration's data config

            st = run.stage(f"data.{first[key]}", cfg.model_dump(mode="json"), prepare, log=log,
                           content=run.content(source=cfg.source))
            made[key] = (st, read_data(cfg, st.out_dir))
        out[name] = made[key]
    return out


def _sft_stage_name(role: str) -> str:
    """`teacher_sft.NAME` -> `sft_teacher.NAME`; `student_sft` -> `sft_student`."""
    return "sft_" + role.replace("_sft", "")
