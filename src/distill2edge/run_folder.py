"""What makes a folder a run folder, and who may write into it.

Three promises `Run` builds on:

- **Owned folders.** `--out` must be a missing or empty folder, or one this tool made (it holds
  `manifest.json`, or `grid.json` for a grid whose pipeline has not started). Anything else is refused
  before a single file is written, so a mistyped `--out` cannot adopt (and later clean) a user's folder.
- **One writer.** A run holds an exclusive `flock` on `<run>/.lock` for its whole life; the file says
  who holds it (PID, start time, command). The OS drops the lock when the process ends in any way
  (exit, exception, Ctrl-C, `kill -9`), so a lock whose owner is gone is stale by construction and the
  next run takes it over; a run started while another is alive is refused at once, naming the holder.
- **Plain OS errors.** A path that cannot be a folder (an existing file, a file among its parents) is a
  `RunFolderError` naming the path, not a traceback.

Within one process the lock is shared (re-entrant), so code that opens a `Run` on a folder the same
process already runs in (tests, a grid that resumes its pipeline) does not lock itself out.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

LOCK_NAME = ".lock"
"""The lock file inside a run folder."""
MARKERS = ("manifest.json", "grid.json")
"""Files whose presence says the folder was made by distill2edge (a run, or a grid before its run)."""


class RunFolderError(RuntimeError):
    """A run folder that cannot be used: not a folder, not ours, or in use. The message names the path."""


def default_run_dir(recipe_name: str, out: str | os.PathLike[str] | None = None, quick: bool = False) -> Path:
    """The run folder of `distill2edge recipe`: `out` when given, else `runs/<recipe>[-quick]-<time>`.
    Under `accelerate launch` `out` is required (every process must use one folder): RunFolderError."""
    if out is not None:
        return Path(out)
    from distill2edge.train import distributed as dist

    if dist.is_distributed():
        raise RunFolderError("give --out under accelerate launch (every process uses one run folder)")
    suffix = "-quick" if quick else ""
    return Path("runs") / f"{recipe_name}{suffix}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def check_folder_path(root: Path) -> None:
    """Refuse a `root` that is an existing file or lies under one, naming the offending path."""
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"{root}: exists and is a file, not a folder (give --out a folder path)")
    for parent in root.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"{root}: cannot create it under {parent}, which is a file")
            break


def check_owned(root: Path) -> None:
    """Refuse an existing, non-empty `root` that distill2edge did not make (no marker file inside)."""
    check_folder_path(root)
    if not root.is_dir():
        return
    entries = [p.name for p in root.iterdir() if p.name != LOCK_NAME]
    if not entries or any(m in entries for m in MARKERS):
        return
    shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
    raise RunFolderError(
        f"{root}: not empty and not a distill2edge run folder (no manifest.json; it holds {shown}); "
        "give --out a new or empty folder, or an earlier run folder to resume"
    )


def describe_holder(lock_file: Path) -> str:
    """`PID 123 (started 2025-01-01T10:00:00, command ...)` from a lock file, as well as it can be read."""
    try:
        info: dict[str, Any] = json.loads(lock_file.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process (its PID is not written yet)"
    return f"PID {info['pid']} (started {info.get('started', '?')}, command: {info.get('command', '?')})"


class RunLock:
    """An exclusive lock on a run folder, re-entrant within one process (see the module docstring)."""

    _held: ClassVar[dict[Path, tuple[Any, int]]] = {}
    """Resolved lock path -> (open file holding the flock, how many `RunLock`s of this process share it)."""

    def __init__(self, root: Path) -> None:
        self.path = (root / LOCK_NAME).resolve()
        self.released = True

    def acquire(self) -> RunLock:
        """Take the lock or raise `RunFolderError` naming the holder; never waits."""
        if self.path in self._held:
            fh, count = self._held[self.path]
            self._held[self.path] = (fh, count + 1)
            self.released = False
            return self
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise RunFolderError(
                f"{self.path.parent}: in use by {describe_holder(self.path)}; wait for it to finish or stop "
                "it (a run killed any way releases the folder by itself)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({
            "pid": os.getpid(), "started": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }))
        fh.flush()
        self._held[self.path] = (fh, 1)
        self.released = False
        return self

    def release(self) -> None:
        """Give up this holder's share; the flock goes with the last share (idempotent)."""
        if self.released:
            return
        self.released = True
        fh, count = self._held[self.path]
        if count > 1:
            self._held[self.path] = (fh, count - 1)
            return
        del self._held[self.path]
        fh.seek(0)
        fh.truncate()  # no holder recorded any more; the empty file itself is harmless
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()



def open_run_folder(root: Path) -> RunLock:
    """Check that `root` may be a run folder, create it, and lock it (the caller releases the lock)."""
    check_owned(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"{root}: cannot create the run folder: {e.strerror or e}") from None
    return RunLock(root).acquire()
