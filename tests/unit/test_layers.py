"""The library's import graph: no circle, and every arrow points down the layers (data, models, losses, training,
evaluation, pictures, inference, stages), function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO_ROOT

LAYERS = (
    {"errors", "config", "files", "torch_files", "boxes", "compat", "cluster", "matching", "mask_io", "tracking"},
    {"data"},
    {"models"},
    {"losses"},
    {"training", "checkpoints"},
    {"evaluation"},
    {"viz"},
    {"inference"},
    {"stages", "cli"},
)
PACKAGE = REPO_ROOT / "groprompt"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Module -> the library's modules it imports anywhere in its file (``from a.b import c`` counts a.b, and a.b.c
    where that is a module)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("groprompt"):
                targets |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def layer(module: str) -> int:
    """The index of a module's layer; the package itself (``groprompt``, which repairs torchvision first) is at the
    bottom with the modules that every layer uses."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    matches = [index for index, names in enumerate(LAYERS) if parts[1] in names]
    assert matches, f"{module}: in no layer; add it to LAYERS"
    return matches[0]


def a_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that returns to its start, or None (a depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle() -> None:
    assert a_circle(import_graph()) is None


def test_every_import_points_down_or_across_the_layers() -> None:
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets if layer(b) > layer(a)]
    assert upward == []


def test_the_circle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert a_circle(graph) == ["a", "b", "c", "a"]
    assert a_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
