"""What travels with an export: `parity.json` (machine-readable) and a model card (the Ollama Modelfile is
in `ollama.py`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from distill2edge._version import __version__
from distill2edge.export.common import ExportError
from distill2edge.export.lineage import lineage


def parity_record(
    fmt: str, model_dir: Path, artifact: str, profile: Any, gates: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """The `parity.json` content: every gate's numbers and thresholds, plus what was exported from what."""
    return {
        "format": fmt,
        "artifact": artifact,
        "source": asdict(lineage(model_dir)),
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
    return (
        f"Exported by {SIDECAR_MARK}" in head
        or f'"{SIDECAR_MARK}":' in head
        or f"written by {SIDECAR_MARK}" in head
    )


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
    texts = {
        "parity": json.dumps(record, indent=2) + "\n",
        "card": model_card(record),
        "modelfile": modelfile,
    }
    for kind, final in sidecar_paths(artifact, record["format"]).items():
        if texts.get(kind) is not None:
            written[kind] = folder / final.name
            written[kind].write_text(texts[kind])  # type: ignore[arg-type]
    return written


def card_metadata(rec: dict[str, Any]) -> dict[str, Any]:
    """The model card's YAML front matter, in the keys the Hugging Face Hub reads (`ModelCard.load().data`):
    base_model (teacher and student origin), license (from the source), library_name, tags (format,
    distillation, device profile, quantization), pipeline_tag."""
    src, fmt = rec["source"], rec["format"]
    tags = [fmt, "distill2edge", f"profile-{rec['profile']['name']}"]
    if src.get("distilled"):
        tags += ["distillation", "knowledge-distillation"]
    kind = rec.get("quant") or rec.get("dtype")
    if kind:
        tags.append(str(kind).split(" ")[0])
    data: dict[str, Any] = {"library_name": fmt, "pipeline_tag": "text-generation", "tags": tags}
    if src.get("base_models"):
        data["base_model"] = src["base_models"]
        if not src.get("distilled"):
            data["base_model_relation"] = "quantized"
    if src.get("license"):
        data["license"] = src["license"]
    return data


def _facts(rec: dict[str, Any]) -> list[str]:
    src = rec["source"]
    lines = [f"- Source model: `{src['model_dir']}` ({src.get('name')})"]
    if src.get("base_models"):
        lines.append("- Base models: " + ", ".join(f"`{b}`" for b in src["base_models"]))
    if src.get("recipe"):
        lines.append(f"- Recipe: {src['recipe']}" + (f", stage `{src['stage']}`" if src.get("stage") else ""))
    if src.get("student_init"):
        init = src["student_init"]
        lines.append(f"- Student initialised from `{init.get('teacher')}`, layers {init.get('layers_kept')}")
    if src.get("vocab_trim"):
        trim = src["vocab_trim"]
        lines.append(f"- Vocabulary trimmed to its domain: {trim.get('kept'):,} of {trim.get('original_size'):,} tokens "
                     "(text outside it is tokenized into shorter pieces)")
    for key in (
        "architecture",
        "tokenizer",
        "quant",
        "dtype",
        "file_bpw",
        "effective_bpw",
        "file_bytes",
        "sha256",
    ):
        if rec.get(key) is not None:
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
    return lines


def model_card(rec: dict[str, Any]) -> str:
    """The model card: Hub front matter (`card_metadata`), source and format facts, the measured parity of
    every gate and the figures the recipe stage that made the model recorded."""
    front = yaml.safe_dump(card_metadata(rec), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        front.rstrip(),
        "---",
        "",
        f"# {rec['artifact']}",
        "",
        (
            f"Exported by {SIDECAR_MARK} {rec['distill2edge']} on {rec['created']} to "
            f"**{rec['format'].upper()}** with the `{rec['profile']['name']}` profile."
        ),
        "",
        *_facts(rec),
        "",
        "## Parity against torch",
        "",
        (
            "| gate | runtime | positions | max abs dlogit | mean KLD | same top token | greedy identical "
            "| passed |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, g in rec["gates"].items():
        lines.append(
            f"| {name} | {g['runtime']} | {g['n_positions']} | {g['max_abs_logit_diff']:.3g} | "
            f"{g['mean_kld']:.3g} | "
            f"{g['same_top_token']:.3f} | {g.get('greedy_identical')} | {g['passed']} |"
        )
    first = next(iter(rec["gates"].values()))
    lines += [
        "",
        f"Measured on {first['n_prompts']} prompts; thresholds and settings are in the parity record.",
        "",
    ]
    metrics = rec["source"].get("stage_metrics") or {}
    if metrics:
        lines += [
            f"## Figures recorded by the `{rec['source']['stage']}` stage",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [
            f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
        ]
        lines.append("")
    return "\n".join(lines)
