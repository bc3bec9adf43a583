"""Atomic publishing: a file or folder appears at its final path only when complete.

Every writer builds its result under a temporary sibling of the final path (same folder, so the same
filesystem and an atomic rename), then renames it into place. A crash or an exception at any moment
leaves either the previous version or the new one at the final path, never a half-written one; a
failed write removes its temporary.

Temporary names are `.<name>.tmp-<pid>` (hidden, so a listing shows complete outputs only, and matched
by .gitignore's `*.tmp-*`); `remove_stale_temps` deletes those of killed processes. Callers whose resume
logic relies on fixed names (training checkpoints: `<name>.tmp`, `<name>.old`) pass them explicitly.
Nothing here calls fsync: the guarantee is against killed processes, not against power loss.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "file_lock",
    "publish_dir",
    "recover_dir",
    "remove_stale_temps",
    "temp_sibling",
    "write_bytes_atomic",
    "write_dir_atomic",
    "write_file_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def temp_sibling(final: Path) -> Path:
    """`.<name>.tmp-<pid>` beside `final` (hidden, so a listing shows complete files and folders only)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    """Delete a file or a folder tree, whichever `path` is; a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(final: Path) -> None:
    """Delete temporary siblings of `final` left by killed processes. Call only while holding its lock."""
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        _remove(p)


# ---- files -------------------------------------------------------------------------------------------


def write_file_atomic(final: Path, write: Callable[[Path], object]) -> Path:
    """Run `write(tmp)`, which creates the file `tmp`, then rename it to `final` (replacing any old one).

    For producers that write to a path themselves (a download, a library's save function). On any
    exception the temporary is removed and `final` is left as it was. Returns `final`.
    """
    tmp = temp_sibling(final)
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
    return final


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling: readers see the old bytes or the new ones."""
    write_file_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see `write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Write `obj` as JSON (unknown types through `str`) atomically; nothing is touched if it cannot be
    serialised, since serialising happens before any file is opened."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=str))


# ---- folders -----------------------------------------------------------------------------------------


def publish_dir(tmp: Path, final: Path, old: Path | None = None) -> Path:
    """Rename the complete folder `tmp` to `final`. An existing `final` is first renamed to `old`
    (default `.<name>.old-<pid>`) and deleted only once `tmp` is in place, so a kill between the two
    renames leaves it at `old` (see `recover_dir`). Returns `final`."""
    old = old if old is not None else final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)  # a leftover of an earlier kill: `final` or `tmp` is newer
    if final.exists():
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def write_dir_atomic(
    final: Path, write: Callable[[Path], None], *, tmp: Path | None = None, old: Path | None = None
) -> Path:
    """Create an empty temporary folder, run `write(tmp)` to fill it, then `publish_dir` it to `final`.

    `tmp` and `old` default to `temp_sibling(final)` and `publish_dir`'s default; pass fixed names when
    other code must find them. On any exception the temporary folder is removed and `final` is left as
    it was. Returns `final`.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp if tmp is not None else temp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish_dir(tmp, final, old)


def recover_dir(final: Path, old: Path) -> None:
    """Undo a kill between the two renames of `publish_dir`: move `old` back when `final` is missing."""
    if not final.exists() and old.exists():
        old.rename(final)


# ---- locks -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive `fcntl.flock` on `path` (created if needed); released on exit, and by the OS if killed.

    Guards a build-once output (a cache folder) so that concurrent processes publish it once.
    `on_wait` is called once if another process holds the lock, before blocking on it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
