"""``tunebook train``, ``smoke`` and ``merge``: run Axolotl on a rendered run directory.

``train`` validates the recipe, runs the data gate (refusing on failure unless ``--force``),
renders ``runs/<recipe>/<run-id>/`` and launches Axolotl in a child process
(``tunebook.launch``), recording in ``manifest.json`` the status (running, completed,
interrupted, failed), start and end, the final metrics (train loss, first/last/best validation
loss, steps), the adapter path, ``resumed_from`` and the log file (``train.log``).

- Tokenized data is cached under ``.cache/prepared/<hash>``, the hash covering the *contents*
  of the data files and the tokenizer plus the Axolotl keys that shape tokenization: Axolotl's
  own cache key ignores file contents, so an edited dataset would silently reuse stale tokens.
- ``--resume last`` (or a run directory) continues from the last *complete* checkpoint, skipping
  a half-written one (no ``trainer_state.json``), which Axolotl's auto-resume would crash on.
- ``smoke`` trains a recipe on its tiny CPU twin (``+profile=cpu-smoke``) for a few steps and
  checks the loss is finite and an adapter or checkpoint was written; ``--all`` does every recipe.
- ``merge`` folds a LoRA/QLoRA adapter into its base (PEFT ``merge_and_unload``, fp32) and writes
  a standalone model directory (safetensors, tokenizer, chat template) for vLLM.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from tunebook import paths
from tunebook.errors import CheckFailed, UserError

LOG_FILE = "train.log"
TAIL_LINES = 30
# Telemetry off, datasets local: always. The Hub goes offline too unless the base model must be
# downloaded (a Hub id not in the local cache, on a user's GPU machine).
QUIET_ENV = {"DO_NOT_TRACK": "1", "AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": "disabled",
             "MLFLOW_DISABLE_TELEMETRY": "true", "HF_DATASETS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Axolotl keys that change the tokenized dataset (beside file and tokenizer contents).
DATA_KEYS = ("datasets", "test_datasets", "sequence_len", "chat_template", "chat_template_jinja",
             "tokenizer_config", "tokenizer_type", "tokenizer_use_fast", "special_tokens",
             "tokens", "train_on_inputs", "sample_packing", "rl", "val_set_size",
             "default_system_message", "eot_tokens", "train_on_eos", "roles_to_train",
             "excess_length_strategy", "min_sample_len", "dataset_shard_num",
             "dataset_shard_idx", "seed")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt")


# -- environment -------------------------------------------------------------------------------

def hub_offline(base_model: str) -> bool:
    """Offline unless ``base_model`` is a Hub id that is not in the local cache."""
    if Path(base_model).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(base_model, "config.json"), str)
    except Exception:  # an id the cache cannot parse: let the Hub client speak for itself
        return False


_ADDED: set[str] = set()  # offline keys quiet_environment() added to our own process


def child_env(base_model: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ADDED}
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    if hub_offline(base_model):
        env.update(OFFLINE_ENV)
    venv_bin = str(Path(sys.executable).parent)  # Axolotl execs accelerate from PATH
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def quiet_environment() -> None:
    """For our own process: no telemetry, nothing fetched while checking and building."""
    for key, value in {**QUIET_ENV, **OFFLINE_ENV}.items():
        if key not in os.environ:
            os.environ[key] = value
            if key in OFFLINE_ENV:
                _ADDED.add(key)  # ours, not the user's: the child decides for itself


# -- the content-hash cache of tokenized data --------------------------------------------------

def prepared_path(axolotl: dict[str, Any]) -> Path:
    """``.cache/prepared/<hash>``: data file contents + tokenizer files + tokenization keys."""
    h = hashlib.sha256()
    keys = {k: axolotl.get(k) for k in DATA_KEYS if k in axolotl}
    h.update(json.dumps(keys, sort_keys=True, default=str).encode())
    for list_key in ("datasets", "test_datasets"):
        for entry in axolotl.get(list_key) or []:
            path = Path(str(entry.get("path", "")))
            path = path if path.is_absolute() else paths.ROOT / path
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for f in files:
                if f.is_file():
                    h.update(f.name.encode())
                    h.update(_file_digest(f))
    base = str(axolotl.get("tokenizer_config") or axolotl.get("base_model") or "")
    base_dir = Path(base) if Path(base).is_absolute() else paths.ROOT / base
    h.update(base.encode() if not base_dir.is_dir() else b"")
    if base_dir.is_dir():
        for name in TOKENIZER_FILES:
            f = base_dir / name
            if f.is_file():
                h.update(name.encode())
                h.update(_file_digest(f))
    return paths.CACHE / "prepared" / h.hexdigest()[:16]


def _file_digest(path: Path) -> bytes:
    d = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            d.update(block)
    return d.digest()


# -- checkpoints and results -------------------------------------------------------------------

def checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint with a trainer state and weights; a half-written one is skipped."""
    for ckpt in reversed(checkpoints(output_dir)):
        weights = any((ckpt / n).is_file() for n in (
            "adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin", "adapter_model.bin"))
        if (ckpt / "trainer_state.json").is_file() and weights:
            return ckpt
    return None


