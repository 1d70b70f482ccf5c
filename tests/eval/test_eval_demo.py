"""End to end on the embedded default: `tunebook demo` ships within 5 minutes, and a run trained
for a single step is refused by the gate. Real Axolotl, real lm-eval, offline on CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "DO_NOT_TRACK": "1", "AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": "disabled",
           "MLFLOW_DISABLE_TELEMETRY": "true"}

RECIPE = "tiny-lora-triage"
pytestmark = [pytest.mark.slow, pytest.mark.smoke, pytest.mark.xdist_group("demo")]


def run_tunebook(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """The real console script, so exit codes and the absence of tracebacks are end to end."""
    return subprocess.run([str(Path(sys.executable).parent / "tunebook"), *args], cwd=ROOT,
                          env={**os.environ, **OFFLINE}, capture_output=True, text=True,
                          timeout=timeout)


def newest_run() -> Path:
    runs = sorted((ROOT / "runs" / RECIPE).glob("*/manifest.json"), key=lambda p: p.parent.name)
    return runs[-1].parent


def test_demo_ships_within_five_minutes():
    started = time.time()
    result = run_tunebook("demo", timeout=900)
    wall = time.time() - started
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    assert "Traceback" not in text
    assert "gate says SHIP" in result.stdout
    report = Path(re.search(r"report: (\S+report\.html)", result.stdout).group(1))
    assert report.is_file()
    manifest = json.loads((report.parent / "manifest.json").read_text())
    primary = next(r for r in manifest["gate"]["rows"] if r["role"] == "primary")
    assert (primary["suite"], primary["metric"]) == ("triage", "acc")
    assert primary["p"] < 0.05 and primary["tuned"] > primary["base"]
    assert wall <= 300, f"demo took {wall:.0f} s (budget 300 s on 2 cores)"


def test_single_step_run_is_refused_by_the_gate():
    assert run_tunebook("baseline", "--recipe", RECIPE, timeout=600).returncode == 0
    trained = run_tunebook("train", "--recipe", RECIPE, "--overrides", "+axolotl.max_steps=1",
                           timeout=600)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    run = newest_run()
    assert run_tunebook("eval", "--recipe", RECIPE, "--run", str(run), timeout=600).returncode == 0
    gated = run_tunebook("gate", "--recipe", RECIPE, "--run", str(run), timeout=300)
    assert gated.returncode == 1, gated.stdout + gated.stderr
    assert "Traceback" not in gated.stderr
    assert "do not ship" in gated.stderr and "primary triage/acc" in gated.stderr
    assert "DO NOT SHIP" in gated.stdout
    assert json.loads((run / "manifest.json").read_text())["gate"]["ship"] is False
