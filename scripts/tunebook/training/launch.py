"""Launching a rendered run and recording how it ended.

``launch_command(run, config, topo)`` is the only place that decides the command line
(``tunebook train --dry-run`` prints it): one process on one device runs
``python -m tunebook.training.child`` (``tunebook.training.child``); every other topology
(several GPUs, several nodes, or a DeepSpeed/FSDP launcher) is built by
``tunebook.training.distributed`` (``axolotl train <yaml> --launcher torchrun -- ...``).
``run_launch`` starts it (``tunebook.training.process``) and writes the outcome into the
manifest and the run's MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tunebook import env, tracking
from tunebook.rundir import RunDir
from tunebook.training import distributed
from tunebook.training.checkpoints import (
    final_weights,
    last_complete_checkpoint,
    metrics_from,
    result_from_output,
)
from tunebook.training.child import RESULT_FILE
from tunebook.training.process import LOG_FILE, execute


def launch_command(run: RunDir, config: dict[str, Any], topo: distributed.Topology, *,
                   resume_from: str | None = None) -> list[str]:
    """The command that trains ``run`` of the effective ``config`` on topology ``topo``."""
    if topo.distributed:
        return distributed.command(run, topo, resume_from=resume_from)
    seed = int((config.get("axolotl") or {}).get("seed") or 42)
    cmd = [sys.executable, "-m", "tunebook.training.child", str(run.axolotl_yaml),
           "--seed", str(seed), "--result", str(run.path / RESULT_FILE)]
    if resume_from:
        cmd += ["--resume-from", str(resume_from)]
    return cmd


def run_launch(run: RunDir, config: dict[str, Any], cmd: list[str], *, echo: bool = True,
               resumed_from: str | None = None, node_rank: int = 0) -> dict[str, Any]:
    """Launch ``cmd`` for ``run`` and record the outcome in its manifest; return the manifest.
    Node ranks > 0 of a multi-node job only run it: node 0 records the run
    (``tunebook.runlock``), so they return the outcome without writing the manifest."""
    if node_rank > 0:
        return _follow(run, cmd, node_rank, echo=echo)
    result_file = run.path / RESULT_FILE
    with contextlib.suppress(FileNotFoundError):
        result_file.unlink()
    log_path = run.path / LOG_FILE
    base = str(yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))["base_model"])
    started = time.time()
    run.update_manifest(status="running", started=_iso(started), ended=None,
                        launch_command=cmd, log=str(log_path), resumed_from=resumed_from,
                        pid=os.getpid())
    mlflow_run = run.manifest().get("mlflow_run_id")
    # Axolotl's MLflow callback resumes our run (MLFLOW_RUN_ID) instead of creating its own
    extra = tracking.process_env(mlflow_run) if mlflow_run else {}
    code, interrupted = execute(cmd, env.child_env(base, extra), log_path, echo=echo)
    ended = time.time()
    result: dict[str, Any] = {}
    if result_file.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            result = json.loads(result_file.read_text(encoding="utf-8"))
    if not result and "--launcher" in cmd:  # torchrun via the Axolotl CLI: no result file
        result = result_from_output(run.output_dir)
    outcome = result.get("outcome")
    if outcome == "completed" and code == 0 and not interrupted:
        status = "completed"
    elif outcome == "invalid":  # Axolotl's validate_config refused it: nothing was trained
        status = "invalid"
    elif interrupted or outcome == "interrupted" or code < 0 or code in (130, 137, 143):
        status = "interrupted"
    else:
        status = "failed"
    metrics = metrics_from(result) if result else {}
    weights = final_weights(run.output_dir)
    fields: dict[str, Any] = {
        "status": status, "ended": _iso(ended), "wall_s": round(ended - started, 1),
        "exit_code": code, "metrics": metrics, "error": result.get("error"),
        "adapter": str(run.output_dir) if status == "completed" and weights else None,
        "last_checkpoint": str(c) if (c := last_complete_checkpoint(run.output_dir)) else None,
    }
    if status != "completed" and weights:
        fields["partial_adapter"] = str(run.output_dir)  # Axolotl saves one on Ctrl-C
    manifest = run.update_manifest(**fields)
    tracking.record(run, artifacts=True, status=tracking.mlflow_status(status))
    return manifest


def _follow(run: RunDir, cmd: list[str], node_rank: int, *, echo: bool) -> dict[str, Any]:
    """A follower node: its own log (``train.node<rank>.log``), no manifest or MLflow writes."""
    base = str(yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))["base_model"])
    log_path = run.path / f"{Path(LOG_FILE).stem}.node{node_rank}.log"
    started = time.time()
    code, interrupted = execute(cmd, env.child_env(base), log_path, echo=echo)
    status = ("completed" if code == 0 and not interrupted else "interrupted"
              if interrupted or code < 0 or code in (130, 137, 143) else "failed")
    return {"status": status, "exit_code": code, "wall_s": round(time.time() - started, 1),
            "log": str(log_path), "metrics": {}}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))
