"""scripts/bench/gpu_memory.py end to end on CPU at --scale tiny: the recipe's architecture class,
method (4-bit bnb + LoRA, or a full fine-tune), checkpointing and optimiser really train."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OFFLINE_ENV, ROOT

SCRIPT = ROOT / "scripts" / "bench" / "gpu_memory.py"


def run(recipe: str, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--recipe", recipe, "--scale", "tiny", "--steps", "2",
         "--json", str(out), *extra],
        capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "plan (" in proc.stdout and "tokens/s" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.smoke
def test_qlora_recipe_trains_a_tiny_4bit_twin(tmp_path):
    r = run("mistral7b-qlora-support", tmp_path / "q.json")
    m = r["measured"]
    assert m["device"] == "cpu" and m["steps"] == 2 and m["finite_loss"]
    assert all(math.isfinite(x) and x > 0 for x in m["losses"])
    # 2 layers x 7 projections are bitsandbytes Linear4bit, and only LoRA weights train
    assert m["quantized_layers"] == 2 * 7
    assert 0 < m["trainable_params"] < m["total_params"]
    assert m["tokens_per_s"] > 0
    # the plan is computed for the same tiny architecture
    assert r["plan"]["params"] < 1_000_000 and r["plan"]["peak_gb"] > 0
    assert "weights" in r["plan"]["breakdown"]


@pytest.mark.smoke
def test_full_fine_tune_recipe_trains_every_weight(tmp_path):
    r = run("qwen1.5b-full-triage", tmp_path / "f.json")
    m = r["measured"]
    assert m["finite_loss"] and m["quantized_layers"] == 0
    assert m["trainable_params"] == m["total_params"]
