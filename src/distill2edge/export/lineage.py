"""Where an exported model comes from: its origin on the Hugging Face Hub, licence, teacher, recipe stage.

The same facts feed the GGUF's `general.*` keys (name, basename, size_label, finetune, licence, base
models: what llama.cpp's convert_hf_to_gguf.py writes through gguf-py's `Metadata`) and the model card's
YAML front matter (`base_model`, `license`, tags). They are read from, in order: the folder's own model
card (`README.md` front matter of a Hub download), `conversion.json` (an embedded model: its registry
entry names the Hub repository, its source GGUF the licence), `student_init.json` (a student cut from a
teacher) and a distill2edge run manifest above the folder (recipe, stage, teachers, student origin).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill2edge.models.vocab_trim import TRIM_RECORD


@dataclass
class Lineage:
    """What is known about a model folder's origin (fields stay empty for a folder of unknown origin)."""

    model_dir: str
    name: str
    basename: str | None = None
    finetune: str | None = None
    organization: str | None = None
    license: str | None = None
    base_models: list[str] = field(default_factory=list)  # Hub ids (or local references) of teacher/origin
    distilled: bool = False
    recipe: str | None = None
    manifest: str | None = None
    stage: str | None = None
    stage_metrics: dict[str, Any] = field(default_factory=dict)
    student_init: dict[str, Any] | None = None
    vocab_trim: dict[str, Any] | None = None  # `vocab_trim.json` of a student whose vocabulary was trimmed


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _card_data(folder: Path) -> dict[str, Any]:
    """YAML front matter of the folder's README.md, as huggingface_hub reads it ({} when none)."""
    if not (folder / "README.md").is_file():
        return {}
    try:
        from huggingface_hub import ModelCard

        return ModelCard.load(folder / "README.md").data.to_dict()
    except Exception:  # noqa: BLE001 - a user's malformed card must not stop an export
        return {}


def _embedded_origin(ref: str) -> tuple[str | None, str | None]:
    """(Hub repo, licence) of `embedded:NAME`; the licence is the source GGUF's `general.license`."""
    from distill2edge.models.embedded import EmbeddedModelError, cache_dir, get_embedded

    try:
        spec = get_embedded(ref)
    except EmbeddedModelError:
        return None, None
    conv = _json(cache_dir() / "models" / spec.name / "conversion.json") or {}
    return spec.hf_repo, _gguf_license(Path(conv.get("source", {}).get("gguf", "")))


def _gguf_license(path: Path) -> str | None:
    if not path.is_file():
        return None
    import gguf

    f = gguf.GGUFReader(str(path)).fields.get("general.license")
    return str(f.contents()) if f is not None else None


def _origin(ref: str | None) -> tuple[str | None, str | None]:
    """(Hub id or reference, licence) of a teacher or student origin (embedded:NAME, Hub id, path)."""
    if not ref:
        return None, None
    if ref.startswith("embedded:"):
        repo, lic = _embedded_origin(ref)
        return repo or ref, lic
    card = _card_data(Path(ref)) if Path(ref).is_dir() else {}
    return ref, card.get("license")


def find_manifest(model_dir: Path) -> Path | None:
    """A run manifest in the folder or up to three levels above (runs/X/stages/STAGE/model)."""
    for folder in (model_dir, *list(model_dir.parents)[:3]):
        if (folder / "manifest.json").is_file():
            return folder / "manifest.json"
    return None


