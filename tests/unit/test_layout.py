"""The package's shape: layers as packages, small modules, imports that run downward.

No module over 400 lines; at most 10 modules at the top level (the public face); no import
circle at run time (imports under ``TYPE_CHECKING`` are for the type checker only); no class
assembled from the project's own classes by multiple inheritance (parts are composed); packages
that import only the layers below them (``LAYERS``, the order docs/architecture.md draws)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import streamworker

ROOT = Path(streamworker.__file__).parent

#: The layers, bottom first: a package may import (at run time) its own layer's modules and the
#: layers below. ``streamworker/__init__`` is the public face and imports from anywhere.
LAYERS = [
    ["errors", "clock", "backoff", "records"],
    ["processor", "config"],
    ["checkpoint"],
    ["aws"],
    ["sources"],
    ["kafka"],
    ["leases"],
    ["dead_letter"],
    ["consumer"],
    ["coordinator"],
    ["ops"],
    ["worker", "kcl", "local", "testing"],
    ["kclpy"],
    ["cli"],
    ["__main__"],
]


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules ``path`` imports when it is imported (not under TYPE_CHECKING, not
    inside functions: those run later, when everything is loaded)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if not base.startswith("streamworker"):
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    out.add(full if full in known else base)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("streamworker"))

    visit(tree.body)
    return {m for m in out if m in known and m != name}


def test_no_module_over_400_lines() -> None:
    long = {name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_the_top_level_is_only_the_public_face() -> None:
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(top) <= 10, top


def test_no_import_circle_at_run_time() -> None:
    mods = dict(modules())
    known = set(mods)
    graph = {name: runtime_imports(name, path, known) for name, path in mods.items()}
    # a package's __init__ importing its own modules is how a package exports: not a circle
    for name in graph:
        graph[name] = {m for m in graph[name] if not (mods[name].name == "__init__.py" and m.startswith(name + "."))}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                dfs(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n)
    assert cycles == []


def test_no_class_is_assembled_from_the_projects_own_classes() -> None:
    own = {node.name for _, path in modules() for node in ast.walk(ast.parse(path.read_text()))
           if isinstance(node, ast.ClassDef)}
    mixed = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
                if "Protocol" in bases:
                    continue  # an interface made of interfaces (what a coordinator offers) is not a mixin
                ours = [b for b in bases if b in own]
                if len(ours) > 1:
                    mixed.append(f"{name}.{node.name}({', '.join(ours)})")
    assert mixed == []


def test_packages_import_only_the_layers_below() -> None:
    mods = dict(modules())
    known = set(mods)
    rank = {part: i for i, layer in enumerate(LAYERS) for part in layer}

    def part(module: str) -> str:
        return module.split(".")[1] if "." in module else "__init__"

    assert {part(m) for m in mods} - {"__init__"} == set(rank), "a package missing from LAYERS"
    upward = sorted(f"{name} -> {m}" for name, path in mods.items() if name != "streamworker"
                    for m in runtime_imports(name, path, known)
                    if part(m) != part(name) and rank[part(m)] >= rank[part(name)])
    assert upward == []


def test_unit_tests_mirror_the_package_tree() -> None:
    """Each folder of unit tests is named for a package of streamworker (the tests of a layer sit
    where its code does); the tests left at the top are of the package as a whole."""
    here = Path(__file__).parent
    folders = {p.name for p in here.iterdir() if p.is_dir() and not p.name.startswith("__")}
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert folders <= packages, sorted(folders - packages)
    assert all((here / f / "__init__.py").exists() for f in folders)
    top = sorted(p.name for p in here.glob("test_*.py"))
    assert top == ["test_chaos_checks.py", "test_imports.py", "test_layout.py", "test_testing_harness.py"], top
