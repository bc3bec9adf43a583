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

from distill2edge.config import DistillConfig, Recipe
from distill2edge.data.splits import prepare_data, read_data
from distill2edge.evaluate.classify import evaluate_classifier
from distill2edge.evaluate.generate import evaluate_model
from distill2edge.evaluate.likelihood import answer_cross_entropy
from distill2edge.export.profiles import load_profile
from distill2edge.export.stage import export_for_profile
from distill2edge.models import DTYPES, load_model
from distill2edge.preflight import name_layer_error, preflight_recipe
from distill2edge.report.markdown import write_report
from distill2edge.runs import Run, StageResult, ending_status, write_json_atomic
from distill2edge.student_init import init_student, log_student_init
from distill2edge.train import distributed as dist
from distill2edge.train.stages import run_distill, run_multi_distill, run_sft

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


def _run_stages(
    recipe: Recipe, run: Run, device: torch.device, progress: bool, log: Log, train_only: bool,
    distills: dict[str, DistillConfig],
) -> dict[str, Any]:
    data_cfg = recipe.data
    data = run.stage("data", data_cfg.model_dump(mode="json"), lambda out, _w: prepare_data(data_cfg, out, log=log),
                     log=log, content=run.content(source=data_cfg.source))
    splits = read_data(data_cfg, data.out_dir)
    stage_data = _stage_data(recipe, distills, run, data, splits, log)

    # Student initialisation (layer pruning of a same-family model), or a model used as is.
    student_cfg = recipe.student
    student_init: StageResult | None = None
    if student_cfg.init_from is not None:
        def init_fn(out: Path, _work: Path) -> dict[str, Any]:
            try:
                return init_student(recipe, splits, out / "model", device)
            except ValueError as e:
                raise name_layer_error(e, recipe) from None

        student_init = run.stage(
            "student_init", student_cfg.model_dump(mode="json"), init_fn, inputs={"data": data}, log=log,
            content=run.content(init_from=student_cfg.init_from),
        )
        if not student_init.reused:
            log_student_init(student_init.metrics, log)
        student_base_ref = str(student_init.out_dir / "model")
    else:
        student_base_ref = str(student_cfg.path)
    _preflight_layer_maps(recipe, student_base_ref)
    models: dict[str, str] = {f"teacher.{t}": cfg.path for t, cfg in recipe.teachers.items()}
    models["student_base"] = student_base_ref
    producers: dict[str, StageResult | None] = {role: None for role in models}
    producers["student_base"] = student_init
    stages: dict[str, StageResult] = {}
    starts: dict[str, str] = {}  # training stage -> the role of the model it starts from

    # SFT of every teacher (and of the student) that a distillation or the evaluation asks for.
    wanted = set() if train_only else set(recipe.roles()) if "all" in recipe.evaluate.models else set(recipe.evaluate.models)
    sft_jobs = [
        (f"teacher_sft.{t}", recipe.sft.teacher, cfg.path, cfg.dtype, None,
         any(t in d.teacher_names() and d.teacher_state == "sft" for d in distills.values()))
        for t, cfg in recipe.teachers.items()
    ]
    sft_jobs.append((
        "student_sft", recipe.sft.student, student_base_ref, student_cfg.dtype, student_init,
        any(d.student == "sft" for d in distills.values()),
    ))
    for role, sft_cfg, base_ref, dtype, upstream, used in sft_jobs:
        if not (sft_cfg.enabled and (used or role in wanted)):
            continue

        def sft_fn(out: Path, work: Path, _ref=base_ref, _cfg=sft_cfg, _dtype=dtype, _role=role) -> dict[str, Any]:
            result = run_sft(
                _ref, splits, data_cfg, _cfg, out / "model", work, device=device, dtype=_dtype,
                progress=progress, desc=f"sft {_role}",
            )
            return result.metrics()

        inputs = {"data": data, **({"student_init": upstream} if upstream else {})}
        config = {"model": base_ref if upstream is None else "student_init", "sft": sft_cfg.model_dump(mode="json")}
        stage = run.stage(_sft_stage_name(role), config, sft_fn, inputs=inputs, log=log, ranks="all",
                          content=run.content(model=base_ref if upstream is None else None))
        stages[stage.name] = stage
        starts[stage.name] = "student_base" if role == "student_sft" else role.replace("teacher_sft.", "teacher.")
        models[role], producers[role] = str(stage.out_dir / "model"), stage

    # Distillations, in recipe order (a later one may start from an earlier one's student).
    for name, dcfg in distills.items():
        teacher_roles = {
            t: f"teacher_sft.{t}" if dcfg.teacher_state == "sft" else f"teacher.{t}" for t in dcfg.teacher_names()
        }
        student_role = {"base": "student_base", "sft": "student_sft"}.get(dcfg.student, f"distilled.{dcfg.student}")
        for role, what in [*((r, "teacher_state") for r in teacher_roles.values()), (student_role, "student")]:
            if role not in models:
                raise ValueError(f"distill.{name}.{what} needs {role}, but sft.{role.split('_')[0]}.enabled is false")
        d_data, d_splits = stage_data[name]
        d_data_cfg = dcfg.data or data_cfg

        def distill_fn(
            out: Path, work: Path, _d=dcfg, _n=name, _splits=d_splits, _dc=d_data_cfg,
            _teachers={t: (models[r], recipe.teachers[t].dtype) for t, r in teacher_roles.items()},
            _s=models[student_role],
        ) -> dict[str, Any]:
            common = {
                "device": device, "student_dtype": student_cfg.dtype, "progress": progress, "desc": f"distill {_n}",
            }
            if _d.algorithm == "multi_teacher":
                result = run_multi_distill(_teachers, _s, _splits, _dc, _d, out / "model", work, stage=f"distill.{_n}", **common)
            else:
                (t_ref, t_dtype), = _teachers.values()
                t_cfg = recipe.teachers[_d.teacher_names()[0]]
                result = run_distill(
                    t_ref, _s, _splits, _dc, _d, out / "model", work, teacher_dtype=t_dtype,
                    cache_root=run.root / "cache" / "teacher", teacher_device=t_cfg.device,
                    teacher_offload=t_cfg.offload, **common,
                )
            return result.metrics()

        d_inputs = {d_data.name: d_data}
        for role in (*teacher_roles.values(), student_role):
            if producers[role] is not None:
                d_inputs[producers[role].name] = producers[role]
        d_config = {
            "distill": _distill_key(dcfg), "student": student_role,
            **_teacher_config(dcfg, teacher_roles, models, producers, recipe),
        }
        d_content = run.content(**{r: models[r] for r in (*teacher_roles.values(), student_role) if producers[r] is None})
        stage = run.stage(f"distill.{name}", d_config, distill_fn, inputs=d_inputs, log=log, ranks="all", content=d_content)
        stages[stage.name] = stage
        starts[stage.name] = student_role
        models[f"distilled.{name}"], producers[f"distilled.{name}"] = str(stage.out_dir / "model"), stage
    if train_only:
        trained = {r: m for r, m in models.items() if producers[r] is not None and producers[r].name in stages}
        return {"models": trained, "training": {name: s.metrics for name, s in stages.items()}}
    if not run.main_only_from_here():
        return {}  # training is over; the main process evaluates, exports and benchmarks alone

    # Evaluation of each model on the test split.
    ecfg = recipe.evaluate
    roles = [r for r in recipe.roles() if r in models] if "all" in ecfg.models else list(ecfg.models)
    results: dict[str, dict[str, Any]] = {}
    for role in roles:
        if role not in models:
            log(f"[evaluate] skipping {role}: not produced by this recipe")
            continue
        ref = models[role]
        dtype = recipe.teachers[role.split(".", 1)[1]].dtype if role.startswith("teacher") else student_cfg.dtype

        def eval_fn(out: Path, _work: Path, _ref=ref, _role=role, _dtype=dtype) -> dict[str, Any]:
            model, tok = load_model(_ref, dtype=DTYPES[_dtype], device=device)
            if data_cfg.task == "classification":
                summary = evaluate_classifier(
                    model, tok, splits["test"], out, labels=data_cfg.label_set(), template=data_cfg.prompt_template,
                    verbalizers=data_cfg.verbalizers, max_length=data_cfg.max_length, batch_size=ecfg.batch_size,
                    device=device, progress=progress,
                )
                summary["params"] = sum(p.numel() for p in model.parameters())
                return summary
            summary = evaluate_model(
                model, tok, splits["test"], out, template=data_cfg.prompt_template, max_length=data_cfg.max_length,
                max_new_tokens=ecfg.max_new_tokens, metrics=ecfg.metrics, batch_size=ecfg.batch_size,
                device=device, progress=progress, desc=f"evaluate {_role}",
            )
            summary["params"] = sum(p.numel() for p in model.parameters())
            summary["answer_ce"] = answer_cross_entropy(
                model, tok, splits["test"], template=data_cfg.prompt_template, max_length=data_cfg.max_length,
                batch_size=ecfg.batch_size, device=device,
            )
            return summary

        producer = producers[role]
        e_inputs = {"data": data, **({producer.name: producer} if producer is not None else {})}
        e_config = {
            "model": ref if producer is None else role, "dtype": dtype, "evaluate": ecfg.model_dump(mode="json"),
            "answer_ce": True,
        }
        stage = run.stage(f"evaluate_{role}", e_config, eval_fn, inputs=e_inputs, log=log,
                          content=run.content(model=ref if producer is None else None))
        results[role] = {"role": role_label(role), "model": ref, **stage.metrics}

    export_stages = _export_stages(recipe, run, models, producers, results, progress, log)
    exports = {name: st.metrics for name, st in export_stages.items()}
    bench = _bench_stage(recipe, run, models, producers, export_stages, data, splits, log)
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
            st = run.stage(f"data.{first[key]}", cfg.model_dump(mode="json"), lambda o, _w, _c=cfg: prepare_data(_c, o, log=log),
                           log=log, content=run.content(source=cfg.source))
            made[key] = (st, read_data(cfg, st.out_dir))
        out[name] = made[key]
    return out


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
    if dcfg.algorithm in ("dskd", "dskd_cma"):
        return ["dskd"]
    if dcfg.algorithm == "uld" or (dcfg.algorithm == "vanilla" and vanilla_changed):
        return [dcfg.algorithm]
    if dcfg.algorithm != "multi_teacher":
        return []
    kinds = {t.kd for t in dcfg.teachers.values()} or {"auto"}
    families = (("vanilla", {"logits", "auto"} if vanilla_changed else set()), ("dskd", {"dskd"}))
    return [f for f, ks in families if kinds & ks]


