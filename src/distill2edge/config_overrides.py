"""Loading a recipe: finding its file, reading the YAML, `--quick` and `--set` overrides, line-aware errors.

`--set a.b.c=value` changes a field; missing sections of the config classes are created (their
defaults fill the rest), so `--set distill.kd.loss.name=reverse_kl` works whether or not the YAML
spells out `loss`. Maps keyed by the user's own names (`teachers`, `distill`, `distill.NAME.teachers`,
`data.verbalizers`, `quick`) are different: a typo there would silently add an entry (a 50-epoch
distillation `vanila`, an unused teacher). So a `--set` may only name entries that exist, and an
unknown name is an error suggesting the close one; `--set +distill.new.algorithm=vanilla` says an
entry is being added, as in Hydra. `*` stands for every entry of a map (`distill.*.train.max_steps=2`).

Each override remembers where it came from, so a validation error in a value it set cites the
`--set` (or the recipe's `quick:` entry) rather than a line of the YAML file; other errors cite the
file and line of the field (`format_validation_error`). `distill2edge.config` re-exports the public names.
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from distill2edge.schema.base import RecipeError
from distill2edge.schema.recipe import Recipe

_NAMED_FIELD = re.compile(r"^Value error, ([A-Za-z0-9_.-]+): (.*)$", re.DOTALL)


@dataclass(frozen=True)
class Override:
    """One dotted override: `key` set to `value`; `add` allows new map entries; `origin` cites it."""

    key: str
    value: Any
    add: bool
    origin: str


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", value) with the value parsed as YAML (numbers, bools, lists, null).

    A leading `+` (adding map entries) is kept on the key; `parse_set` splits it off."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.removeprefix("+").split(".")
    if not sep or not key.removeprefix("+") or any(not part for part in parts):
        raise RecipeError(f"--set expects key.path=value (or +key.path=value to add an entry), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def parse_set(text: str) -> Override:
    """A `--set` argument as an `Override` citing itself."""
    key, value = parse_override(text)
    return Override(key.removeprefix("+"), value, key.startswith("+"), f"--set {text}")


# ------------------------------------------------------------------------------ schema walk
def _unwrap(tp: Any) -> Any:
    """`X | None` -> X; a union of several types -> None (the walk cannot tell which applies)."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else None
    return tp


def _is_model(schema: Any) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def _is_map(schema: Any) -> bool:
    return get_origin(schema) is dict


def _child(schema: Any, default: Any, part: str) -> tuple[Any, Any]:
    """(schema, default value) of `part` under a node of `schema` whose default is `default`."""
    if _is_model(schema):
        field = schema.model_fields.get(part)
        child_schema = _unwrap(field.annotation) if field is not None else None
        if isinstance(default, BaseModel):
            return child_schema, getattr(default, part, None)
        if field is None:
            return None, None
        value = field.get_default(call_default_factory=True)
        return child_schema, None if value is PydanticUndefined else value
    if _is_map(schema):
        child_default = default.get(part) if isinstance(default, dict) else None
        return _unwrap(get_args(schema)[1]), child_default
    return None, None


def _entries(node: dict[str, Any], default: Any) -> list[str]:
    """The entries of a map: those in the YAML, then those of its default that the YAML does not repeat."""
    extra = [k for k in default if k not in node] if isinstance(default, dict) else []
    return [*node, *extra]


def _unknown_entry(ov: Override, path: list[str], name: str, known: list[str]) -> RecipeError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = ".".join(path) or "(top level)"
    return RecipeError(
        f"{ov.origin}: {where} has no entry {name!r}{hint}; it has: {', '.join(known) or 'none'}. "
        f"To add an entry, write --set +{ov.key}={_raw_value(ov)}"
    )


def _raw_value(ov: Override) -> str:
    return ov.origin.partition("=")[2] if ov.origin.startswith("--set ") else yaml.safe_dump(ov.value).strip()


def apply_override(data: dict[str, Any], ov: Override, origins: dict[tuple[str, ...], str] | None = None) -> None:
    """Apply `ov` to the YAML data `data` (see the module docstring); record each path it set in `origins`."""
    _apply(data, ov.key.split("."), ov, 0, Recipe, None, origins if origins is not None else {})


