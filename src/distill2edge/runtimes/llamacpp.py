"""llama.cpp through llama-cpp-python: the one place the project opens a GGUF and reads its logits.

Two ways of opening matter. A parity check (`exact=True`) keeps the logits of every position
(`logits_all`) and stores the K/V cache in float32, so the comparison with torch sees llama.cpp's
arithmetic and not the F16 rounding of its default cache. A benchmark or a judge opens the GGUF the way a
user's llama.cpp would (F16 cache, last-position logits only).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence llama.cpp's C-level log lines (they bypass Python's sys.stderr)."""
    try:
        fd = os.dup(2)
    except OSError:  # no real stderr: nothing to silence
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def runtime_name() -> str:
    """The runtime, named as what it is: the binding's version and, when the binding exposes it
    (`llama_version()`), the llama.cpp library it loaded."""
    import llama_cpp

    name = f"llama-cpp-python {llama_cpp.__version__}"
    try:
        lib = llama_cpp.llama_cpp.llama_version()
        return f"{name} (llama.cpp {lib.decode() if isinstance(lib, bytes) else lib})"
    except (AttributeError, OSError):
        return name


def open_gguf(
    path: Path | str,
    *,
    n_ctx: int = 512,
    threads: int | None = None,
    exact: bool = False,
    vocab_only: bool = False,
    overrides: dict[str, bool | int | float | str] | None = None,
    **settings: Any,
) -> Any:
    """A `llama_cpp.Llama` on the GGUF at `path`, its log lines silenced.

    `threads` serve prompt and decode (None: llama-cpp-python's default, half the cores). `exact`: every
    position's logits and a float32 K/V cache, for comparing with torch. `overrides` are GGUF metadata
    overrides (llama.cpp's `kv_overrides`). Other `settings` go to `llama_cpp.Llama` as they are
    (e.g. `n_ubatch`) and win over the ones above.
    """
    import llama_cpp

    args: dict[str, Any] = {"n_ctx": n_ctx, "n_batch": n_ctx, "vocab_only": vocab_only, "verbose": False}
    if threads is not None:
        args.update(n_threads=threads, n_threads_batch=threads)
    if exact:
        args.update(logits_all=True, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    if overrides:
        args["kv_overrides"] = overrides
    args.update(settings)
    with quiet_stderr():
        return llama_cpp.Llama(model_path=str(path), **args)


def all_logits(llm: Any, ids: Sequence[int]) -> np.ndarray:
    """Logits `[len(ids), n_vocab]` (float32) of every position of `ids`, from an empty cache.
    Needs a context opened with `exact=True` (or `logits_all=True`)."""
    llm.reset()
    llm.eval(list(ids))
    return np.array(llm.scores[: llm.n_tokens], dtype=np.float32)


def last_logits(llm: Any, ids: Sequence[int]) -> np.ndarray:
    """Logits `[n_vocab]` (float32) after the last of `ids`, from an empty cache, in any context.

    Without `logits_all` llama-cpp-python keeps no score rows, so the context's own last row is read."""
    import llama_cpp

    llm.reset()
    llm.eval(list(ids))
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32)


def greedy(llm: Any, ids: Sequence[int], n_new: int) -> list[int]:
    """llama.cpp's greedy continuation of `ids`: `n_new` ids from an empty cache, never stopping at EOS
    (torch's side, `runtimes.torch_lm.greedy`, does not either). Needs `exact=True`; after it, `llm.scores`
    holds the logits of the prompt and of every generated id but the last."""
    llm.reset()
    llm.eval(list(ids))
    gen: list[int] = []
    for _ in range(n_new):
        gen.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(gen[-1:])
    return gen


def tokenize(llm: Any, text: str, *, add_bos: bool = True) -> list[int]:
    """llama.cpp's ids for `text` (special-token text stays plain text, as HF tokenizers treat it)."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))
