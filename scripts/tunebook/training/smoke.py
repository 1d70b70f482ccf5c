"""Smoke training: any recipe for a few steps on the tiny CPU twin of its architecture.

``+profile=cpu-smoke`` swaps the base model for the family's twin and sets what a CPU needs;
method, task, data, sequence length and LoRA shape stay. A smoke run passes when training
completed, every logged loss is finite and an adapter or checkpoint was written.
"""

from __future__ import annotations

import time

from tunebook import paths
from tunebook.compose import parse_overrides
from tunebook.rundir import RunDir
from tunebook.training import run as lifecycle
from tunebook.training.checkpoints import checkpoints, final_weights
from tunebook.training.process import LOG_FILE, log_tail

SMOKE_PROFILE = "+profile=cpu-smoke"


def smoke_one(name: str, overrides: str = "", *,
              echo: bool = False) -> tuple[bool, str, RunDir]:
    """Train ``name`` on its twin for a few steps; (ok, one-line verdict, run)."""
    items = [*parse_overrides(overrides), SMOKE_PROFILE]
    t0 = time.perf_counter()
    run, manifest = lifecycle.train(name, items, smoke=True, echo=echo)
    m = manifest.get("metrics") or {}
    problems = []
    if manifest.get("status") != "completed":
        problems.append(f"status {manifest.get('status')}")
    if not m.get("all_finite"):
        problems.append("loss is missing or not finite")
    if not (final_weights(run.output_dir) or checkpoints(run.output_dir)):
        problems.append("no adapter or checkpoint written")
    took = time.perf_counter() - t0
    if problems:
        tail = log_tail(run.path / LOG_FILE, 15)
        return False, (f"FAIL {name} ({took:.0f} s): {'; '.join(problems)}; run dir "
                       f"{paths.rel(run.path)}/\n{tail}"), run
    first, last = (f"{v:.4f}" if isinstance(v, int | float) else "n/a"
                   for v in (m.get("first_train_loss"), m.get("train_loss")))
    return True, (f"ok   {name} ({took:.0f} s): loss {first} -> {last}, {m.get('steps')} steps, "
                  f"{paths.rel(run.output_dir)}/"), run