def _apply(
    node: dict[str, Any], parts: list[str], ov: Override, depth: int, schema: Any, default: Any,
    origins: dict[tuple[str, ...], str],
) -> None:
    part, path = parts[depth], parts[:depth]
    last = depth == len(parts) - 1
    if part == "*":
        if last:
            raise RecipeError(f"{ov.origin}: '*' cannot be the last part")
        for name in _entries(node, default):
            _descend(node, parts[:depth] + [name] + parts[depth + 1:], ov, depth, schema, default, origins)
        return
    if _is_map(schema) and not ov.add and part not in _entries(node, default):
        raise _unknown_entry(ov, path, part, _entries(node, default))
    if last:
        node[part] = ov.value
        origins[tuple(parts)] = ov.origin
        return
    _descend(node, parts, ov, depth, schema, default, origins)


def _descend(
    node: dict[str, Any], parts: list[str], ov: Override, depth: int, schema: Any, default: Any,
    origins: dict[tuple[str, ...], str],
) -> None:
    """Apply `ov` below `node[parts[depth]]`, creating that section when the YAML lacks it.

    A section the YAML has is taken as written (a map there holds exactly its YAML entries); one it
    lacks starts from its default (`distill` without a YAML section has the entry `distilled`)."""
    part = parts[depth]
    child_schema, child_default = _child(schema, default, part)
    child = node.get(part)
    if child is None:
        child = node[part] = {}
        origins.setdefault(tuple(parts[: depth + 1]), ov.origin)  # a section it made is its doing too
    else:
        child_default = None
    if not isinstance(child, dict):
        raise RecipeError(f"{ov.origin}: {'.'.join(parts[: depth + 1])} is a value, not a section")
    _apply(child, parts, ov, depth + 1, child_schema, child_default, origins)


# ------------------------------------------------------------------------------ recipe files
def recipes_dir() -> Path:
    """The recipes shipped inside the package (the repository's `recipes/` points here)."""
    return Path(str(resources.files("distill2edge") / "recipes"))


def list_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def find_recipe(name_or_path: str) -> Path:
    """A recipe name (`telecom-qa`) or a path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return path
    known = list_recipes()
    if name_or_path not in known:
        raise RecipeError(f"unknown recipe {name_or_path!r}; available: {', '.join(known) or '(none)'}")
    return known[name_or_path]


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML mapping tree to its 1-based line, for error messages."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = prefix + (str(key_node.value),)
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[prefix + (str(i),)] = item.start_mark.line + 1
                walk(item, prefix + (str(i),))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def format_validation_error(
    err: ValidationError, source: str, text: str | None = None, origins: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One line per problem: `file:line: field.path: message`, or `--set ...: field.path: message` when an
    override (`origins`: key path -> how it was given) set the field or a section holding it."""
    lines = _key_lines(text) if text else {}
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = e["msg"]
        named = _NAMED_FIELD.match(msg)
        if named:  # a cross-field check names its field (relative to the model it checks) first
            loc, msg = loc + tuple(named.group(1).split(".")), named.group(2)
        # Walk up to the closest key that exists in the file (a missing key has no line of its own).
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        where = f"{source}:{line}" if line else source
        cited = origins or {}
        where = next((cited[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in cited), where)
        field = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg += f" (got {e['input']!r})"
        out.append(f"{where}: {field}: {msg}")
    return "invalid recipe:\n  " + "\n  ".join(out)


# ---------------------------------------------------------------------------------- loading
def _unshared(node: Any) -> Any:
    """A copy in which no dict or list is shared. YAML aliases (`*name`) load as one shared object, so
    `--set` on one distillation would otherwise change every section that reused the anchor."""
    if isinstance(node, dict):
        return {k: _unshared(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshared(v) for v in node]
    return node


def _read_yaml(path: Any) -> tuple[str, dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of sections, got {type(data).__name__}")
    return text, _unshared(data)


def load_recipe(name_or_path: str, overrides: list[str] | None = None, quick: bool = False) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError citing file:line:field, or the override."""
    path = find_recipe(name_or_path)
    text, data = _read_yaml(path)
    origins: dict[tuple[str, ...], str] = {}
    if quick:
        quick_overrides = data.get("quick") or {}
        if not isinstance(quick_overrides, dict):
            raise RecipeError(f"{path}: quick: must be a mapping of dotted keys to values")
        for key, value in quick_overrides.items():
            apply_override(data, Override(str(key), value, False, f"{path}: quick: {key} (--quick)"), origins)
    for text_override in overrides or []:
        apply_override(data, parse_set(text_override), origins)
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, str(path), text, origins)) from None
