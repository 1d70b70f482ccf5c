"""Training commands: ``train``, ``smoke``, ``merge``, ``sbatch`` and ``sweep``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.commands.args import recipe_args
from tunebook.compose import recipe_names
from tunebook.errors import CheckFailed, UserError
from tunebook.rundir import resolve_run
from tunebook.training import merge as merging
from tunebook.training import preflight as checks
from tunebook.training import run as lifecycle
from tunebook.training import slurm, smoke, sweep
from tunebook.training.run import TOPOLOGY_FLAGS


def train_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)
    p.add_argument("--resume", metavar="last|RUN_DIR", default=None,
                   help="continue an interrupted run from its last complete checkpoint")
    p.add_argument("--force", action="store_true",
                   help="train even if the data gate or the preflight fails (recorded in the "
                        "manifest)")
    p.add_argument("--dry-run", action="store_true",
                   help="render and print the launch command without training")
    p.add_argument("--from-run", default=None, metavar="RUN_DIR",
                   help="start from a completed run's model (its adapter merged): SFT, then DPO")
    p.add_argument("--nnodes", type=int, default=None)
    p.add_argument("--node-rank", type=int, default=None)
    p.add_argument("--master-addr", default=None)
    p.add_argument("--master-port", type=int, default=None)
    p.add_argument("--gpus-per-node", type=int, default=None)


def _topology(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in TOPOLOGY_FLAGS if getattr(args, k, None) is not None}


def train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.dry_run:
            raise UserError("--resume with --dry-run: nothing to print; drop one of them")
        if args.force:
            raise UserError(f"RESUME={args.resume} with FORCE=1 (--force): the data gate ran "
                            "when the run started; drop FORCE, or start a new run without RESUME")
        if args.from_run:
            raise UserError(f"RESUME={args.resume} with FROM_RUN: a resumed run keeps the base it "
                            "started from; drop FROM_RUN")
        run, manifest = lifecycle.resume(args.recipe, args.resume, topology=_topology(args),
                                         overrides=args.overrides)
    else:
        run, manifest = lifecycle.train(args.recipe, args.overrides, force=args.force,
                                        dry_run=args.dry_run, topology=_topology(args),
                                        from_run=args.from_run)
        if args.dry_run:
            return 0
    return lifecycle.finish(run, manifest)


def preflight_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)


def run_preflight(args: argparse.Namespace) -> int:
    """What ``make train`` checks before it launches: GPU and plan, base model, disk."""
    target = lifecycle.preflight_target(args.recipe, args.overrides)
    verdict = checks.failure(target, checks.run(target))
    if verdict:
        raise CheckFailed(verdict)
    print(f"preflight of {target.recipe}: every check passed")
    return 0


def smoke_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)
    p.add_argument("--all", action="store_true", help="smoke-train every recipe")


def smoke_train(args: argparse.Namespace) -> int:
    names = recipe_names() if args.all else [args.recipe]
    t0 = time.perf_counter()
    failed = []
    for name in names:
        ok, line, run = smoke.smoke_one(name, args.overrides)
        print(line, flush=True)
        if run.manifest().get("status") == "interrupted":
            print("tunebook: interrupted", file=sys.stderr)
            return 130
        if not ok:
            failed.append(name)
    print(f"{len(names) - len(failed)}/{len(names)} recipe(s) trained on their twins in "
          f"{time.perf_counter() - t0:.0f} s")
    if failed:
        print(f"tunebook: error: smoke training failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def merge_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, run=True)


def merge(args: argparse.Namespace) -> int:
    run = resolve_run(args.recipe, args.run or "last")
    t0 = time.perf_counter()
    made = merging.merge(run)
    if made.warning:
        print(f"WARNING: {made.warning}", file=sys.stderr)
    if made.merged_now:
        print(f"merged {paths.rel(run.output_dir)}/ into its base in "
              f"{time.perf_counter() - t0:.0f} s: {paths.rel(made.model_dir)}/ ({made.dtype}, "
              "safetensors, tokenizer, chat template)")
    else:
        print(f"{paths.rel(made.model_dir)}/ is a full fine-tune: already a standalone model "
              f"({made.dtype})")
    print("serve it with:")
    print("  " + made.serve)
    if made.serve_adapter:
        print("or serve the base with the adapter beside it (no merge):")
        print("  " + made.serve_adapter)
    return 0


def sbatch_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)
    p.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs per node (default: the launcher's gpus_per_node)")
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument("--time", default="24:00:00", help="wall-clock limit (default 24:00:00)")
    p.add_argument("--out", default=None, help="where to write the script")


def sbatch(args: argparse.Namespace) -> int:
    gpus = args.gpus_per_node or slurm.launcher_gpus(args.recipe, args.overrides)
    script = slurm.render_sbatch(args.recipe, args.overrides, nodes=args.nodes,
                                 gpus_per_node=gpus, partition=args.partition,
                                 time_limit=args.time,
                                 out=Path(args.out).resolve() if args.out else None)
    each = "GPU(s)" if slurm.needs_gpu(args.recipe, args.overrides) else "process, CPU only"
    print(f"wrote {paths.rel(script)} ({args.nodes} node(s) x {gpus} {each})")
    print(f"submit: sbatch {shlex.quote(paths.rel(script))}")
    return 0


def sweep_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)
    p.add_argument("--sweep", required=True,
                   help="Hydra sweep overrides, e.g. 'axolotl.learning_rate=1e-4,2e-4 "
                        "axolotl.lora_r=8,16'")
    p.add_argument("--dry-run", action="store_true", help="list the grid points, train nothing")


def _print_sweep(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("rank", "point", "eval_loss", "status", "wall s", "run dir"):
        table.add_column(col, justify="right" if col in ("rank", "eval_loss", "wall s") else "left")
    for i, row in enumerate(rows, 1):
        loss = "-" if row["eval_loss"] is None else f"{row['eval_loss']:.4f}"
        table.add_row(str(i), row["point"], loss, row["status"], f"{row['wall_s']:.0f}",
                      paths.rel(row["run_dir"]) if row["run_dir"] else row["error"][:60])
    Console(width=160).print(table)


def run_sweep(args: argparse.Namespace) -> int:
    points = sweep.expand(args.sweep)
    if args.dry_run:
        sweep.validate_points(args.recipe, args.overrides, points)
        for i, point in enumerate(points, 1):
            print(f"{i:>3}  {shlex.join(point)}")
        print(f"{len(points)} point(s) of recipe {args.recipe}, all valid")
        return 0
    rows = sweep.run_sweep(args.recipe, args.overrides, args.sweep)
    _print_sweep(rows, f"sweep of {args.recipe}: {len(rows)} point(s), best validation loss "
                       "first")
    return 1 if any(r["status"] != "ok" for r in rows) else 0
