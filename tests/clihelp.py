"""Helpers for tests that drive the real `tunebook` CLI (imported as `clihelp`; a module name
that no test folder's own helpers shadow, unlike `conftest`)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tunebook import env

ROOT = Path(__file__).resolve().parents[1]
TUNEBOOK = Path(sys.executable).parent / "tunebook"

OFFLINE_ENV = env.OFFLINE  # what every tunebook process sets for itself, set for the tests too


def load_script(path: Path, name: str | None = None):
    """Import a script that is not in a package (scripts/bench/*.py, a suite's utils.py) by
    path, as lm-eval's ``!function`` does; registered in ``sys.modules`` so dataclasses and
    pickling inside it work."""
    name = name or f"script_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_tunebook(*args: str, root: Path | None = None, env: dict[str, str] | None = None,
                 timeout: float = 600) -> Result:
    """Run the real ``tunebook`` console script in a subprocess (exit codes, no traceback)."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    if root is not None:
        full_env["TUNEBOOK_ROOT"] = str(root)
    proc = subprocess.run([str(TUNEBOOK), *args], capture_output=True, text=True,
                          env=full_env, cwd=root or ROOT, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(result: Result, *fragments: str, code: int = 2) -> None:
    """One clear message, the expected exit code, and never a Python traceback."""
    assert result.code == code, result.text
    assert "Traceback" not in result.text, result.text
    assert "tunebook: error:" in result.err, result.text
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} not in: {result.err}"


def scratch_repo(dest: Path) -> Path:
    """A scratch copy of the repository's config tree (recipes, data, suites, Makefile,
    README) whose ``.cache/`` links to the real one: twins, the tiny base and tokenized data
    are built once (all keyed by content hash), and the scratch may be edited freely."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("recipes", "data-templates", "eval-suites"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, dest / name)
    for name in ("Makefile", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    (ROOT / ".cache").mkdir(exist_ok=True)
    (dest / ".cache").symlink_to(ROOT / ".cache")
    return dest
