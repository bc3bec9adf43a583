from pathlib import Path

import pytest

from distill2edge.config import Recipe, RecipeError, list_recipes, load_recipe, parse_override

BASE = """\
name: t
teachers:
  t:
    path: some/teacher
student:
  init_from: some/teacher
  num_layers: 2
sft:
  teacher:
    train:
      lr: 0.001
quick:
  sft.teacher.train.max_steps: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_shipped_recipes_validate():
    recipes = list_recipes()
    assert "telecom-qa" in recipes
    for name in recipes:
        r = load_recipe(name)
        assert r.name == name
        load_recipe(name, quick=True)


def test_defaults_follow_the_paper(tmp_path):
    r = load_recipe(str(write(tmp_path, BASE)))
    lora = r.sft.teacher.lora
    assert (lora.r, lora.alpha, lora.dropout) == (256, 8.0, 0.1)
    es = r.sft.teacher.train.early_stopping
    assert (es.patience, es.min_delta) == (3, 0.01)
    assert r.distill["distilled"].loss.name == "forward_kl" and r.distill["distilled"].teacher == "t"


def test_unknown_key_names_field_and_line(tmp_path):
    p = write(tmp_path, BASE.replace("      lr: 0.001", "      lr: 0.001\n      learning_rate: 3"))
    with pytest.raises(RecipeError) as e:
        load_recipe(str(p))
    msg = str(e.value)
    assert "sft.teacher.train.learning_rate" in msg and "unknown key" in msg and f"{p}:12" in msg


def test_wrong_type_names_field_and_value(tmp_path):
    p = write(tmp_path, BASE.replace("lr: 0.001", "lr: fast"))
    with pytest.raises(RecipeError, match=r"r.yaml:11: sft.teacher.train.lr: .*'fast'"):
        load_recipe(str(p))


def test_malformed_yaml_gives_line(tmp_path):
    p = write(tmp_path, BASE + "data: [unclosed\n")
    with pytest.raises(RecipeError, match=r"r.yaml:\d+:\d+: malformed YAML"):
        load_recipe(str(p))


def test_unknown_recipe_lists_available():
    with pytest.raises(RecipeError, match="unknown recipe 'nope'.*telecom-qa"):
        load_recipe("nope")


def test_set_overrides_parse_yaml_values(tmp_path):
    p = write(tmp_path, BASE)
    r = load_recipe(str(p), ["sft.teacher.train.lr=5e-4", "distill.distilled.lora=null", "evaluate.metrics=[token_f1]"])
    assert r.sft.teacher.train.lr == 5e-4 and r.distill["distilled"].lora is None and r.evaluate.metrics == ["token_f1"]
    with pytest.raises(RecipeError, match="distill.nonsense"):
        load_recipe(str(p), ["distill.nonsense=1"])
    with pytest.raises(RecipeError, match="key.path=value"):
        parse_override("novalue")


def test_quick_overrides_apply_only_with_quick(tmp_path):
    p = write(tmp_path, BASE)
    assert load_recipe(str(p)).sft.teacher.train.max_steps is None
    assert load_recipe(str(p), quick=True).sft.teacher.train.max_steps == 2


def test_cross_field_rules(tmp_path):
    with pytest.raises(RecipeError, match="exactly one of student.path or student.init_from"):
        load_recipe(str(write(tmp_path, BASE.replace("  init_from: some/teacher\n", "  path: x\n  init_from: y\n"))))
    with pytest.raises(RecipeError, match="unknown KD loss 'kl2'"):
        load_recipe(str(write(tmp_path, BASE)), ["distill.distilled.loss.name=kl2"])
    with pytest.raises(RecipeError, match="validation \\+ test"):
        load_recipe(str(write(tmp_path, BASE)), ["data.split.validation=0.5", "data.split.test=0.5"])


def test_hash_ignores_description_and_is_stable(tmp_path):
    p = write(tmp_path, BASE)
    a, b = load_recipe(str(p)), load_recipe(str(p))
    assert a.config_hash() == b.config_hash()
    b2 = Recipe.model_validate({**a.model_dump(), "description": "other"})
    assert b2.config_hash() == a.config_hash()
    assert load_recipe(str(p), ["seed=1"]).config_hash() != a.config_hash()


TWO = BASE.replace("""    path: some/teacher
student:""", """    path: some/teacher
  other:
    path: other/teacher