def final_weights(output_dir: Path) -> Path | None:
    for name in ("adapter_model.safetensors", "model.safetensors",
                 "model.safetensors.index.json"):
        if (output_dir / name).is_file():
            return output_dir / name
    return None


def metrics_from(result: dict[str, Any]) -> dict[str, Any]:
    history = result.get("log_history") or []
    train = [e["loss"] for e in history if "loss" in e]
    evals = [(e.get("step"), e["eval_loss"]) for e in history if "eval_loss" in e]
    out: dict[str, Any] = {
        "steps": result.get("global_step"),
        "max_steps": result.get("max_steps"),
        "early_stopped": result.get("early_stopped"),
        "stop_reason": result.get("stop_reason"),
        "linear4bit_layers": result.get("linear4bit_layers"),  # > 0: a 4-bit (QLoRA) base
        "train_loss": train[-1] if train else None,
        "first_train_loss": train[0] if train else None,
        "first_eval_loss": evals[0][1] if evals else None,
        "last_eval_loss": evals[-1][1] if evals else None,
        "best_eval_loss": min((v for _, v in evals), default=None),
        "eval_steps": [s for s, _ in evals],
        "all_finite": all(isinstance(v, int | float) and math.isfinite(v)
                          for v in [*train, *(v for _, v in evals)]) and bool(train),
    }
    summary = [e for e in history if "train_runtime" in e]
    if summary:
        out["train_runtime_s"] = summary[-1].get("train_runtime")
    return out


# -- running the child -------------------------------------------------------------------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """If ``tunebook train`` is killed (even with SIGKILL), its Axolotl child dies too."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _echo(line: str) -> bool:
    """Lines worth showing live: logged metrics and errors; the whole log is in train.log."""
    return ("'loss'" in line or "'eval_loss'" in line or "'train_runtime'" in line
            or "Error" in line)


def execute(cmd: list[str], env: dict[str, str], log_path: Path, *,
            echo: bool = True) -> tuple[int, bool]:
    """Run ``cmd``, teeing its output into ``log_path``; Ctrl-C/SIGTERM are forwarded once as
    SIGINT so Axolotl saves its state. Returns (exit code, whether we were interrupted)."""
    interrupted = False
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=paths.ROOT, start_new_session=True,
                                preexec_fn=_die_with_parent, text=True, errors="replace",
                                bufsize=1)

        def forward(signum: int, _frame: Any) -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if echo and _echo(line):
                    print("  " + line.strip()[:160], flush=True)
            code = proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return code, interrupted


def log_tail(log_path: Path, n: int = TAIL_LINES) -> str:
    if not log_path.is_file():
        return ""
    with log_path.open(encoding="utf-8", errors="replace") as f:
        return "".join(deque(f, maxlen=n))


def run_launch(run: Any, config: dict[str, Any], cmd: list[str], *, echo: bool = True,
               resumed_from: str | None = None) -> dict[str, Any]:
    """Launch ``cmd`` for ``run`` and record the outcome in its manifest; return the manifest."""
    from tunebook.launch import RESULT_FILE

    result_file = run.path / RESULT_FILE
    with contextlib.suppress(FileNotFoundError):
        result_file.unlink()
    log_path = run.path / LOG_FILE
    base = str(yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))["base_model"])
    started = time.time()
    run.update_manifest(status="running", started=_iso(started), ended=None,
                        launch_command=cmd, log=str(log_path), resumed_from=resumed_from,
                        pid=os.getpid())
    from tunebook import distributed, tracking  # (scale-out) MLflow run id, torchrun result

    env = child_env(base)
    mlflow_run = run.manifest().get("mlflow_run_id")
    if mlflow_run:
        env.update(tracking.env(mlflow_run))  # Axolotl's MLflow callback resumes our run
    code, interrupted = execute(cmd, env, log_path, echo=echo)
    ended = time.time()
    result: dict[str, Any] = {}
    if result_file.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            result = json.loads(result_file.read_text(encoding="utf-8"))
    if not result and "--launcher" in cmd:  # torchrun via the Axolotl CLI: no result file
        result = distributed.result_from_output(run.output_dir)
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


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, int | float) else "n/a"


