"""Folder publishing helpers: a folder appears at its final path only when complete.

Write into `temp_sibling(final)` (same filesystem, so the rename is atomic), then `publish_dir`.
Temporary names end in `.tmp-<pid>`, which .gitignore and cleanup code recognise.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def temp_sibling(final: Path) -> Path:
    """`.<name>.tmp-<pid>` beside `final` (hidden, so a listing shows complete folders only)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def remove_stale_temps(final: Path) -> None:
    """Delete temporary siblings of `final` left by killed processes. Call only while holding its lock."""
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def publish_dir(tmp: Path, final: Path) -> Path:
    """Rename the complete folder `tmp` to `final` (an existing `final` goes only once `tmp` is whole)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def write_dir_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` then publish; on any exception the temporary folder is removed and nothing appears."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish_dir(tmp, final)


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive `fcntl.flock` on `path` (created if needed); released on exit, and by the OS if killed.

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
