"""Helpers of the training tests: a scratch repository that shares the real ``.cache/``.

Training tests run the real ``tunebook`` console script (and through it the real Axolotl) with
``TUNEBOOK_ROOT`` pointing at a scratch copy of ``recipes/``, ``data-templates/`` and
``eval-suites/``: their runs (interrupted, failed, forced ...) never become somebody else's
``RUN=last``, and a test may edit the scratch data. ``.cache/`` is a link to the real one, so
twins, the tiny base and tokenized data are built once (all keyed by content hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from clihelp import OFFLINE_ENV, ROOT, TUNEBOOK, Result, scratch_repo  # noqa: F401

RECIPE = "tiny-lora-triage"
# A short run of the default recipe: 8 steps, validated and checkpointed every 4.
SHORT = "+axolotl.max_steps=8 axolotl.eval_steps=4 axolotl.save_steps=4"


def env_for(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, "TUNEBOOK_ROOT": str(root), **(extra or {})}


def tb(root: Path, *args: str, env: dict[str, str] | None = None,
       timeout: float = 900) -> Result:
    proc = subprocess.run([str(TUNEBOOK), *args], capture_output=True, text=True,
                          env=env_for(root, env), cwd=root, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tb_popen(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``tunebook`` in its own process group (as a terminal would run it)."""
    return subprocess.Popen([str(TUNEBOOK), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env_for(root, env),
                            cwd=root, start_new_session=True)


def runs_of(root: Path, recipe: str = RECIPE) -> list[Path]:
    base = root / "runs" / recipe
    return sorted(p for p in base.glob("*") if (p / "manifest.json").is_file()) \
        if base.is_dir() else []


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process ended (code {proc.returncode}) before {what}:\n{out}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