def _distill_key(dcfg: DistillConfig) -> dict[str, Any]:
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


def _teacher_config(
    dcfg: DistillConfig, teacher_roles: dict[str, str], models: dict[str, str], producers: dict[str, StageResult | None],
    recipe: Recipe,
) -> dict[str, Any]:
    """The teacher part of a distillation's stage config: a model reference, or the role of the stage that
    made it (whose key is among the inputs). A single teacher keeps the keys older run folders used."""
    refs = {t: models[r] if producers[r] is None else r for t, r in teacher_roles.items()}
    if dcfg.algorithm != "multi_teacher":
        (t, ref), = refs.items()
        return {"teacher": ref, "teacher_dtype": recipe.teachers[t].dtype}
    return {"teachers": {t: {"model": ref, "dtype": recipe.teachers[t].dtype} for t, ref in refs.items()}}


def best_distilled(recipe: Recipe, results: dict[str, dict[str, Any]]) -> str:
    """The distilled role with the best test score (token F1 if evaluated, else the first metric)."""
    metrics = recipe.evaluate.metrics
    metric = next((m for m in ("token_f1", "macro_f1") if m in metrics), metrics[0])
    scored = [(r[metric], role) for role, r in results.items() if role.startswith("distilled.") and metric in r]
    if not scored:
        raise ValueError("export.models: best_distilled needs at least one evaluated distilled model")
    return max(scored)[1]


