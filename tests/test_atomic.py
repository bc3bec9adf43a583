"""distill2edge.atomic: files and folders appear at their final path only when complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distill2edge import atomic
from distill2edge.atomic import (
    publish_dir,
    recover_dir,
    remove_stale_temps,
    temp_sibling,
    write_bytes_atomic,
    write_dir_atomic,
    write_file_atomic,
    write_json_atomic,
    write_text_atomic,
)


class Boom(RuntimeError):
    """Stands for a kill or an error in the middle of a write."""


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_temp_sibling_is_hidden_beside_final_with_pid(tmp_path: Path) -> None:
    assert temp_sibling(tmp_path / "a.json") == tmp_path / f".a.json.tmp-{os.getpid()}"


def test_write_text_bytes_json_replace_contents(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    write_text_atomic(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_json_atomic(path, {"a": 1, "p": Path("x")})
    assert path.read_text() == json.dumps({"a": 1, "p": "x"}, indent=2)  # default=str, indent 2
    write_json_atomic(path, [1], indent=1)
    assert path.read_text() == "[\n 1\n]"
    assert _siblings(path) == ["out.txt"]  # no temporary left


def test_interrupted_file_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")

    def write(tmp: Path) -> None:
        tmp.write_text("half of the new cont")
        raise Boom

    with pytest.raises(Boom):
        write_file_atomic(path, write)
    assert path.read_text() == "old"
    assert _siblings(path) == ["state.json"]


def test_failed_text_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.md"
    path.write_text("old")
    real = Path.write_bytes

    def half(self: Path, data: bytes) -> int:
        real(self, data[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half)
    with pytest.raises(OSError):
        write_text_atomic(path, "new text")
    monkeypatch.undo()
    assert path.read_text() == "old" and _siblings(path) == ["report.md"]


def test_unserialisable_json_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("old")
    with pytest.raises(ValueError):
        write_json_atomic(path, _circular())
    assert path.read_text() == "old" and _siblings(path) == ["m.json"]


def _circular() -> dict[str, object]:
    d: dict[str, object] = {}
    d["self"] = d
    return d


def test_write_file_atomic_creates_a_new_file(tmp_path: Path) -> None:
    out = write_file_atomic(tmp_path / "new.bin", lambda tmp: tmp.write_bytes(b"abc"))
    assert out == tmp_path / "new.bin" and out.read_bytes() == b"abc"


def test_write_dir_atomic_publishes_and_replaces(tmp_path: Path) -> None:
    final = tmp_path / "model"
    write_dir_atomic(final, lambda tmp: (tmp / "a.txt").write_text("1"))
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]
    write_dir_atomic(final, lambda tmp: (tmp / "b.txt").write_text("2"))
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]  # replaced whole, not merged
    assert _siblings(final) == ["model"]


def test_interrupted_dir_write_keeps_the_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "ckpt"
    write_dir_atomic(final, lambda tmp: (tmp / "w.pt").write_text("old"))

    def write(tmp: Path) -> None:
        (tmp / "w.pt").write_text("new, half")
        raise Boom

    with pytest.raises(Boom):
        write_dir_atomic(final, write)
    assert (final / "w.pt").read_text() == "old"
    assert _siblings(final) == ["ckpt"]  # the temporary folder is gone


def test_interrupted_first_dir_write_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "cache"

    def write(tmp: Path) -> None:
        (tmp / "part").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dir_atomic(final, write)
    assert not final.exists() and list(final.parent.iterdir()) == []


def test_fixed_temp_names_are_used_and_a_stale_old_is_cleared(tmp_path: Path) -> None:
    final, tmp, old = tmp_path / "c", tmp_path / "c.tmp", tmp_path / "c.old"
    old.mkdir()
    (old / "stale").write_text("x")
    seen: list[Path] = []
    write_dir_atomic(final, lambda t: seen.append(t), tmp=tmp, old=old)
    assert seen == [tmp] and final.is_dir() and not old.exists() and not tmp.exists()


def test_kill_between_the_renames_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final, old = tmp_path / "c", tmp_path / "c.old"
    final.mkdir()
    (final / "w").write_text("previous")
    tmp = tmp_path / "c.tmp"
    tmp.mkdir()
    real = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self == tmp:
            raise Boom  # killed after `final` went to `old`, before `tmp` came in
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(Boom):
        publish_dir(tmp, final, old)
    monkeypatch.undo()
    assert not final.exists() and (old / "w").read_text() == "previous"
    recover_dir(final, old)
    assert (final / "w").read_text() == "previous" and not old.exists()
    recover_dir(final, old)  # nothing to do: no error


def test_remove_stale_temps_removes_files_and_folders_only_of_final(tmp_path: Path) -> None:
    final = tmp_path / "m"
    (tmp_path / ".m.tmp-1").mkdir()
    (tmp_path / ".m.tmp-1" / "x").write_text("x")
    (tmp_path / ".m.tmp-2").write_text("x")
    (tmp_path / ".other.tmp-3").write_text("x")
    remove_stale_temps(final)
    assert _siblings(final) == [".other.tmp-3"]


def test_file_lock_calls_on_wait_only_when_held(tmp_path: Path) -> None:
    calls: list[int] = []
    with atomic.file_lock(tmp_path / "l.lock", on_wait=lambda: calls.append(1)):
        pass
    assert calls == []
