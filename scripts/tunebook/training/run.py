"""The life of a training run, one stage after another: compose and validate the recipe, check
the data, render the run directory, launch Axolotl, record the outcome.

``train`` runs the stages in that order, each once: ``validate_recipe`` (composition, our schema,
Axolotl's key index, cross-field rules), the topology of the launch, the preflight (GPU, plan,
base model, disk: ``tunebook.training.preflight``; not for a base built here, a dry run or a
smoke run), the base model (a tiny twin is built here), the data gate (refusing on failure unless
``force``; before the run directory exists, so a refused run leaves nothing behind), ``render``,
MLflow, ``launch_command`` and ``run_launch``, which records status (running, completed,
interrupted, failed, invalid), metrics, the adapter and the log in ``manifest.json``.

``resume`` continues an interrupted run from its last *complete* checkpoint with the
configuration it was rendered with (``OVERRIDES`` may repeat the run's own, as a requeued Slurm
job does, but never change them); ``finish`` prints the summary and maps the status to the CLI's
exit code.

One writer per run (``tunebook.runlock``): ``train`` holds the run from the moment its directory
exists, ``resume`` before it reads or writes anything, so a second writer is refused at once
and ``RESUME=last`` never continues a live run. On a multi-node job node 0 holds it; the other
nodes are followers that write neither the manifest nor ``train.log`` (see ``tunebook.runlock``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from tunebook import env, paths, tracking, twins
from tunebook.axolotl_schema import run_validate_config
from tunebook.compose import as_typed, parse_overrides
from tunebook.data import checks as data_checks
from tunebook.errors import CheckFailed, UserError
from tunebook.redaction import redact
from tunebook.rundir import RunDir, new_run_id, resolve_run
from tunebook.runlock import hold
from tunebook.training import distributed, preflight
from tunebook.training import merge as merging
from tunebook.training.cache import prepared_path
from tunebook.training.checkpoints import checkpoints, last_complete_checkpoint
from tunebook.training.launch import launch_command, run_launch
from tunebook.training.process import LOG_FILE, log_tail
from tunebook.training.render import render
from tunebook.validate import validate_recipe

Manifest = dict[str, Any]
TOPOLOGY_FLAGS = ("nnodes", "node_rank", "master_addr", "master_port", "gpus_per_node")


def check_data(config: dict[str, Any], name: str) -> data_checks.Report:
    """The data gate over the recipe's train/val/test, token lengths with its tokenizer."""
    return data_checks.check_recipe(config, twins.tokenizer_for(config, full=False), name=name)


def start_from(from_run: str, name: str, overrides: list[str]) -> tuple[str, dict[str, Any]]:
    """The base of a run that continues a completed one (``FROM_RUN``: supervised fine-tuning,
    then preference tuning, as the alignment handbook does): the earlier run's adapter merged
    into its base (``<run>/merged``, made once), or its output when it was a full fine-tune.
    The new recipe must be of the same base model. Returns (base path, manifest record)."""
    earlier = resolve_run(None, from_run)
    manifest = earlier.manifest()
    if manifest.get("status") != "completed":
        raise UserError(f"FROM_RUN={from_run}: {paths.rel(earlier.path)} is "
                        f"{manifest.get('status')!r}, not completed; finish it first")
    config = yaml.safe_load((earlier.path / "resolved.yaml").read_text(encoding="utf-8"))
    before = ((config.get("meta") or {}).get("model") or {}).get("name")
    now = validate_recipe(name, overrides, axolotl=False).recipe.meta.model.name
    if before != now:
        raise UserError(f"FROM_RUN={from_run}: that run fine-tuned {before}, recipe {name} "
                        f"trains {now}; continue a run of the same base model")
    if (earlier.output_dir / "adapter_config.json").is_file():
        merged = earlier.path / "merged"
        with hold(earlier.path, "train --from-run"):  # merging writes into the earlier run
            base = merged if (merged / "config.json").is_file() else merging.merge_run(earlier)
            if base != merged or not manifest.get("merged"):
                earlier.update_manifest(merged=str(base))
    else:
        base = earlier.output_dir
    return str(base), {"run": str(earlier.path), "recipe": earlier.recipe, "base": str(base)}