def print_summary(run: Any, manifest: dict[str, Any]) -> None:
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


# -- train -------------------------------------------------------------------------------------

def _topology(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("nnodes", "node_rank", "master_addr", "master_port",
                                          "gpus_per_node") if getattr(args, k, None) is not None}


def data_gate(config: dict[str, Any], name: str) -> Any:
    from tunebook import twins
    from tunebook.data import gate

    return gate.check_recipe(config, twins.tokenizer_for(config, full=False), name=name)


def start_run(name: str, overrides: str | list[str], *, force: bool = False,
              dry_run: bool = False, smoke: bool = False, topology: dict[str, Any] | None = None,
              echo: bool = True) -> tuple[Any, dict[str, Any]]:
    """Validate, gate, render and (unless ``dry_run``) train; return (run, manifest)."""
    from tunebook import twins
    from tunebook.launch import launch_command
    from tunebook.render import RunDir, render
    from tunebook.validate import validate_recipe

    quiet_environment()
    from tunebook import distributed, tracking  # (scale-out) topology, shared run id, MLflow
    from tunebook.compose import parse_overrides

    items = _with_topology(parse_overrides(overrides), topology)
    topo_args = topology or {}
    # Axolotl's own validate_config runs in the training process, which imports Axolotl anyway
    # (launch.child_main); the parent checks everything else without that 4-7 s import.
    validated = validate_recipe(name, items, deep=False)
    for w in validated.warnings:
        print(f"warning: {w.render(validated.composed.sources)}", file=sys.stderr)
    config = validated.config
    topo = distributed.topology(config, **topo_args)
    if dry_run or topo.distributed:  # nothing of ours runs validate_config before torchrun
        from tunebook.axolotl_schema import run_validate_config

        run_validate_config(config["axolotl"], f"recipe {name}")
    if topo.distributed and not dry_run:
        distributed.preflight(config)
    track = not (dry_run or smoke) and topo.node_rank == 0  # node 0 owns the MLflow run
    if not dry_run:
        config["axolotl"]["base_model"] = twins.ensure_base(config)  # build a twin/tiny base
    gate_fields: dict[str, Any] = {}
    if not smoke and not dry_run:
        report = data_gate(config, name)
        print(report.summary())
        gate_fields = {"data_gate": {"passed": report.passed, "summary": report.summary()}}
        if not report.passed and not force:
            raise CheckFailed(f"recipe {name}: the data gate failed (above); fix the data, or "
                              "pass FORCE=1 (--force) to train anyway, recorded in the manifest")
    extra = {"dataset_prepared_path": str(prepared_path(config["axolotl"]))}
    if not smoke:
        extra.update(tracking.axolotl_keys())
    shared = None if dry_run else distributed.shared_run_id(name, validated.composed.overrides,
                                                             topo)
    if shared and topo.node_rank == 0 and (paths.RUNS / name / shared).exists():
        raise UserError(f"{paths.rel(paths.RUNS / name / shared)} exists: continue it with "
                        f"--resume {paths.rel(paths.RUNS / name / shared)}, or start a new run "
                        f"with another {distributed.RUN_ID_ENV}")
    if shared and topo.node_rank > 0:
        run = RunDir(path=paths.RUNS / name / shared, recipe=name, run_id=shared)
        distributed.wait_for_run(run.path)  # node 0 renders it on the shared filesystem
    else:
        run = render(validated, axolotl_extra=extra, run_id=shared or _run_id(smoke))
    if track:
        tracking.begin(run, config)  # a tracker that is down warns; training goes on
    cmd = launch_command(run, config, **(topology or {}))
    run.update_manifest(forced=bool(force), smoke=smoke, seed=config["axolotl"].get("seed"),
                        dataset_prepared_path=extra["dataset_prepared_path"], **gate_fields)
    if dry_run:
        print(f"config:  {run.axolotl_yaml}")
        print("command: " + " ".join(cmd))
        return run, run.update_manifest(status="dry-run", launch_command=cmd)
    print(f"training {name} in {paths.rel(run.path)}/ (log: {paths.rel(run.path / LOG_FILE)})",
          flush=True)
    return run, run_launch(run, config, cmd, echo=echo)


