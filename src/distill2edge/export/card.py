"""What travels with an export: `parity.json` (machine-readable) and a model card (the Ollama Modelfile is
in `ollama.py`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from distill2edge import __version__


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


def write_sidecars(folder: Path, record: dict[str, Any], modelfile: str | None = None) -> None:
    """Write parity.json, README.md (model card) and, for GGUF, an Ollama Modelfile into `folder`."""
    (folder / "parity.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(record))
    if modelfile is not None:
        (folder / "Modelfile").write_text(modelfile)


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
