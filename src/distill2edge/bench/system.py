"""The machine and software a benchmark ran on, recorded beside every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("distill2edge", "torch", "transformers", "optimum", "optimum-onnx", "onnxruntime",
             "llama-cpp-python", "numpy", "gguf")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers (None where not installed)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores (all, and usable by this process), memory, OS, Python, library versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
        "memory_gib": None if mem is None else round(mem / 2**30, 1),
        "os": platform.platform(), "python": platform.python_version(), "libraries": library_versions(),
    }