def _with_topology(items: list[str], topology: dict[str, Any] | None) -> list[str]:
    """``items`` plus the topology options as overrides: the resolved recipe records the real
    topology."""
    topo = topology or {}
    return [*items, *(f"launcher.{k}={topo[k]}" for k in ("nnodes", "gpus_per_node")
                      if topo.get(k) is not None)]


def _check_same_overrides(run: Any, overrides: str | list[str],
                          topology: dict[str, Any] | None) -> None:
    """A resumed run keeps the configuration it was rendered with: OVERRIDES may repeat the
    run's own (a requeued Slurm job passes them again) but never change them silently."""
    from tunebook.compose import parse_overrides
    from tunebook.render import redact

    given = redact(_with_topology(parse_overrides(overrides), topology))
    recorded = run.manifest().get("overrides") or []
    if given != recorded:
        raise UserError(f"RESUME with OVERRIDES: {paths.rel(run.path)} was rendered with "
                        f"{' '.join(recorded) or 'no overrides'!r}, not {' '.join(given)!r}; a "
                        "resumed run keeps its resolved.yaml: drop OVERRIDES (or repeat the "
                        "run's own), or start a new run without RESUME")


def _run_id(smoke: bool) -> str:
    from tunebook.render import new_run_id

    return new_run_id() + ("-smoke" if smoke else "")


def resume_run(recipe: str | None, which: str, *, echo: bool = True,
               topology: dict[str, Any] | None = None,
               overrides: str | list[str] = "") -> tuple[Any, dict[str, Any]]:
    from tunebook import twins
    from tunebook.launch import launch_command
    from tunebook.render import resolve_run

    quiet_environment()
    from tunebook import distributed  # (scale-out) a requeued Slurm job resumes its own run

    run_id = os.environ.get(distributed.RUN_ID_ENV)
    if which == "last" and run_id and recipe and (paths.RUNS / recipe / run_id).is_dir():
        which = str(paths.RUNS / recipe / run_id)
    run = resolve_run(recipe, which)
    manifest = run.manifest()
    if manifest.get("status") in ("completed", "invalid"):
        done = "already completed" if manifest["status"] == "completed" else (
            "was rejected by Axolotl's validate_config and never trained")
        raise UserError(f"RESUME={which}: {paths.rel(run.path)} {done}; start a new "
                        "run with `make train` (without RESUME)")
    if overrides:
        _check_same_overrides(run, overrides, topology)
    config = yaml.safe_load((run.path / "resolved.yaml").read_text(encoding="utf-8"))
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    twins.ensure_base({"axolotl": ax, "meta": config.get("meta", {})})
    ckpt = last_complete_checkpoint(run.output_dir)
    skipped = [c for c in checkpoints(run.output_dir) if ckpt is None or
               int(c.name.split("-")[-1]) > int(ckpt.name.split("-")[-1])]
    for c in skipped:
        print(f"skipping incomplete checkpoint {paths.rel(c)} (no trainer_state.json or weights)")
    if ckpt is None:
        print(f"no complete checkpoint in {paths.rel(run.output_dir)}: training from the start")
    cmd = launch_command(run, config, resume_from=str(ckpt) if ckpt else None, **(topology or {}))
    previous = manifest.get("status")
    run.update_manifest(resumes=int(manifest.get("resumes") or 0) + 1,
                        previous_status=previous)
    print(f"resuming {paths.rel(run.path)}/ from {paths.rel(ckpt) if ckpt else 'the start'}",
          flush=True)
    return run, run_launch(run, config, cmd, echo=echo, resumed_from=str(ckpt) if ckpt else None)


def finish(run: Any, manifest: dict[str, Any]) -> int:
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
    tail = log_tail(run.path / LOG_FILE)
    print(f"tunebook: error: training failed; run dir {paths.rel(run.path)}/, last lines of "
          f"{paths.rel(run.path / LOG_FILE)}:\n{tail}", file=sys.stderr)
    return 1


def _cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.dry_run:
            raise UserError("--resume with --dry-run: nothing to print; drop one of them")
        if args.force:
            raise UserError(f"RESUME={args.resume} with FORCE=1 (--force): the data gate ran "
                            "when the run started; drop FORCE, or start a new run without RESUME")
        run, manifest = resume_run(args.recipe, args.resume, topology=_topology(args),
                                   overrides=args.overrides)
    else:
        run, manifest = start_run(args.recipe, args.overrides, force=args.force,
                                  dry_run=args.dry_run, topology=_topology(args))
        if args.dry_run:
            return 0
    return finish(run, manifest)


# -- smoke -------------------------------------------------------------------------------------

SMOKE_PROFILE = "+profile=cpu-smoke"