def train(name: str, overrides: str | list[str], *, force: bool = False,
          dry_run: bool = False, smoke: bool = False, topology: dict[str, Any] | None = None,
          echo: bool = True, from_run: str | None = None) -> tuple[RunDir, Manifest]:
    """Validate, gate, render and (unless ``dry_run``) train ``name``; (run, manifest).
    ``from_run`` starts from a completed run's model (``start_from``)."""
    env.quiet_environment()
    flags = topology or {}
    items = _with_topology(parse_overrides(overrides), flags)
    started_from = None
    if from_run:
        base, started_from = start_from(from_run, name, items)
        items = [*items, f"axolotl.base_model={base}"]
    # Axolotl's own validate_config runs in the training process, which imports Axolotl anyway
    # (tunebook.training.child); the parent checks everything else without that 4-7 s import.
    validated = validate_recipe(name, items, deep=False)
    for w in validated.warnings:
        print(f"warning: {w.render(validated.composed.sources)}", file=sys.stderr)
    config = validated.config
    topo = distributed.topology(config, **flags)
    if dry_run or topo.distributed:  # nothing of ours runs validate_config before torchrun
        run_validate_config(config["axolotl"], f"recipe {name}")
    if topo.distributed and not dry_run:
        distributed.preflight(config)
    gate_fields: dict[str, Any] = {}
    if not (dry_run or smoke):
        gate_fields.update(check_preflight(preflight.Target.of(name, config, topo),
                                           force=force))
    if not dry_run:
        config["axolotl"]["base_model"] = twins.ensure_base(config)  # build a twin/tiny base
    if not smoke and not dry_run:
        report = check_data(config, name)
        print(report.summary())
        gate_fields["data_gate"] = {"passed": report.passed, "summary": report.summary()}
        if not report.passed and not force:
            raise CheckFailed(f"recipe {name}: the data gate failed (above); fix the data, or "
                              "pass FORCE=1 (--force) to train anyway, recorded in the manifest")
    extra = {"dataset_prepared_path": str(prepared_path(config["axolotl"]))}
    if not smoke:
        extra.update(tracking.axolotl_keys())
    with contextlib.ExitStack() as held:
        run = _run_dir(validated, topo, extra, dry_run=dry_run, smoke=smoke, held=held)
        cmd = launch_command(run, config, topo)
        if topo.node_rank > 0 and not dry_run:  # a follower of node 0, which records the run
            print(f"training {name} in {paths.rel(run.path)}/ as node {topo.node_rank}",
                  flush=True)
            return run, run_launch(run, config, cmd, echo=echo, node_rank=topo.node_rank)
        if not (dry_run or smoke):  # node 0 owns the MLflow run
            tracking.begin(run, config)  # a tracker that is down warns; training goes on
        run.update_manifest(forced=bool(force), smoke=smoke, seed=config["axolotl"].get("seed"),
                            dataset_prepared_path=extra["dataset_prepared_path"],
                            from_run=started_from, **gate_fields)
        if dry_run:
            print(f"config:  {run.axolotl_yaml}")
            print("command: " + " ".join(cmd))
            return run, run.update_manifest(status="dry-run", launch_command=cmd)
        print(f"training {name} in {paths.rel(run.path)}/ (log: "
              f"{paths.rel(run.path / LOG_FILE)})", flush=True)
        return run, run_launch(run, config, cmd, echo=echo)


def preflight_target(name: str, overrides: str | list[str],
                     topology: dict[str, Any] | None = None) -> preflight.Target:
    """What ``tunebook preflight`` checks: the recipe validated as ``train`` validates it."""
    env.quiet_environment()
    flags = topology or {}
    validated = validate_recipe(name, _with_topology(parse_overrides(overrides), flags),
                                deep=False)
    topo = distributed.topology(validated.config, **flags)
    return preflight.Target.of(name, validated.config, topo)


