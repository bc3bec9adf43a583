"""Issue 17: a run folder is locked by one run, never adopts a user's folder, deletes only what it wrote,
keys stages on the content of their input files, and records Ctrl-C as `interrupted`."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from distill2edge.run_folder import LOCK_NAME, RunFolderError, RunLock
from distill2edge.runs import Run

SRC = str(Path(__file__).resolve().parents[2] / "src")


def make_run(root: Path) -> Run:
    return Run(root, "t", {"a": 1}, 0, "cpu")


def quiet(_msg: str) -> None:
    pass


def hold_lock(root: Path) -> subprocess.Popen:
    """Another process holding `root`'s lock until its stdin closes (it prints `ready` once it holds it)."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from distill2edge.run_folder import open_run_folder
        lock = open_run_folder(Path({str(root)!r}))
        print("ready", flush=True)
        sys.stdin.read()
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_second_run_is_refused_naming_the_holder(tmp_path):
    root = tmp_path / "run"
    holder = hold_lock(root)
    try:
        with pytest.raises(RunFolderError) as err:
            make_run(root)
        assert f"PID {holder.pid}" in str(err.value) and "started" in str(err.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    make_run(root).close()  # the holder is gone: its lock went with it


def test_lock_of_a_killed_run_is_stale(tmp_path):
    root = tmp_path / "run"
    holder = hold_lock(root)
    holder.kill()
    holder.wait(timeout=30)
    assert json.loads((root / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind by the kill
    run = make_run(root)
    assert json.loads((root / LOCK_NAME).read_text())["pid"] == os.getpid()
    run.close()
    assert (root / LOCK_NAME).resolve() not in RunLock._held


def test_a_users_folder_is_not_adopted(tmp_path):
    user = tmp_path / "mine"
    (user / "stages" / "data").mkdir(parents=True)
    (user / "stages" / "data" / "important.txt").write_text("keep me")
    with pytest.raises(RunFolderError, match="not a distill2edge run folder"):
        make_run(user)
    assert (user / "stages" / "data" / "important.txt").read_text() == "keep me"
    assert sorted(p.name for p in user.iterdir()) == ["stages"]


def test_stage_folders_the_manifest_does_not_know_are_not_deleted(tmp_path):
    run = make_run(tmp_path / "run")
    stray = tmp_path / "run" / "stages" / "data"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not written by distill2edge"):
        run.stage("data", {}, lambda o, w: {}, log=quiet)
    assert (stray / "notes.txt").read_text() == "mine"
    run.close()


@pytest.mark.parametrize("case", ["file", "under_file"])
def test_out_that_cannot_be_a_folder(tmp_path, case):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    root = blocker if case == "file" else blocker / "run"
    with pytest.raises(RunFolderError, match=str(blocker)):
        make_run(root)


def test_an_edited_input_file_reruns_its_stage(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": 1}\n')
    calls = []

    def fn(out, work):
        calls.append(data.read_text())
        return {}

    run = make_run(tmp_path / "run")
    run.stage("data", {"source": str(data)}, fn, log=quiet, content=run.content(source=str(data)))
    again = run.stage("data", {"source": str(data)}, fn, log=quiet, content=run.content(source=str(data)))
    assert again.reused and len(calls) == 1
    data.write_text('{"q": 2}\n')  # same path, same config, new content
    edited = run.stage("data", {"source": str(data)}, fn, log=quiet, content=run.content(source=str(data)))
    assert not edited.reused and calls[-1] == '{"q": 2}\n'


def test_model_folder_digest_follows_weights_and_tokenizer(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights-1")
    (model / "tokenizer.json").write_text("{}")
    run = make_run(tmp_path / "run")
    first = run.content(model=str(model))
    assert first == run.content(model=str(model)) and run.content(model="embedded:x", hub="owner/name") == {}
    (model / "model.safetensors").write_bytes(b"weights-2")
    second = run.content(model=str(model))
    (model / "tokenizer.json").write_text('{"v": 2}')
    assert len({first["model"], second["model"], run.content(model=str(model))["model"]}) == 3
    run.close()


def test_ctrl_c_is_recorded_as_interrupted(tmp_path):
    def interrupted(out, work):
        raise KeyboardInterrupt

    run = make_run(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run.stage("s", {}, interrupted, log=quiet)
    run.close()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["s"]["status"] == "interrupted"
