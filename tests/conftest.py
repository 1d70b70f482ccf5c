"""Shared test helpers. Tests run offline on CPU; tiers are pytest markers (see pyproject)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUNEBOOK = Path(sys.executable).parent / "tunebook"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


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