def _from_manifest(lin: Lineage, model_dir: Path) -> None:
    path = find_manifest(model_dir)
    manifest = _json(path) if path else None
    if not manifest:
        return
    cfg = manifest.get("config", {})
    lin.manifest = str(path.resolve())  # type: ignore[union-attr]
    lin.recipe = manifest.get("recipe") or cfg.get("name")
    stage_dir = model_dir.parent if model_dir.name == "model" else model_dir
    stage = manifest.get("stages", {}).get(stage_dir.name)
    if stage is not None:
        lin.stage = stage_dir.name
        metrics = stage.get("metrics") or {}
        lin.stage_metrics = {
            k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    trained = _trained_stage(lin.stage)  # a trimmed student (stage vocabulary.ROLE) has the training stage's origin
    if trained != lin.stage:
        stage = manifest.get("stages", {}).get(trained or "") or stage
    if trained and trained != "student_init" and not trained.startswith(("distill", "sft_student")):
        _add_base(lin, (stage or {}).get("config", {}).get("model"))  # a teacher's stage (its SFT)
        lin.finetune = f"{lin.recipe}-{lin.stage}" if lin.recipe else lin.stage
        return
    lin.distilled = True
    teacher = ((stage or {}).get("config", {}).get("distill") or {}).get("teacher")
    teachers = cfg.get("teachers", {})
    if teacher in teachers:
        refs = [teachers[teacher]["path"]]
    else:  # a stage that names no teacher: the one student_init.json names, else every recipe teacher
        refs = [] if lin.student_init else [t.get("path") for t in teachers.values()]
    init_from = (cfg.get("student") or {}).get("init_from")
    if isinstance(init_from, str) and init_from.startswith("teacher_sft."):  # cut from a fine-tuned teacher
        init_from = (teachers.get(init_from.removeprefix("teacher_sft.")) or {}).get("path")
    for ref in [*refs, init_from]:
        _add_base(lin, ref)


def _trained_stage(stage: str | None) -> str | None:
    """The stage that trained a model: `vocabulary.distilled.NAME` -> `distill.NAME`,
    `vocabulary.student_sft` -> `sft_student`; any other stage is its own."""
    if not stage or not stage.startswith("vocabulary."):
        return stage
    role = stage.removeprefix("vocabulary.")
    return "sft_student" if role == "student_sft" else "distill." + role.removeprefix("distilled.")


def _add_base(lin: Lineage, ref: str | None) -> None:
    repo, lic = _origin(ref)
    if repo and repo not in lin.base_models:
        lin.base_models.append(repo)
    lin.license = lin.license or lic


def lineage(model_dir: Path) -> Lineage:
    """Collect what is known about `model_dir`'s origin (see the module docstring for the sources)."""
    model_dir = model_dir.resolve()
    lin = Lineage(model_dir=str(model_dir), name=model_dir.name)
    card = _card_data(model_dir)
    lin.license = card.get("license")
    base = card.get("base_model")
    lin.base_models = [base] if isinstance(base, str) else list(base or [])
    conv = _json(model_dir / "conversion.json")
    if conv and conv.get("name"):  # an embedded model: it *is* its Hub origin
        repo, lic = _embedded_origin(conv["name"])
        lin.license = lin.license or lic
        if repo:
            lin.base_models = lin.base_models or [repo]
    init = _json(model_dir / "student_init.json")
    if init is not None:
        lin.student_init, lin.distilled = init, True
        _add_base(lin, init.get("teacher"))
    lin.vocab_trim = _json(model_dir / TRIM_RECORD)
    _from_manifest(lin, model_dir)
    _name(lin, model_dir)
    return lin


def _name(lin: Lineage, model_dir: Path) -> None:
    """general.name / basename / finetune as upstream derives them from a Hub id, never the bare folder
    name "model" of a recipe stage (`SmolLM2 135M Instruct`; `SmolLM2 telecom-qa distill.fullseq`)."""
    import gguf

    origin = lin.base_models[0] if lin.base_models else None
    if origin and "/" in origin and not Path(origin).exists():
        full, org, basename, finetune, _version, _size = gguf.Metadata.get_model_id_components(origin)
        lin.basename, lin.organization = basename, org
        if not lin.distilled and lin.finetune is None:  # the origin itself, or a fine-tuned teacher stage
            lin.finetune = finetune
            lin.name = gguf.Metadata.id_to_title(full)
    if lin.distilled:
        stage = lin.stage or (model_dir.parent.name if model_dir.name == "model" else "distilled")
        what = " ".join(p for p in (lin.recipe, stage) if p)
        lin.finetune = what.replace(" ", "-")
        lin.name = " ".join(p for p in (lin.basename, what) if p)
    elif lin.stage:
        lin.name = " ".join(p for p in (lin.basename, lin.recipe, lin.stage) if p)
    elif not lin.basename and model_dir.name == "model":
        lin.name = model_dir.parent.name
