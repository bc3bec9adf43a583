"""Run folders: a manifest of stages, reuse of completed stages, and outputs that appear only complete.

A run folder holds `manifest.json` and `stages/<name>/`. Each stage has a key: the hash of its own
config, of its upstream stages' keys and of the content of the files and folders it reads
(`content_keys`). `Run.stage` reuses a completed stage whose key is unchanged;
otherwise it calls the stage function with a temporary output folder (renamed into place only when the
function returns) and a persistent work folder for checkpoints, so a killed stage resumes.

A `Run` holds the folder's lock from construction to `close` (`run_folder`): a second run into the same
folder is refused, and a folder distill2edge did not make is never adopted. Only the folders of stages
the manifest records are ever deleted (re-run stages); nothing else in the folder is touched.

Under several processes (`accelerate launch`) the main process alone writes the manifest and prepares,
publishes and records every stage. A stage run with `ranks="main"` (data, evaluation, export...) runs
on the main process while the others wait for its result; `ranks="all"` (training) runs on every
process between barriers, so no process starts before the folders are ready or reads a half-written one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from distill2edge.atomic import publish_dir
from distill2edge.atomic import write_json_atomic as write_json_atomic  # re-exported: the old home
from distill2edge.atomic import write_text_atomic as write_text_atomic  # re-exported: the old home
from distill2edge.config import config_hash
from distill2edge.content_keys import content_of
from distill2edge.run_folder import RunFolderError, RunLock, open_run_folder
from distill2edge.train import distributed as dist

_LIBRARIES = ("distill2edge", "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers",
              "gguf", "llama_cpp_python", "numpy", "scipy")

StageFn = Callable[[Path, Path], dict[str, Any]]
"""(out_dir, work_dir) -> metrics. Writes its outputs into out_dir."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return out


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


@dataclass
class StageResult:
    name: str
    key: str
    out_dir: Path
    metrics: dict[str, Any]
    reused: bool


