"""Issue 17 at the pipeline level: an edited data file re-runs the data stage, Ctrl-C is recorded as
`interrupted` and frees the folder, recipe fields are named for missing models and impossible layer
counts, and `--out` paths the OS or the ownership rule refuses exit 2 with one line."""

import json

import pytest

from distill2edge import pipeline
from distill2edge.cli.main import main
from distill2edge.config import load_recipe
from distill2edge.stages import data as data_stage


class StopAfterData(Exception):
    pass


def stop_after_data(monkeypatch, exc: BaseException | None = None) -> None:
    def read_data(_cfg, _folder):
        raise exc or StopAfterData()

    monkeypatch.setattr(data_stage, "read_data", read_data)


def test_edited_data_file_is_not_reused(tmp_path, tiny_recipe, qa_jsonl, monkeypatch):
    stop_after_data(monkeypatch)
    recipe, out = load_recipe(str(tiny_recipe())), tmp_path / "run"
    logs: list[str] = []
    for _ in range(2):
        with pytest.raises(StopAfterData):
            pipeline.run_recipe(recipe, out, progress=False, log=logs.append)
    assert logs[0] == "[data] running" and logs[-1].startswith("[data] reusing")
    lines = qa_jsonl.read_text().splitlines()
    qa_jsonl.write_text("\n".join(lines[:-3]) + "\n")  # edited in place: same path, same recipe
    logs.clear()
    with pytest.raises(StopAfterData):
        pipeline.run_recipe(recipe, out, progress=False, log=logs.append)
    assert logs[0] == "[data] running"
    assert len((out / "stages" / "data" / "train.jsonl").read_text().splitlines()) + len(
        (out / "stages" / "data" / "test.jsonl").read_text().splitlines()) + len(
        (out / "stages" / "data" / "validation.jsonl").read_text().splitlines()) == 27
    from distill2edge.run_folder import RunLock

    assert (out / ".lock").resolve() not in RunLock._held  # every run released its lock, failed or not


def test_ctrl_c_marks_the_run_interrupted(tmp_path, tiny_recipe, monkeypatch):
    stop_after_data(monkeypatch, KeyboardInterrupt())
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_recipe(load_recipe(str(tiny_recipe())), out, progress=False, log=lambda _m: None)
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    from distill2edge.run_folder import RunLock

    assert (out / ".lock").resolve() not in RunLock._held


def test_missing_teacher_path_names_the_field(tmp_path, tiny_recipe, capsys):
    recipe = tiny_recipe(teachers={"tiny": {"path": str(tmp_path / "no-model")}})
    assert main(["recipe", str(recipe), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert f"error: teachers.tiny.path: model folder {tmp_path / 'no-model'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_too_many_student_layers_names_the_field(tmp_path, tiny_recipe, tiny_llama_dir, capsys):
    recipe = tiny_recipe(student={"init_from": str(tiny_llama_dir), "num_layers": 9})
    assert main(["recipe", str(recipe), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "error: student.num_layers: 9 is more than the 4 layers of student.init_from" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["file", "under_file", "user_folder"])
def test_recipe_out_refused_in_one_line(tmp_path, tiny_recipe, capsys, case):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    user = tmp_path / "mine"
    (user / "stages" / "data").mkdir(parents=True)
    (user / "stages" / "data" / "important.txt").write_text("keep")
    out = {"file": blocker, "under_file": blocker / "run", "user_folder": user}[case]
    assert main(["recipe", str(tiny_recipe()), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(out) in err
    assert (user / "stages" / "data" / "important.txt").read_text() == "keep" and blocker.read_text() == "x"