def check_preflight(target: preflight.Target, *, force: bool = False, resuming: bool = False,
                    probes: preflight.Probes | None = None) -> dict[str, Any]:
    """The preflight before a real launch (``tunebook.training.preflight``); nothing for a base
    built here, where it has nothing to say. A failure stops here (exit 1) unless ``force``
    (a new run only); the manifest records the checks either way."""
    if target.built_here:
        return {}
    lines = preflight.run(target, probes)
    verdict = preflight.failure(target, lines)
    if verdict and not force:
        raise CheckFailed(verdict + ("" if resuming else "; FORCE=1 (--force) launches anyway, "
                                     "recorded in the manifest"))
    if verdict:
        print(f"warning: {verdict}; launching anyway (FORCE=1)", file=sys.stderr)
    return {"preflight": preflight.record(lines)}


def _run_dir(validated: Any, topo: distributed.Topology, extra: dict[str, Any], *,
             dry_run: bool, smoke: bool, held: contextlib.ExitStack) -> RunDir:
    """Render the run directory, held by this process (``held``) from the moment it exists; on
    a multi-node job node 0 renders the shared one and the other nodes wait for it."""
    name = validated.composed.name
    shared = None if dry_run else distributed.shared_run_id(name, validated.composed.overrides,
                                                             topo)
    if shared and topo.node_rank == 0 and (paths.RUNS / name / shared).exists():
        raise UserError(f"{paths.rel(paths.RUNS / name / shared)} exists: continue it with "
                        f"--resume {paths.rel(paths.RUNS / name / shared)}, or start a new run "
                        f"with another {distributed.RUN_ID_ENV}")
    if shared and topo.node_rank > 0:
        run = RunDir(path=paths.RUNS / name / shared, recipe=name, run_id=shared)
        distributed.wait_for_run(run.path)  # node 0 renders it on the shared filesystem
        return run
    run_id = shared or new_run_id() + ("-smoke" if smoke else "")
    return render(validated, axolotl_extra=extra, run_id=run_id,
                  held=lambda path: held.enter_context(hold(path, "train")))


def _with_topology(items: list[str], topology: dict[str, Any]) -> list[str]:
    """``items`` plus the topology options as overrides: the resolved recipe records the real
    topology, in the normalized form the manifest records (``++launcher.nnodes=2``)."""
    return parse_overrides([*items, *(f"launcher.{k}={topology[k]}"
                                      for k in ("nnodes", "gpus_per_node")
                                      if topology.get(k) is not None)])


def _check_same_overrides(run: RunDir, overrides: str | list[str],
                          topology: dict[str, Any]) -> None:
    """A resumed run keeps the configuration it was rendered with: OVERRIDES may repeat the
    run's own (a requeued Slurm job passes them again) but never change them silently."""
    given = [as_typed(o) for o in redact(_with_topology(parse_overrides(overrides), topology))]
    recorded = [as_typed(o) for o in run.manifest().get("overrides") or []]
    if given != recorded:
        raise UserError(f"RESUME with OVERRIDES: {paths.rel(run.path)} was rendered with "
                        f"{' '.join(recorded) or 'no overrides'!r}, not {' '.join(given)!r}; a "
                        "resumed run keeps its resolved.yaml: drop OVERRIDES (or repeat the "
                        "run's own), or start a new run without RESUME")


def resume(recipe: str | None, which: str, *, echo: bool = True,
           topology: dict[str, Any] | None = None,
           overrides: str | list[str] = "") -> tuple[RunDir, Manifest]:
    """Continue run ``which`` (a directory or ``last``) from its last complete checkpoint."""
    env.quiet_environment()
    flags = topology or {}
    run_id = os.environ.get(distributed.RUN_ID_ENV)
    if which == "last" and run_id and recipe and (paths.RUNS / recipe / run_id).is_dir():
        which = str(paths.RUNS / recipe / run_id)
    run = resolve_run(recipe, which)
    follower = int(flags.get("node_rank") or 0) > 0  # node 0 holds the run and records it
    writer = contextlib.nullcontext() if follower else hold(
        run.path, "train --resume", hint="to resume another run, pass RESUME=<run dir>")
    with writer:
        return _resume(run, which, flags, overrides, echo=echo, follower=follower)