def _export_stages(
    recipe: Recipe, run: Run, models: dict[str, str], producers: dict[str, StageResult | None],
    results: dict[str, dict[str, Any]], progress: bool, log: Log,
) -> dict[str, StageResult]:
    """One export stage per (model, device profile); gate failures are recorded, not raised, by default.
    Stage metrics: what `export_for_profile` returns plus `role` and `chosen_as`."""
    xcfg = recipe.export
    exports: dict[str, StageResult] = {}
    for spec in xcfg.models:
        role = best_distilled(recipe, results) if spec == "best_distilled" else spec
        producer = producers[role]
        for profile in xcfg.profiles:
            prof = load_profile(profile)

            def export_fn(out: Path, _work: Path, _ref=models[role], _prof=prof, _role=role, _spec=spec) -> dict[str, Any]:
                record = export_for_profile(Path(_ref), _prof, out, raise_on_gate=xcfg.on_gate_failure == "fail")
                return {"role": _role, "chosen_as": _spec, **record}

            inputs = {producer.name: producer} if producer is not None else {}
            config = {
                "model": models[role] if producer is None else role, "profile": prof.model_dump(mode="json"),
                "on_gate_failure": xcfg.on_gate_failure,
            }
            stage = run.stage(f"export_{role}.{prof.name}", config, export_fn, inputs=inputs, log=log,
                              content=run.content(model=models[role] if producer is None else None))
            exports[stage.name] = stage
    return exports