def smoke_one(name: str, overrides: str = "", *, echo: bool = False) -> tuple[bool, str, Any]:
    """Train ``name`` on its twin for a few steps; (ok, one-line verdict, run)."""
    from tunebook.compose import parse_overrides

    items = [*parse_overrides(overrides), SMOKE_PROFILE]
    t0 = time.perf_counter()
    run, manifest = start_run(name, items, smoke=True, echo=echo)
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
    return True, (f"ok   {name} ({took:.0f} s): loss {_fmt(m.get('first_train_loss'))} -> "
                  f"{_fmt(m.get('train_loss'))}, {m.get('steps')} steps, "
                  f"{paths.rel(run.output_dir)}/"), run


def _cmd_smoke(args: argparse.Namespace) -> int:
    from tunebook.compose import recipe_names

    names = recipe_names() if args.all else [args.recipe]
    t0 = time.perf_counter()
    failed = []
    for name in names:
        ok, line, run = smoke_one(name, args.overrides)
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


# -- merge -------------------------------------------------------------------------------------

def merge_run(run: Any) -> Path:
    """Merge the run's adapter into its base; write ``<run>/merged/`` and return it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunebook import twins

    quiet_environment()
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    out = run.output_dir
    if not (out / "adapter_config.json").is_file():
        raise UserError(f"RUN={paths.rel(run.path)}: no LoRA adapter in {paths.rel(out)}/ "
                        "(adapter_config.json); train it to completion first")
    base = twins.ensure_base({"axolotl": ax})
    attn = ax.get("attn_implementation")
    kwargs = {"attn_implementation": attn} if attn in ("eager", "sdpa") else {}
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **kwargs)
    merged = PeftModel.from_pretrained(model, str(out)).merge_and_unload()
    dest = run.path / "merged"
    merged.save_pretrained(dest, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out))  # Axolotl saved it beside the adapter
    tokenizer.save_pretrained(dest)
    if tokenizer.chat_template and not (dest / "chat_template.jinja").is_file():
        (dest / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    return dest


def vllm_command(model_dir: Path, recipe: str, ax: dict[str, Any]) -> str:
    seq = ax.get("sequence_len")
    return (f"vllm serve {model_dir} --served-model-name {recipe}"
            + (f" --max-model-len {seq}" if seq else "") + " --dtype auto")


def _cmd_merge(args: argparse.Namespace) -> int:
    from tunebook.render import resolve_run

    run = resolve_run(args.recipe, args.run or "last")
    manifest = run.manifest()
    if manifest.get("status") != "completed":
        raise UserError(f"RUN={paths.rel(run.path)} is {manifest.get('status')!r}, not "
                        "completed; finish it first (make train RESUME=last)")
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    if not ax.get("adapter"):
        print(f"{paths.rel(run.output_dir)}/ is a full fine-tune: already a standalone model")
        print(vllm_command(run.output_dir, run.recipe, ax))
        return 0
    t0 = time.perf_counter()
    dest = merge_run(run)
    run.update_manifest(merged=str(dest))
    print(f"merged {paths.rel(run.output_dir)}/ into its base in {time.perf_counter() - t0:.0f} s:"
          f" {paths.rel(dest)}/ (safetensors, tokenizer, chat template)")
    print("serve it with:")
    print("  " + vllm_command(dest, run.recipe, ax))
    return 0


# -- CLI ---------------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    from tunebook.cli import add_recipe_args

    p = sub.add_parser("train", help="render and train a recipe with Axolotl; resume a run")
    add_recipe_args(p)
    p.add_argument("--resume", metavar="last|RUN_DIR", default=None,
                   help="continue an interrupted run from its last complete checkpoint")
    p.add_argument("--force", action="store_true",
                   help="train even if the data gate fails (recorded in the manifest)")
    p.add_argument("--dry-run", action="store_true",
                   help="render and print the launch command without training")
    p.add_argument("--nnodes", type=int, default=None)
    p.add_argument("--node-rank", type=int, default=None)
    p.add_argument("--master-addr", default=None)
    p.add_argument("--master-port", type=int, default=None)
    p.add_argument("--gpus-per-node", type=int, default=None)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("smoke", help="train a recipe on its tiny CPU twin for a few steps")
    add_recipe_args(p)
    p.add_argument("--all", action="store_true", help="smoke-train every recipe")
    p.set_defaults(func=_cmd_smoke)

    p = sub.add_parser("merge", help="merge a run's LoRA adapter into its base; print vLLM command")
    add_recipe_args(p, run=True)
    p.set_defaults(func=_cmd_merge)