def _resume(run: RunDir, which: str, flags: dict[str, Any], overrides: str | list[str], *,
            echo: bool, follower: bool) -> tuple[RunDir, Manifest]:
    manifest = run.manifest()
    if manifest.get("status") in ("completed", "invalid"):
        done = "already completed" if manifest["status"] == "completed" else (
            "was rejected by Axolotl's validate_config and never trained")
        raise UserError(f"RESUME={which}: {paths.rel(run.path)} {done}; start a new "
                        "run with `make train` (without RESUME)")
    if overrides:
        _check_same_overrides(run, overrides, flags)
    config = yaml.safe_load((run.path / "resolved.yaml").read_text(encoding="utf-8"))
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    topo = distributed.topology(config, **flags)
    checked = check_preflight(preflight.Target.of(run.recipe, {**config, "axolotl": ax}, topo),
                              resuming=True)
    twins.ensure_base({"axolotl": ax, "meta": config.get("meta", {})})
    ckpt = last_complete_checkpoint(run.output_dir)
    skipped = [c for c in checkpoints(run.output_dir) if ckpt is None or
               int(c.name.split("-")[-1]) > int(ckpt.name.split("-")[-1])]
    for c in skipped:
        print(f"skipping incomplete checkpoint {paths.rel(c)} (no trainer_state.json or weights)")
    if ckpt is None:
        print(f"no complete checkpoint in {paths.rel(run.output_dir)}: training from the start")
    cmd = launch_command(run, config, topo, resume_from=str(ckpt) if ckpt else None)
    if not follower:
        run.update_manifest(resumes=int(manifest.get("resumes") or 0) + 1,
                            previous_status=manifest.get("status"), **checked)
    print(f"resuming {paths.rel(run.path)}/ from {paths.rel(ckpt) if ckpt else 'the start'}",
          flush=True)
    return run, run_launch(run, config, cmd, echo=echo, resumed_from=str(ckpt) if ckpt else None,
                           node_rank=topo.node_rank)


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, int | float) else "n/a"


def print_summary(run: RunDir, manifest: Manifest) -> None:
    m = manifest.get("metrics") or {}
    status = manifest.get("status")
    print(f"run:       {paths.rel(run.path)}/")
    print(f"status:    {status} in {manifest.get('wall_s', 0):.0f} s "
          f"(step {m.get('steps', '?')}/{m.get('max_steps', '?')}"
          f"{', early-stopped on validation loss' if m.get('early_stopped') else ''})")
    print(f"val loss:  start {_fmt(m.get('first_eval_loss'))} -> end "
          f"{_fmt(m.get('last_eval_loss'))} (best {_fmt(m.get('best_eval_loss'))}); "
          f"train loss {_fmt(m.get('train_loss'))}")
    if manifest.get("resumed_from"):
        print(f"resumed:   from {paths.rel(manifest['resumed_from'])}")
    if manifest.get("adapter"):
        print(f"adapter:   {paths.rel(manifest['adapter'])}/")
    elif manifest.get("partial_adapter"):
        print(f"partial:   {paths.rel(manifest['partial_adapter'])}/ (not a finished run)")
    print(f"log:       {paths.rel(manifest.get('log', run.path / LOG_FILE))}")


def finish(run: RunDir, manifest: Manifest) -> int:
    """Print the run's summary; the exit code of its status (0 completed, 130 interrupted)."""
    status = manifest.get("status")
    if status == "invalid":
        raise UserError(f"recipe {run.recipe}: {manifest.get('error')}; fix the recipe or "
                        f"OVERRIDES (`make validate` checks without training); the attempt is "
                        f"recorded in {paths.rel(run.path)}/")
    print_summary(run, manifest)
    if status == "completed":
        return 0
    if status == "interrupted":
        print(f"interrupted: continue with `make train RECIPE={run.recipe} RESUME=last` "
              f"(or --resume {paths.rel(run.path)})", file=sys.stderr)
        return 130
    log = manifest.get("log") or run.path / LOG_FILE
    print(f"tunebook: error: training failed; run dir {paths.rel(run.path)}/, last lines of "
          f"{paths.rel(log)}:\n{log_tail(Path(log))}", file=sys.stderr)
    return 1
