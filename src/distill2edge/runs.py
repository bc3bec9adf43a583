"""Run folders: a manifest of stages, reuse of completed stages, and outputs that appear only complete.

A run folder holds `manifest.json` and `stages/<name>/`. Each stage has a key: the hash of its own
config and of its upstream stages' keys. `Run.stage` reuses a completed stage whose key is unchanged;
otherwise it calls the stage function with a temporary output folder (renamed into place only when the
function returns) and a persistent work folder for checkpoints, so a killed stage resumes.
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from distill2edge.config import config_hash

_LIBRARIES = ("distill2edge", "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers",
              "gguf", "llama_cpp_python", "numpy", "scipy")

StageFn = Callable[[Path, Path], dict[str, Any]]
"""(out_dir, work_dir) -> metrics. Writes its outputs into out_dir."""


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        self.stages_dir = root / "stages"
        self.stages_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = root / "manifest.json"
        previous = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
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
        self.save()

    def save(self) -> None:
        self.manifest["updated"] = dt.datetime.now().isoformat(timespec="seconds")
        write_json_atomic(self.manifest_path, self.manifest)

    def stage(
        self, name: str, config: Any, fn: StageFn, *, inputs: dict[str, StageResult] | None = None,
        log: Callable[[str], None] = print,
    ) -> StageResult:
        """Run `fn` as stage `name`, or reuse its completed output when config and inputs are unchanged."""
        inputs = inputs or {}
        key = config_hash({"config": config, "inputs": {k: v.key for k, v in inputs.items()}})
        out_dir = self.stages_dir / name
        record = self.manifest["stages"].get(name)
        if record and record.get("status") == "complete" and record.get("key") == key and out_dir.is_dir():
            log(f"[{name}] reusing completed stage ({key})")
            return StageResult(name, key, out_dir, record.get("metrics", {}), reused=True)

        work_dir = self.stages_dir / f"{name}.work"
        key_file = work_dir / "key"
        if work_dir.exists() and (not key_file.exists() or key_file.read_text() != key):
            shutil.rmtree(work_dir)  # checkpoints of another config must not be resumed
        work_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
        tmp_dir = self.stages_dir / f"{name}.tmp"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir()
        shutil.rmtree(out_dir, ignore_errors=True)

        self.manifest["stages"][name] = {
            "status": "running", "key": key, "config": config,
            "inputs": {k: str(v.out_dir.relative_to(self.root)) for k, v in inputs.items()},
            "started": dt.datetime.now().isoformat(timespec="seconds"),
        }
        self.save()
        log(f"[{name}] running")
        t0 = time.perf_counter()
        try:
            metrics = fn(tmp_dir, work_dir)
        except BaseException as e:
            self.manifest["stages"][name].update(
                status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8)
            )
            self.save()
            raise
        tmp_dir.rename(out_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        seconds = time.perf_counter() - t0
        self.manifest["stages"][name].update(
            status="complete", seconds=round(seconds, 2), metrics=metrics,
            outputs=sorted(str(p.relative_to(self.root)) for p in out_dir.iterdir()),
            finished=dt.datetime.now().isoformat(timespec="seconds"),
        )
        self.save()
        log(f"[{name}] done in {seconds:.1f}s")
        return StageResult(name, key, out_dir, metrics, reused=False)

    def finish(self, status: str, error: str | None = None) -> None:
        self.manifest["status"] = status
        if error:
            self.manifest["error"] = error
        self.save()
