"""Where things live. Everything is relative to the repository root, which holds the Makefile;
``TUNEBOOK_ROOT`` overrides it (tests point it at a scratch copy)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("TUNEBOOK_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "recipes").is_dir() and (parent / "Makefile").is_file():
            return parent
    return Path.cwd().resolve()


ROOT = _find_root()
RECIPES = ROOT / "recipes"
LOCK_DIR = RECIPES / ".lock"
DATA_TEMPLATES = ROOT / "data-templates"
EVAL_SUITES = ROOT / "eval-suites"
RUNS = ROOT / "runs"
CACHE = ROOT / ".cache"

# Config groups: each is a folder of options under recipes/. Recipes are the *.yaml files
# directly in recipes/. Files in a group whose name starts with "_" are shared parts that
# options include; they are not options themselves.
GROUPS = ("model", "method", "task", "launcher", "profile")


def rel(path: Path | str) -> str:
    """``path`` relative to the repository root when it is inside it, for messages."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def sha256(path: Path | str) -> str:
    """The hex sha256 of a file's bytes, read in blocks (data files can be gigabytes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
