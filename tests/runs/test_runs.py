import json

import pytest

from distill2edge.runs import Run


def make_run(tmp_path, seed=0):
    return Run(tmp_path / "run", "t", {"a": 1}, seed, "cpu")


def test_stage_runs_once_and_is_reused(tmp_path):
    calls = []

    def fn(out, work):
        calls.append(1)
        (out / "x.txt").write_text("hi")
        return {"m": 1.5}

    run = make_run(tmp_path)
    first = run.stage("s", {"k": 1}, fn, log=lambda m: None)
    assert not first.reused and (first.out_dir / "x.txt").read_text() == "hi"
    again = make_run(tmp_path).stage("s", {"k": 1}, fn, log=lambda m: None)
    assert again.reused and again.metrics == {"m": 1.5} and len(calls) == 1
    changed = make_run(tmp_path).stage("s", {"k": 2}, fn, log=lambda m: None)
    assert not changed.reused and len(calls) == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["s"]["status"] == "complete" and manifest["stages"]["s"]["outputs"] == ["stages/s/x.txt"]
    assert "torch" in manifest["libraries"] and manifest["environment"]["cpu_count"] >= 1


def test_downstream_reruns_when_upstream_changes(tmp_path):
    run = make_run(tmp_path)
    up1 = run.stage("up", {"v": 1}, lambda o, w: {}, log=lambda m: None)
    down1 = run.stage("down", {}, lambda o, w: {}, inputs={"up": up1}, log=lambda m: None)
    up2 = run.stage("up", {"v": 2}, lambda o, w: {}, log=lambda m: None)
    down2 = run.stage("down", {}, lambda o, w: {}, inputs={"up": up2}, log=lambda m: None)
    assert down1.key != down2.key and not down2.reused


def test_failed_stage_leaves_no_output_but_keeps_work_dir(tmp_path):
    def boom(out, work):
        (out / "partial.txt").write_text("half")
        (work / "checkpoint").write_text("step 3")
        raise RuntimeError("killed")

    run = make_run(tmp_path)
    with pytest.raises(RuntimeError):
        run.stage("s", {"k": 1}, boom, log=lambda m: None)
    stages = tmp_path / "run" / "stages"
    assert not (stages / "s").exists()
    assert (stages / "s.work" / "checkpoint").read_text() == "step 3"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["s"]["status"] == "failed" and "killed" in manifest["stages"]["s"]["error"]

    seen = {}

    def resume(out, work):
        seen["ckpt"] = (work / "checkpoint").read_text()
        return {}

    make_run(tmp_path).stage("s", {"k": 1}, resume, log=lambda m: None)
    assert seen["ckpt"] == "step 3" and not (stages / "s.work").exists()


def test_work_dir_of_another_config_is_discarded(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(ZeroDivisionError):
        run.stage("s", {"k": 1}, lambda o, w: ((w / "ckpt").write_text("old"), 1 / 0), log=lambda m: None)
    seen = {}
    run.stage("s", {"k": 2}, lambda o, w: seen.setdefault("files", sorted(p.name for p in w.iterdir())) and {},
              log=lambda m: None)
    assert seen["files"] == ["key"]
