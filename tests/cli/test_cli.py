import pytest

from distill2edge.cli.main import build_parser, main


def test_recipe_list_and_show(capsys):
    assert main(["recipe", "list"]) == 0
    assert "telecom-qa" in capsys.readouterr().out
    assert main(["recipe", "show", "telecom-qa"]) == 0
    assert "init_from: teacher_sft.smollm2" in capsys.readouterr().out
    assert main(["recipe", "show", "telecom-qa", "--quick"]) == 0
    assert "max_steps: 2" in capsys.readouterr().out


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["recipe", "--help"])
    out = capsys.readouterr().out
    assert "--quick" in out and "--set" in out and "resume" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["recipe", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
        (["recipe", "telecom-qa", "--set", "distill.loss.alpha=2"], "distill.loss.alpha"),
        (["recipe", "telecom-qa", "--set", "sft.teacher.train.bogus=1"], "sft.teacher.train.bogus: unknown key"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_malformed_yaml_and_missing_data(tmp_path, capsys, tiny_recipe):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nteacher: {path: a\n")
    assert main(["recipe", str(bad)]) == 2
    assert "bad.yaml:3" in capsys.readouterr().err or "malformed YAML" in capsys.readouterr().err
    recipe = tiny_recipe(data={"source": str(tmp_path / "missing.jsonl")})
    assert main(["recipe", str(recipe), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "data file not found" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_missing_model_path(tmp_path, capsys, tiny_recipe):
    recipe = tiny_recipe(teachers={"tiny": {"path": str(tmp_path / "no-model")}})
    assert main(["recipe", str(recipe), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "no-model" in capsys.readouterr().err
