"""scripts/import_cycles.py on tiny synthetic packages: a known cycle (through a relative import and an
import inside a function) is found and exits 1; an acyclic package exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "import_cycles.py"


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / next(iter(files)).split("/")[0]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=False)


def test_finds_a_cycle_through_relative_and_function_imports(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .sub import c\n",                             # a -> pkg.sub.c (module level)
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def f():\n    from ..b import g\n    return g\n",  # c -> pkg.b, inside a function
        "pkg/b.py": "import os\nimport pkg.a\n\ndef g():\n    pass\n",   # b -> pkg.a: closes the cycle
        "pkg/leaf.py": "from pkg import b\n",                           # into the cycle, not part of it
        "pkg/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.other import X\n",
        "pkg/other.py": "from pkg.typed import Y\n",                     # a cycle only for type checkers
    })
    run = _run(pkg)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("8 modules, ")
    assert "cycle 1: 3 modules, 3 imports (2 at module level)" in lines
    assert "  * pkg.a:1 -> pkg.sub.c" in lines and "    pkg.sub.c:2 -> pkg.b" in lines and "  * pkg.b:2 -> pkg.a" in lines
    assert not any("pkg.leaf" in line or "pkg.typed" in line for line in lines) and lines[-1].startswith("1 cycle (")

    with_types = _run(pkg, "--type-checking")
    assert with_types.returncode == 1 and "cycle 2: 2 modules" in with_types.stdout
    assert "pkg.typed:3 -> pkg.other" in with_types.stdout


def test_an_acyclic_package_exits_0(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "flat/__init__.py": "from flat.a import x\n",
        "flat/a.py": "from . import b\nx = 1\n",
        "flat/b.py": "def f():\n    from .c import y\n    return y\n",
        "flat/c.py": "import json\ny = 2\n",
    })
    run = _run(pkg)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith("4 modules, 3 imports") and "0 cycles" in run.stdout
    assert _run(tmp_path / "missing").returncode == 2


def test_the_package_has_no_import_cycle() -> None:
    package = SCRIPT.parent.parent / "src" / "distill2edge"
    run = _run(package)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "0 cycles"
