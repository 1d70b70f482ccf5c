"""Tracking commands: ``runs``, ``ui`` and ``register`` (MLflow)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from tunebook import tracking
from tunebook.commands.args import recipe_args
from tunebook.env import TELEMETRY_OFF
from tunebook.errors import UserError
from tunebook.paths import rel
from tunebook.rundir import resolve_run


def runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=None, help="only runs of this recipe")
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_runs(rows: Sequence[dict[str, Any]], *, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("started", "recipe", "run", "launcher", "status", "primary metric", "eval_loss",
                "gate"):
        table.add_column(col, justify="right" if col in ("eval_loss",) else "left")
    for row in rows:
        primary = f"{row['primary']} = {_fmt(row['primary_value'])}" if row["primary"] else "-"
        table.add_row(row["started"], row["recipe"], row["name"].split("/")[-1], row["launcher"],
                      row["status"], primary, _fmt(row["eval_loss"]), row["gate"] or "-")
    Console(width=max(160, shutil.get_terminal_size().columns)).print(table)


def runs(args: argparse.Namespace) -> int:
    rows = tracking.recent_runs(args.limit, args.recipe)
    store = tracking.safe_uri(tracking.tracking_uri())
    if not rows:
        print(f"no runs tracked yet in {store}; `make train` logs one")
        return 0
    _print_runs(rows, title=f"{len(rows)} most recent run(s) in {store}")
    return 0


def ui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--dry-run", action="store_true", help="print the command, start nothing")


def ui(args: argparse.Namespace) -> int:
    cmd = tracking.ui_command(args.port)
    print(" ".join(cmd))
    if args.dry_run:
        return 0
    try:
        return subprocess.call(cmd, env={**os.environ, **TELEMETRY_OFF})
    except KeyboardInterrupt:
        return 0


def register_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, default=None, run=True)
    p.add_argument("--name", default=None, help="registered model name (default: the recipe)")


def register(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    run = resolve_run(args.recipe, args.run)
    store = tracking.safe_uri(tracking.tracking_uri())
    try:
        name, version = tracking.register_adapter(run, name=args.name)
    except MlflowException as e:
        raise UserError(f"{rel(run.path)}: MLflow run {tracking.run_id_of(run)} is not in "
                        f"{store} ({e.error_code}); set MLFLOW_TRACKING_URI to the store it was "
                        "logged to") from None
    print(f"registered {rel(run.path)} as model {name!r} version {version} in {store}")
    return 0
