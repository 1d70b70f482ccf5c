"""pyproject.toml declares exactly what the code imports.

Every third-party module imported anywhere under scripts/ (module level or inside a function,
found with `ast`, the files discovered by walking the folder) must come from a distribution in
[project] dependencies, and every dependency must be imported by some file there. Imports of
the tests must come from the dependencies or the dev extra. Module -> distribution is
importlib.metadata.packages_distributions() of the installed environment. An import inside
`try: ... except ImportError` is optional by the code's own design and need not be declared.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

from envhelp import ROOT

# Declared but not imported, on purpose. Each entry says why; the test fails once an entry
# is imported (or no longer declared), so the list cannot go stale.
ALLOW_UNUSED: dict[str, str] = {}  # distribution -> why it is declared though nothing imports it


@dataclass(frozen=True)
class Import:
    module: str  # top-level name
    where: str  # file:line
    optional: bool  # inside try/except ImportError


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1))


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    t = handler.type
    elts = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(isinstance(e, ast.Name) and e.id in names for e in elts)


def imports_in(path: Path, root: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    optional_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                optional_nodes.update(id(n) for n in ast.walk(stmt))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            out.append(Import(name.split(".")[0], f"{path.relative_to(root)}:{node.lineno}",
                              id(node) in optional_nodes))
    return out


def local_modules(*folders: Path) -> set[str]:
    """Names importable from the project itself: every module and package under the folders
    (scripts run as files import their siblings)."""
    names = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            names.add(path.stem)
            names.update(p.name for p in path.relative_to(folder).parents if p.name)
    return names


def third_party(folder: Path, root: Path, local: set[str]) -> list[Import]:
    return [i for path in sorted(folder.rglob("*.py")) for i in imports_in(path, root)
            if i.module not in sys.stdlib_module_names and i.module not in local]


def problems(root: Path, dists: dict[str, list[str]],
             allow_unused: dict[str, str]) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {requirement_name(s) for s in project["dependencies"]}
    dev = {requirement_name(s) for s in project.get("optional-dependencies", {}).get("dev", [])}
    local = local_modules(root / "scripts", root / "tests")
    out = []

    def providers(imp: Import) -> set[str] | None:
        found = dists.get(imp.module)
        return {normalise(d) for d in found} if found else None

    undeclared: dict[str, list[str]] = {}  # message -> places
    used = set()
    for imp in third_party(root / "scripts", root, local):
        found = providers(imp)
        if found is None:
            if not imp.optional:
                undeclared.setdefault(f"imports {imp.module}, which no installed distribution "
                                      f"provides; declare its distribution in pyproject.toml",
                                      []).append(imp.where)
            continue
        used |= found & declared
        if not imp.optional and not found & declared:
            undeclared.setdefault(f"imports {imp.module} ({' / '.join(sorted(found))}), which "
                                  f"pyproject.toml does not declare; add it to [project] "
                                  f"dependencies", []).append(imp.where)
    for imp in third_party(root / "tests", root, local):
        found = providers(imp)
        if not imp.optional and (found is None or not found & (declared | dev)):
            undeclared.setdefault(f"imports {imp.module}, which neither [project] dependencies "
                                  f"nor the dev extra declares", []).append(imp.where)
    for message, places in undeclared.items():
        more = f" (and {len(places) - 1} more)" if len(places) > 1 else ""
        out.append(f"{places[0]}{more}: {message}")
    for name in sorted(declared - used):
        if name not in allow_unused:
            out.append(f"pyproject.toml: dependency {name} is imported by nothing under "
                       f"scripts/; remove it (or allow-list it with the reason)")
    for name in sorted(allow_unused):
        if name not in declared:
            out.append(f"allow-list: {name} is not declared in pyproject.toml; drop the entry")
        elif name in used:
            out.append(f"allow-list: {name} is imported now; drop the entry")
    return out


def test_pyproject_declares_exactly_what_scripts_import():
    assert problems(ROOT, packages_distributions(), ALLOW_UNUSED) == []


# The checker itself, on a small fake project.

FAKE_PYPROJECT = """\
[project]
name = "fake"
version = "0"
dependencies = ["numpy>=1", "PyYAML", "unused-thing", "sacrebleu"]
[project.optional-dependencies]
dev = ["pytest"]
"""
FAKE_DISTS = {"numpy": ["numpy"], "yaml": ["PyYAML"], "sklearn": ["scikit-learn"],
              "pytest": ["pytest"], "unused_thing": ["unused-thing"],
              "sacrebleu": ["sacrebleu"], "scipy": ["scipy"]}


def fake_tree(tmp: Path, files: dict[str, str]) -> Path:
    (tmp / "pyproject.toml").write_text(FAKE_PYPROJECT)
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    return tmp


def test_undeclared_function_level_import_is_named(tmp_path):
    root = fake_tree(tmp_path, {
        "scripts/pkg/__init__.py": "",
        "scripts/pkg/sub/mod.py": ("import numpy\nimport yaml\nfrom . import x\n"
                                   "import unused_thing\n\n\ndef f():\n"
                                   "    from sklearn.metrics import f1_score\n\n\n"
                                   "def g():\n    import sklearn\n"),
        "tests/test_a.py": "import pytest\nimport numpy\nfrom pkg.sub import mod\n",
    })
    assert problems(root, FAKE_DISTS, {"sacrebleu": "why"}) == [
        "scripts/pkg/sub/mod.py:8 (and 1 more): imports sklearn (scikit-learn), which "
        "pyproject.toml does not declare; add it to [project] dependencies"]


def test_unused_declaration_and_stale_allow_list_are_named(tmp_path):
    root = fake_tree(tmp_path, {"scripts/tool.py": "import numpy, yaml\nimport sacrebleu\n",
                                "tests/test_a.py": "import scipy\n"})
    assert problems(root, FAKE_DISTS, {"sacrebleu": "why", "gone": "why"}) == [
        "tests/test_a.py:1: imports scipy, which neither [project] dependencies nor the dev "
        "extra declares",
        "pyproject.toml: dependency unused-thing is imported by nothing under scripts/; "
        "remove it (or allow-list it with the reason)",
        "allow-list: gone is not declared in pyproject.toml; drop the entry",
        "allow-list: sacrebleu is imported now; drop the entry",
    ]


def test_import_guarded_by_import_error_is_optional(tmp_path):
    root = fake_tree(tmp_path, {"scripts/a.py": (
        "import numpy, yaml, unused_thing\n\ndef f():\n    try:\n"
        "        import flash_attn  # noqa\n        from sklearn import svm\n"
        "    except (ModuleNotFoundError, OSError):\n        return None\n"
        "    import not_installed_anywhere\n")})
    assert problems(root, FAKE_DISTS, {"sacrebleu": "why"}) == [
        "scripts/a.py:9: imports not_installed_anywhere, which no installed distribution "
        "provides; declare its distribution in pyproject.toml"]
