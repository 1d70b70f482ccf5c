"""``tunebook sweep``: a grid of training runs over one recipe, each tracked, ranked by eval loss.

``--sweep "axolotl.learning_rate=1e-4,2e-4 axolotl.lora_r=8,16"`` is Hydra multirun syntax and is
expanded by Hydra's own override parser and ``BasicSweeper`` (the cartesian product, in Hydra's
order; ``range()``, ``choice()`` and group sweeps such as ``launcher=ddp,fsdp2`` work too). Every
point is composed and validated before the first one trains, so a bad value costs no GPU time.
Each point is one ordinary training run (``tunebook.training.run``) with its own run dir and MLflow
run, tagged ``tunebook.sweep=<sweep id>``; the summary is sorted by validation loss.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from tunebook import tracking
from tunebook.compose import parse_overrides, split_overrides
from tunebook.errors import UserError
from tunebook.rundir import RunDir
from tunebook.training import run as lifecycle
from tunebook.validate import validate_recipe

SWEEP_TAG = "tunebook.sweep"


def expand(sweep: str) -> list[list[str]]:
    """The grid points of ``sweep`` as lists of plain overrides, in Hydra's BasicSweeper order,
    as the user typed them (training adds the ``++`` a key no file sets needs)."""
    items = split_overrides(sweep)
    if not items:
        raise UserError("SWEEP is empty; expected e.g. "
                        "SWEEP=\"axolotl.learning_rate=1e-4,2e-4 axolotl.lora_r=8,16\"")
    try:
        parsed = OverridesParser.create().parse_overrides(items)
        batches = BasicSweeper.split_arguments(parsed, None)
    except HydraException as e:
        raise UserError(f"SWEEP={sweep!r}: {e}") from None
    return [list(point) for batch in batches for point in batch]


def validate_points(recipe: str, overrides: str, points: list[list[str]]) -> None:
    """Compose and validate every point first; the error names the point that is wrong."""
    base = parse_overrides(overrides)
    for i, point in enumerate(points, 1):
        try:
            validate_recipe(recipe, [*base, *point])
        except UserError as e:
            raise UserError(f"sweep point {i}/{len(points)} ({' '.join(point)}): {e}") from None


TrainFn = Callable[..., Any]  # (recipe, overrides list, tags=dict) -> finished RunDir


def run_sweep(recipe: str, overrides: str, sweep: str, *, train_fn: TrainFn | None = None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train every grid point; return one row per point, best validation loss first."""
    points = expand(sweep)
    validate_points(recipe, overrides, points)
    base = parse_overrides(overrides)
    sweep_id = time.strftime("%Y%m%d-%H%M%S")
    train_fn = train_fn or _default_train
    log(f"sweep {sweep_id}: {len(points)} point(s) of recipe {recipe}")
    rows = []
    for i, point in enumerate(points, 1):
        log(f"[{i}/{len(points)}] {' '.join(point)}")
        t0 = time.perf_counter()
        status, run, error = "ok", None, ""
        try:
            run = train_fn(recipe, [*base, *point],
                           tags={SWEEP_TAG: sweep_id, f"{SWEEP_TAG}.point": " ".join(point)})
        except UserError:
            raise  # invalid input stops the sweep: every later point would fail the same way
        except Exception as e:  # one diverged or crashed point must not lose the others
            status, error = "failed", f"{type(e).__name__}: {e}"
            log(f"  failed: {error}")
        if run is not None and status == "ok":
            status = str(run.manifest().get("status") or "unknown")
            status = "ok" if status == "completed" else status
        rows.append({"point": " ".join(point), "status": status, "error": error,
                     "run_dir": str(run.path) if run is not None else "",
                     "eval_loss": eval_loss(run) if run is not None else None,
                     "wall_s": round(time.perf_counter() - t0, 1)})
    rows.sort(key=lambda r: (r["eval_loss"] is None, r["eval_loss"] or 0.0))
    return rows


def _default_train(recipe: str, overrides: list[str], *, tags: dict[str, str]) -> RunDir:
    """One ordinary ``tunebook train`` run (data gate, render, Axolotl, MLflow), tagged."""
    run, _manifest = lifecycle.train(recipe, overrides)
    if tracking.run_id_of(run):
        tracking.tag_run(run, tags)
    run.update_manifest(sweep=tags)
    return run


def eval_loss(run: RunDir) -> float | None:
    """The run's last validation loss: from MLflow, else from the trainer state on disk."""
    value = tracking.metric(run, "eval_loss")
    if value is not None:
        return value
    states = sorted(run.output_dir.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    for state in reversed(states):
        history = json.loads(state.read_text()).get("log_history", [])
        losses = [h["eval_loss"] for h in history if "eval_loss" in h]
        if losses:
            return float(losses[-1])
    return None
