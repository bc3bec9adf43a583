"""Issue 17: an export checks its output path before loading the model, an OS-level refusal is one line
and exit 2, and hidden work folders of killed exports of the same target are removed by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill2edge.cli.main import main
from distill2edge.export import ExportError
from distill2edge.export import gguf as gguf_export


class Loaded(Exception):
    """Raised in place of loading the model: the checks before it have passed."""


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_torch(_src: Path):
        raise Loaded

    monkeypatch.setattr(gguf_export, "load_torch", load_torch)


def test_out_under_a_file_fails_before_loading(tmp_path, tiny_llama_dir, no_loading):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match=f"--out {blocker}/m.gguf: cannot be created under {blocker}, which is a file"):
        gguf_export.export_gguf(tiny_llama_dir, blocker / "m.gguf", quant="f32")


def test_cli_out_under_a_file_is_one_line_and_exit_2(tmp_path, tiny_llama_dir, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["export", "gguf", str(tiny_llama_dir), "--out", str(blocker / "m.gguf"), "--quant", "f32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(blocker) in err


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_the_same_target_are_removed(tmp_path, tiny_llama_dir, no_loading):
    names = {
        "legacy": ".m.gguf.k2j4_x9a.tmp",  # written before temporaries carried a PID
        "dead": f".m.gguf.{_dead_pid()}-abcd1234.tmp",
        "live": f".m.gguf.{os.getpid()}-abcd1234.tmp",  # an export still running
        "other": ".n.gguf.k2j4_x9a.tmp",  # another target
        "user": ".m.gguf.notes.txt",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.f32.gguf").write_bytes(b"\0" * 1024)
    with pytest.raises(Loaded):
        gguf_export.export_gguf(tiny_llama_dir, tmp_path / "m.gguf", quant="f32")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names["live"], names["other"], names["user"]}
