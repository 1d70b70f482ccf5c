"""The package's shape, checked: no import cycles, the CLI on top, argument parsing only there.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``
of a ``tunebook`` module, at module level *and* inside functions (a lazy import still ties two
modules together). Rules (scripts/tunebook/ARCHITECTURE.md):

- no cycle anywhere in ``tunebook``;
- only ``tunebook.cli`` imports ``tunebook.commands``, and nothing imports ``tunebook.cli``;
- ``argparse`` appears only in the command layer (and the training process's own entry point).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from clihelp import ROOT

PACKAGE = ROOT / "scripts" / "tunebook"
# Modules that may parse command-line arguments: the CLI, its commands, and the entry point of
# the training process (``python -m tunebook.training.child``), which is not a tunebook command.
ARGPARSE_ALLOWED = ("tunebook.cli", "tunebook.commands", "tunebook.training.child")


def module_name(path: Path, package_dir: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package_dir: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` (a module or a module attribute) lives in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The tunebook modules ``path`` imports, wherever the import statement sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            if target.split(".")[0] != "tunebook":
                continue
            resolved = _resolve(target, known)
            while resolved and resolved != "tunebook":  # a module runs its packages first
                if resolved != name and resolved in known:
                    found.add(resolved)
                resolved = resolved.rpartition(".")[0]
    return found


def import_graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(package_dir)
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_function_level_imports(tmp_path: Path):
    """The checker itself: a cycle closed by an import inside a function is still a cycle."""
    pkg = tmp_path / "tunebook"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from tunebook.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from tunebook import a\n    return a\n")
    (pkg / "c.py").write_text("from tunebook.sub.b import f\n")
    graph = import_graph(pkg)
    assert graph["tunebook.a"] == {"tunebook.sub", "tunebook.sub.b"}  # the package runs too
    assert graph["tunebook.sub.b"] == {"tunebook.a"}
    assert graph["tunebook.c"] == {"tunebook.sub", "tunebook.sub.b"}
    assert cycles(graph) == [["tunebook.a", "tunebook.sub.b"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (break each by moving the shared part down a layer):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_the_cli_is_the_top_layer():
    graph = import_graph()
    assert graph, "no modules found"
    for name, deps in sorted(graph.items()):
        assert "tunebook.cli" not in deps, f"{name} imports tunebook.cli"
        if name == "tunebook.cli" or name.startswith("tunebook.commands"):
            continue
        bad = sorted(d for d in deps if d.startswith("tunebook.commands"))
        assert not bad, f"domain module {name} imports the command layer: {bad}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_argument_parsing_only_in_the_command_layer(name: str):
    if name.startswith(ARGPARSE_ALLOWED):
        return
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert "argparse" not in names, f"{name} imports argparse: parse arguments in " \
                                        "tunebook/commands/, call the domain code from there"


def test_every_command_module_is_in_the_table():
    """A command module whose functions no table row uses is dead code (or a forgotten row)."""
    from tunebook import cli

    used = {c.run.__module__ for c in cli.COMMANDS} | {c.arguments.__module__
                                                       for c in cli.COMMANDS}
    on_disk = {n for n in modules() if n.startswith("tunebook.commands.")
               and n != "tunebook.commands.args"}
    assert on_disk <= used, f"command modules no row of cli.COMMANDS uses: {on_disk - used}"
    names = [c.name for c in cli.COMMANDS]
    assert len(names) == len(set(names)), "a command name appears twice in cli.COMMANDS"