def _bench_stage(
    recipe: Recipe, run: Run, models: dict[str, str], producers: dict[str, StageResult | None],
    export_stages: dict[str, StageResult], data: StageResult, splits: dict[str, list], log: Log,
) -> dict[str, Any] | None:
    """Benchmark every teacher (SFT version when there is one, torch) against the exported student: its
    torch folder and each export that passed its gates. Returns bench.json's per-model summary."""
    bcfg = recipe.bench
    if not bcfg.enabled:
        return None
    exports = {name: st.metrics for name, st in export_stages.items()}
    from distill2edge.bench import BenchModel
    from distill2edge.bench.api import run_bench, settings_for_recipe

    entries: list[tuple[str, str, str]] = []  # (role, path, name)
    inputs: dict[str, StageResult] = {"data": data}
    # The teachers the distillations learn from (a recipe may name others for the grid), SFT version if made.
    used = [t for t in recipe.teachers if any(t in d.teacher_names() for d in recipe.distill.values())]
    for t in used or list(recipe.teachers):
        role = f"teacher_sft.{t}" if f"teacher_sft.{t}" in models else f"teacher.{t}"
        entries.append(("teacher", models[role], role))
    students = dict.fromkeys(e["role"] for e in exports.values() if e["status"] == "exported")
    for role in students:
        entries.append(("student", models[role], f"{role} (torch)"))
    for stage_name, e in exports.items():
        if e["status"] == "exported":
            entries.append(("student", str(run.stages_dir / stage_name / e["artifact"]), f"{e['role']} ({e['profile']})"))
            inputs[stage_name] = export_stages[stage_name]
    for role, _path, name in entries:
        producer = producers.get(name.split(" ")[0])
        if producer is not None:
            inputs[producer.name] = producer
    test = splits["test"][: bcfg.max_questions]

    def bench_fn(out: Path, _work: Path) -> dict[str, Any]:
        result = run_bench(
            [BenchModel(Path(path), role, name=name) for role, path, name in entries], test, out,
            settings=settings_for_recipe(recipe, threads=bcfg.threads, batch_size=bcfg.batch_size), log=log,
        )
        return {"models": [_bench_summary(r) for r in result["models"]], "bandwidth_gb_s": result["bandwidth"]["read_gb_s"]}

    config = {"bench": bcfg.model_dump(mode="json"), "models": [(r, n) for r, _p, n in entries]}
    content = run.content(**{name: path for _r, path, name in entries if producers.get(name.split(" ")[0]) is None
                             and not path.startswith(str(run.root))})
    return run.stage("bench", config, bench_fn, inputs=inputs, log=log, content=content).metrics


def _bench_summary(rec: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "role", "format", "params", "file_bytes", "decode_tokens_per_s", "questions_per_s", "peak_rss_mb")
    out = {k: rec.get(k) for k in keys}
    out["ms_per_answer"] = rec.get("answer_ms", {}).get("mean")
    out["roofline_fraction"] = (rec.get("roofline") or {}).get("fraction")
    out.update({m: v for m, v in (rec.get("accuracy") or {}).items()})
    return out


def _sft_stage_name(role: str) -> str:
    """`teacher_sft.NAME` -> `sft_teacher.NAME`; `student_sft` -> `sft_student`."""
    return "sft_" + role.replace("_sft", "")


def role_label(role: str) -> str:
    """A readable name for a model role, e.g. `distilled.dskd` -> `student distilled: dskd`."""
    kind, _, name = role.partition(".")
    return {
        "teacher": f"teacher {name} (base)",
        "teacher_sft": f"teacher {name} (SFT)",
        "student_base": "student (base)",
        "student_sft": "student (SFT)",
        "distilled": f"student distilled: {name}",
    }[kind]
