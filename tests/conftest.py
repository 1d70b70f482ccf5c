"""Shared fixtures. Tests run offline on CPU; tiers are pytest markers (see pyproject)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clihelp import ROOT


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """A scratch copy of the repository's config tree that a test may edit freely."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("recipes", "data-templates", "eval-suites"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    return root
