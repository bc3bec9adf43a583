#!/usr/bin/env python3
"""Find import cycles in a Python package, from its source alone (standard library `ast`, nothing imported).

    python scripts/import_cycles.py                  # src/distill2edge
    python scripts/import_cycles.py path/to/pkg      # any package folder

Builds the graph "module A imports module B" over the package's own modules: every `import` and
`from ... import` anywhere in a file (inside functions and methods too, where the project defers heavy
imports), relative imports resolved against the importing module's package, `from pkg import name`
counted as an import of the submodule `pkg.name` when that is a module and of `pkg` otherwise, and
`import a.b.c` as an import of the deepest module it names. The parent packages such an import also
initialises are not counted (otherwise every module would sit in one cycle with the top package), nor
are imports under `if TYPE_CHECKING:` (they never run; `--type-checking` counts them).

Prints the module count, then every strongly connected component with more than one module (a cycle),
its members and the imports between them (`*` marks an import at module level, which runs when the
module is first imported; the others run when their function is called). Exits 1 when there is a cycle,
0 when there is none, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    module_level: bool


def module_names(package_dir: Path) -> dict[str, Path]:
    """{dotted module name: file} for every .py file under `package_dir` (its folder name is the top)."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if all(p.isidentifier() for p in parts):
            names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, type_checking: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(import node, at module level) for every import in `tree`, skipping `if TYPE_CHECKING:` bodies
    unless `type_checking`."""

    def walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, module_level
            elif isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
                for stmt in child.orelse:
                    yield from walk_one(stmt, module_level)
            else:
                inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                yield from walk(child, inner)

    def walk_one(stmt: ast.stmt, module_level: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt, module_level
        else:
            yield from walk(stmt, module_level and not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from walk(tree, True)


def _deepest_known(name: str, known: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def import_graph(package_dir: Path, type_checking: bool = False) -> tuple[dict[str, Path], list[Edge]]:
    """The package's modules and the imports between them (self-imports left out)."""
    known = module_names(package_dir)
    edges = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, module_level in _imports(tree, type_checking):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_deepest_known(alias.name, known) for alias in node.names]
            else:
                if node.level:  # relative: against the importing module's package
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    if not base:
                        continue  # beyond the top package
                    absolute = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    absolute = node.module or ""
                for alias in node.names:
                    sub = f"{absolute}.{alias.name}"
                    targets.append(sub if sub in known else _deepest_known(absolute, known))
            for target in targets:
                if target is not None and target != module:
                    edges.append(Edge(module, target, node.lineno, module_level))
    return known, edges


def strongly_connected(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted, in order of their first member."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        if e.target not in succ[e.source]:
            succ[e.source].append(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    components.append(sorted(comp))
    return sorted(components, key=lambda c: c[0])


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parent.parent / "src" / "distill2edge"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", nargs="?", type=Path, default=default, help=f"package folder (default {default})")
    parser.add_argument("--type-checking", action="store_true", help="count imports under `if TYPE_CHECKING:` too")
    args = parser.parse_args(argv)
    if not (args.package / "__init__.py").is_file():
        print(f"error: {args.package} is not a package folder (no __init__.py)", file=sys.stderr)
        return 2
    known, edges = import_graph(args.package, args.type_checking)
    cycles = [c for c in strongly_connected(list(known), edges) if len(c) > 1]
    print(f"{len(known)} modules, {len({(e.source, e.target) for e in edges})} imports between them "
          f"in {args.package}")
    for i, comp in enumerate(cycles, 1):
        members = set(comp)
        inner = sorted({(e.source, e.target, e.line, e.module_level) for e in edges
                        if e.source in members and e.target in members})
        top = sum(1 for _s, _t, _l, m in inner if m)
        print(f"\ncycle {i}: {len(comp)} modules, {len(inner)} imports ({top} at module level)")
        for source, target, line, module_level in inner:
            print(f"  {'*' if module_level else ' '} {source}:{line} -> {target}")
    print(f"\n{len(cycles)} cycle{'s' if len(cycles) != 1 else ''}"
          f"{' (* = import at module level)' if cycles else ''}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
