"""What travels with an export: `parity.json` (machine-readable) and a model card (the Ollama Modelfile is
in `ollama.py`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from distill2edge import __version__
from distill2edge.export.common import ExportError


def _source_info(model_dir: Path) -> dict[str, Any]:
    """Where the model came from: the folder, and a distill2edge run manifest if one sits beside it."""
    info: dict[str, Any] = {"model_dir": str(model_dir.resolve())}
    init = model_dir / "student_init.json"  # written by distill2edge.models.init_student_from_teacher
    if init.is_file():
        try:
            info["student_init"] = json.loads(init.read_text())
        except json.JSONDecodeError:
            pass
    for cand in (model_dir / "manifest.json", model_dir.parent / "manifest.json"):
        if cand.is_file():
            try:
                manifest = json.loads(cand.read_text())
                info["manifest"] = str(cand.resolve())
                info["recipe"] = manifest.get("recipe") or manifest.get("name")
            except json.JSONDecodeError:
                pass
            break
    return info


def parity_record(
    fmt: str, model_dir: Path, artifact: str, profile: Any, gates: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """The `parity.json` content: every gate's numbers and thresholds, plus what was exported from what."""
    return {
        "format": fmt,
        "artifact": artifact,
        "source": _source_info(model_dir),
        "profile": profile.model_dump(mode="json"),
        "gates": gates,
        "passed": all(g["passed"] for g in gates.values()),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "distill2edge": __version__,
        **extra,
    }


#: Every sidecar carries this, so a later export can tell its own files from the user's.
SIDECAR_MARK = "distill2edge"


def sidecar_paths(artifact: Path, fmt: str = "gguf") -> dict[str, Path]:
    """Where an artifact's sidecars go. A GGUF file shares its folder with other files, so its sidecars are
    named after it (`student.q8_0.gguf` -> `student.q8_0.parity.json`, `.md` model card, `.Modelfile`); an
    ONNX folder is the artifact's own (it must not exist before), so they are `parity.json` and `README.md`
    inside it, where the Hugging Face Hub looks for the card."""
    if fmt == "gguf":
        base = artifact.name.removesuffix(".gguf")
        names = {"parity": f"{base}.parity.json", "card": f"{base}.md", "modelfile": f"{base}.Modelfile"}
        return {k: artifact.parent / v for k, v in names.items()}
    return {"parity": artifact / "parity.json", "card": artifact / "README.md"}


def _is_ours(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:4096]
    except OSError:
        return False
    return f"Exported by {SIDECAR_MARK}" in head or f'"{SIDECAR_MARK}":' in head or f"written by {SIDECAR_MARK}" in head


def check_sidecars(artifact: Path) -> None:
    """Refuse (before any work) to export where a sidecar name is taken by a file distill2edge did not write:
    the user's README.md or Modelfile is never overwritten; a previous export's sidecars are replaced."""
    for path in sidecar_paths(artifact).values():
        if path.exists() and (path.is_dir() or not _is_ours(path)):
            raise ExportError(
                f"{path}: exists and was not written by distill2edge; move it or choose another --out name"
            )


def write_sidecars(
    folder: Path, artifact: Path, record: dict[str, Any], modelfile: str | None = None
) -> dict[str, Path]:
    """Write `artifact`'s sidecars (parity record, model card, Modelfile for GGUF) into `folder` under their
    final names (see `sidecar_paths`); returns {kind: path written}. The caller moves them into place."""
    written = {}
    texts = {"parity": json.dumps(record, indent=2) + "\n", "card": model_card(record), "modelfile": modelfile}
    for kind, final in sidecar_paths(artifact, record["format"]).items():
        if texts.get(kind) is not None:
            written[kind] = folder / final.name
            written[kind].write_text(texts[kind])  # type: ignore[arg-type]
    return written


def model_card(rec: dict[str, Any]) -> str:
    """A short Markdown model card: source, recipe, format, and the parity table."""
    src = rec["source"]
    lines = [
        f"# {rec['artifact']}",
        "",
        (
            f"Exported by distill2edge {rec['distill2edge']} on {rec['created']} to "
            f"**{rec['format'].upper()}** with the `{rec['profile']['name']}` profile."
        ),
        "",
        f"- Source model: `{src['model_dir']}`",
        f"- Recipe: {src.get('recipe') or 'n/a (no run manifest beside the model)'}",
    ]
    if "student_init" in src:
        init = src["student_init"]
        lines.append(f"- Student initialised from `{init.get('teacher')}`, layers {init.get('layers_kept')}")
    for key in ("architecture", "tokenizer", "quant", "effective_bpw", "file_bytes"):
        if key in rec:
            val = rec[key]
            lines.append(
                f"- {key.replace('_', ' ')}: {val:.2f}"
                if isinstance(val, float)
                else f"- {key.replace('_', ' ')}: {val}"
            )
    if rec.get("fallback"):
        lines.append(
            f"- **fallback tensors** (requested type impossible for their row size): {rec['fallback']}"
        )
    lines += [
        "",
        "## Parity against torch",
        "",
        "| gate | runtime | max abs dlogit | mean KLD | same top token | greedy identical | passed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in rec["gates"].items():
        lines.append(
            f"| {name} | {g['runtime']} | {g['max_abs_logit_diff']:.3g} | {g['mean_kld']:.3g} | "
            f"{g['same_top_token']:.3f} | {g.get('greedy_identical')} | {g['passed']} |"
        )
    lines += [
        "",
        (
            f"Measured on {next(iter(rec['gates'].values()))['n_prompts']} sample prompts; thresholds "
            "are in `parity.json`."
        ),
        "",
    ]
    return "\n".join(lines)