class Run:
    """A run folder and its manifest."""

    def __init__(self, root: Path, recipe_name: str, config: dict[str, Any], seed: int, device: str):
        self.root = root
        self.lock: RunLock | None = open_run_folder(root) if dist.is_main() else None
        self.stages_dir = root / "stages"
        self.manifest_path = root / "manifest.json"
        try:
            if dist.is_main():
                self.stages_dir.mkdir(parents=True, exist_ok=True)
            # The other processes touch the folder only once the main one has checked and claimed it
            # (a `stages/` they made first would make a new folder look like someone else's).
            dist.barrier()
            previous = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
        except BaseException:
            self.close()
            raise
        self.manifest: dict[str, Any] = {
            "recipe": recipe_name,
            "config_hash": config_hash(config),
            "config": config,
            "seed": seed,
            "device": device,
            "command": " ".join(sys.argv),
            "created": previous.get("created", dt.datetime.now().isoformat(timespec="seconds")),
            "updated": None,
            "status": "running",
            "libraries": library_versions(),
            "environment": environment(),
            "stages": previous.get("stages", {}),
        }
        if dist.is_distributed():
            self.manifest["processes"] = dist.world_size()
        self.collective = dist.is_distributed()
        """True while every process takes part in `stage` calls (see `main_only_from_here`)."""
        self.save()

    def close(self) -> None:
        """Release the run folder's lock (idempotent; the OS releases it too if the process dies)."""
        if self.lock is not None:
            self.lock.release()

    def content(self, **refs: str | os.PathLike[str] | None) -> dict[str, str]:
        """Digests of the references that are local files or folders, for `stage(content=...)`; memoised
        per path (size and mtime) beside the teacher cache's fingerprints."""
        return content_of(refs, memo=self.root / "cache" / "teacher" / "fingerprints.json")

    def save(self) -> None:
        """Write the manifest (main process only; the others keep their copy in memory)."""
        if not dist.is_main():
            return
        self.manifest["updated"] = dt.datetime.now().isoformat(timespec="seconds")
        write_json_atomic(self.manifest_path, self.manifest)

    def main_only_from_here(self) -> bool:
        """Called on every process: later stages run on the main process alone, without waiting for
        the others (which are done). True on the main process."""
        self.collective = False
        return dist.is_main()

    def stage(
        self, name: str, config: Any, fn: StageFn, *, inputs: dict[str, StageResult] | None = None,
        log: Callable[[str], None] = print, ranks: Literal["main", "all"] = "main",
        content: dict[str, str] | None = None,
    ) -> StageResult:
        """Run `fn` as stage `name`, or reuse its completed output when config and inputs are unchanged.

        `content` holds digests of the files and folders `fn` reads (`Run.content`): an edited input
        changes the key. With several processes, `ranks="main"` runs `fn` on the main process and gives
        every process its result; `ranks="all"` runs `fn` on every process (each returns its own metrics).
        """
        inputs = inputs or {}
        parts: dict[str, Any] = {"config": config, "inputs": {k: v.key for k, v in inputs.items()}}
        if content:
            parts["content"] = content  # absent when empty: stages without file inputs keep their keys
        key = config_hash(parts)
        if not self.collective:
            return self._stage_here(name, key, config, fn, inputs, log)
        if ranks == "main":
            result = dist.broadcast_object(self._stage_here(name, key, config, fn, inputs, log) if dist.is_main() else None)
            assert result is not None  # the main process always sends its StageResult (or raised before)
            return result
        reused = dist.broadcast_object(self._reusable(name, key, log) if dist.is_main() else None)
        if reused is not None:
            return reused
        if dist.is_main():
            self._begin(name, key, config, inputs, log)
        dist.barrier()
        t0 = time.perf_counter()
        try:
            metrics = fn(self.stages_dir / f"{name}.tmp", self.stages_dir / f"{name}.work")
        except BaseException as e:
            if dist.is_main():
                self._failed(name, e)
            raise
        dist.barrier()  # every process is done with the work folder; the main one has written its outputs
        if dist.is_main():
            self._complete(name, metrics, time.perf_counter() - t0, log)
        dist.barrier()
        return StageResult(name, key, self.stages_dir / name, metrics, reused=False)

    def _stage_here(
        self, name: str, key: str, config: Any, fn: StageFn, inputs: dict[str, StageResult], log: Callable[[str], None]
    ) -> StageResult:
        """The stage in this process alone: reuse, or prepare, run `fn`, and publish."""
        reused = self._reusable(name, key, log)
        if reused is not None:
            return reused
        tmp_dir, work_dir = self._begin(name, key, config, inputs, log)
        t0 = time.perf_counter()
        try:
            metrics = fn(tmp_dir, work_dir)
        except BaseException as e:
            self._failed(name, e)
            raise
        return self._complete(name, metrics, time.perf_counter() - t0, log)

    def _reusable(self, name: str, key: str, log: Callable[[str], None]) -> StageResult | None:
        """The completed stage `name` if its key is unchanged and its folder is there."""
        out_dir = self.stages_dir / name
        record = self.manifest["stages"].get(name)
        if record and record.get("status") == "complete" and record.get("key") == key and out_dir.is_dir():
            log(f"[{name}] reusing completed stage ({key})")
            return StageResult(name, key, out_dir, record.get("metrics", {}), reused=True)
        return None

    def _begin(
        self, name: str, key: str, config: Any, inputs: dict[str, StageResult], log: Callable[[str], None]
    ) -> tuple[Path, Path]:
        """Empty temporary output folder, work folder kept only for the same key, manifest "running".

        The stage's folders are deleted only when the manifest records the stage (so this tool made
        them); a folder of that name that the manifest does not know is refused, never deleted.
        """
        out_dir = self.stages_dir / name
        work_dir = self.stages_dir / f"{name}.work"
        tmp_dir = self.stages_dir / f"{name}.tmp"
        if name not in self.manifest["stages"]:
            for path in (out_dir, work_dir, tmp_dir):
                if path.exists():
                    raise RunFolderError(
                        f"{path}: not written by distill2edge (the manifest has no stage {name!r}); "
                        "move it away to run this stage"
                    )
        self.manifest["stages"][name] = {
            "status": "running", "key": key, "config": config,
            "inputs": {k: str(v.out_dir.relative_to(self.root)) for k, v in inputs.items()},
            "started": dt.datetime.now().isoformat(timespec="seconds"),
        }
        self.save()  # recorded before any folder exists, so every stage folder on disk is one we own
        key_file = work_dir / "key"
        if work_dir.exists() and (not key_file.exists() or key_file.read_text() != key):
            shutil.rmtree(work_dir)  # checkpoints of another config must not be resumed
        work_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir()
        shutil.rmtree(out_dir, ignore_errors=True)
        log(f"[{name}] running")
        return tmp_dir, work_dir

    def _failed(self, name: str, e: BaseException) -> None:
        self.manifest["stages"][name].update(
            status=ending_status(e), error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8)
        )
        self.save()

    def _complete(self, name: str, metrics: dict[str, Any], seconds: float, log: Callable[[str], None]) -> StageResult:
        """Rename the temporary folder into place, drop the work folder, record the stage complete."""
        out_dir, work_dir = self.stages_dir / name, self.stages_dir / f"{name}.work"
        publish_dir(self.stages_dir / f"{name}.tmp", out_dir)  # `.tmp`: the name `_begin` made
        shutil.rmtree(work_dir, ignore_errors=True)
        self.manifest["stages"][name].update(
            status="complete", seconds=round(seconds, 2), metrics=metrics,
            outputs=sorted(str(p.relative_to(self.root)) for p in out_dir.iterdir()),
            finished=dt.datetime.now().isoformat(timespec="seconds"),
        )
        self.save()
        log(f"[{name}] done in {seconds:.1f}s")
        return StageResult(name, self.manifest["stages"][name]["key"], out_dir, metrics, reused=False)

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the run's final status (`complete`, `distilled`, `failed`, `interrupted`)."""
        self.manifest["status"] = status
        if error:
            self.manifest["error"] = error
        else:
            self.manifest.pop("error", None)
        self.save()


def ending_status(e: BaseException) -> str:
    """`interrupted` for Ctrl-C (SIGINT, KeyboardInterrupt) and SystemExit, `failed` for errors."""
    return "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "failed"