student:""") + """distill:
  first:
    teacher: t
    train: &tr {lr: 0.001}
  second:
    teacher: other
    algorithm: dskd
    student: first
    train: *tr
"""


def test_several_teachers_and_chained_distillations(tmp_path):
    r = load_recipe(str(write(tmp_path, TWO)))
    assert list(r.teachers) == ["t", "other"] and r.distill["second"].student == "first"
    assert r.roles() == [
        "teacher.t", "teacher.other", "teacher_sft.t", "teacher_sft.other", "student_base", "student_sft",
        "distilled.first", "distilled.second",
    ]
    # An override through a YAML alias changes only the section it names.
    r = load_recipe(str(write(tmp_path, TWO)), ["distill.second.train.lr=0.5"])
    assert r.distill["first"].train.lr == 0.001 and r.distill["second"].train.lr == 0.5
    # `*` reaches every distillation.
    r = load_recipe(str(write(tmp_path, TWO)), ["distill.*.train.max_steps=3"])
    assert [d.train.max_steps for d in r.distill.values()] == [3, 3]


def test_cross_references_are_checked_with_lines(tmp_path):
    p = write(tmp_path, TWO.replace("teacher: other", "teacher: nobody"))
    with pytest.raises(RecipeError, match=r"r.yaml:2\d: distill.second.teacher: 'nobody' is not among teachers"):
        load_recipe(str(p))
    p = write(tmp_path, TWO.replace("student: first", "student: second"))
    with pytest.raises(RecipeError, match="distill.second.student: 'second' must be base, sft or an earlier"):
        load_recipe(str(p))
    with pytest.raises(RecipeError, match="distill.first.teacher: name one of the teachers"):
        load_recipe(str(write(tmp_path, TWO.replace("    teacher: t\n", ""))))
    with pytest.raises(RecipeError, match="unknown distillation algorithm 'magic'.*vanilla, dskd"):
        load_recipe(str(write(tmp_path, TWO)), ["distill.first.algorithm=magic"])
    with pytest.raises(RecipeError, match="evaluate.models: unknown role 'teacher.x'"):
        load_recipe(str(write(tmp_path, TWO)), ["evaluate.models=[teacher.x]"])
    with pytest.raises(RecipeError, match=r"'\*' cannot be the last part"):
        load_recipe(str(write(tmp_path, TWO)), ["distill.*=1"])


def test_evaluate_judge_is_checked_and_keyed_only_when_named(tmp_path):
    p = write(tmp_path, BASE)
    plain = load_recipe(str(p))
    assert plain.evaluate.judge is None
    # Not named (or named as the default judge): the evaluation config has the keys it had before the field
    # existed, so existing run folders reuse their evaluation stages.
    old_keys = {"models", "metrics", "max_new_tokens", "batch_size"}
    assert set(plain.evaluate.model_dump(mode="json")) == old_keys
    default = load_recipe(str(p), ["evaluate.judge=hf:embedded:gemma-3-270m"])
    assert default.evaluate.judge is None and default.config_hash() == plain.config_hash()
    named = load_recipe(str(p), ["evaluate.judge=gguf:embedded:gemma-3-270m"])
    assert named.evaluate.model_dump(mode="json")["judge"] == "gguf:embedded:gemma-3-270m"
    assert named.config_hash() != plain.config_hash()
    with pytest.raises(RecipeError, match="evaluate.judge.*bad judge spec 'gemma'"):
        load_recipe(str(p), ["evaluate.judge=gemma"])
