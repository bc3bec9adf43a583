"""Issue 17: `--set` on a map entry that does not exist is an error suggesting the close name; `+key=`
adds one; `*` still reaches every entry; a value set by `--set` is cited by its `--set`, not a YAML line."""

from pathlib import Path

import pytest

from distill2edge.config import RecipeError, load_recipe

RECIPE = """\
name: t
teachers:
  smollm2: {path: some/teacher}
student: {init_from: some/teacher, num_layers: 2}
distill:
  vanilla:
    train: {lr: 0.001, epochs: 2}
"""


@pytest.fixture
def recipe(tmp_path: Path) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    return str(p)


def test_typo_in_a_distillation_name_is_refused_with_the_close_name(recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, ["distill.vanila.train.lr=1e-5"])
    msg = str(err.value)
    assert msg.startswith("--set distill.vanila.train.lr=1e-5: distill has no entry 'vanila'")
    assert "did you mean 'vanilla'?" in msg and "--set +distill.vanila.train.lr=1e-5" in msg


def test_typo_in_a_teacher_name_is_refused(recipe):
    with pytest.raises(RecipeError, match="teachers has no entry 'smolm2' \\(did you mean 'smollm2'\\?\\)"):
        load_recipe(recipe, ["teachers.smolm2.path=other/teacher"])


def test_plus_adds_an_entry(recipe):
    r = load_recipe(recipe, ["+distill.new.algorithm=vanilla", "distill.new.train.lr=0.5"])
    assert list(r.distill) == ["vanilla", "new"] and r.distill["new"].train.lr == 0.5
    r = load_recipe(recipe, ["+teachers.other.path=x/y", "distill.vanilla.teacher=smollm2"])
    assert list(r.teachers) == ["smollm2", "other"]


def test_star_and_existing_entries_keep_working(recipe):
    r = load_recipe(recipe, ["distill.*.train.max_steps=3", "distill.vanilla.loss.name=reverse_kl"])
    assert r.distill["vanilla"].train.max_steps == 3 and r.distill["vanilla"].loss.name == "reverse_kl"


def test_default_distillation_is_an_existing_entry(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE.split("distill:")[0])
    assert load_recipe(str(p), ["distill.distilled.train.lr=0.5"]).distill["distilled"].train.lr == 0.5
    assert load_recipe(str(p), ["distill.*.train.max_steps=4"]).distill["distilled"].train.max_steps == 4


def test_validation_error_cites_the_set(recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, ["distill.vanilla.train.lr=-1"])
    line = str(err.value).splitlines()[1].strip()
    assert line.startswith("--set distill.vanilla.train.lr=-1: distill.vanilla.train.lr:")
    assert "r.yaml" not in line
    with pytest.raises(RecipeError, match="--set data.answers_in_context=maybe: data.answers_in_context"):
        load_recipe(recipe, ["data.answers_in_context=maybe"])
