"""Tracking with MLflow: every run, its evaluation and its ship decision, findable later.

Where: ``MLFLOW_TRACKING_URI`` when set (a team server), else a local store
``sqlite:///<root>/runs/mlflow.db`` with artifacts under ``runs/mlartifacts/``. Nothing leaves the
machine unless that variable says so; MLflow's telemetry is switched off.

How a run is tracked (we own the run id, so training, eval, gate and report land in one run):
1. ``create_run(run_dir, config)`` creates the MLflow run, logs the resolved recipe as flattened
   params and records ``mlflow_run_id`` in the manifest;
2. ``axolotl_keys()`` go into the rendered ``axolotl.yaml`` and ``process_env(run_id)`` into the
   training process: Axolotl's MLflow integration resumes *our* run (``MLFLOW_RUN_ID``) and logs
   loss, eval_loss, learning rate... (Axolotl rejects a ``mlflow_run_id`` key, hence the env);
3. ``log_eval``, ``log_gate``, ``log_artifacts``, ``tag_run`` add the rest to the same run;
   ``record`` is the one call the pipeline steps make (a tracker that is down only warns).

Weights & Biases stays available as an override, off by default:
``OVERRIDES="+axolotl.use_wandb=true +axolotl.wandb_project=my-project"`` (plus ``WANDB_API_KEY``
in the environment, never in a recipe).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.env import TELEMETRY_OFF
from tunebook.errors import CheckFailed, UserError
from tunebook.redaction import redact
from tunebook.rundir import RunDir

DEFAULT_EXPERIMENT = "tunebook"
TAG = "tunebook."  # prefix of our tags: tunebook.recipe, tunebook.gate ...
MAX_PARAM_CHARS = 6000  # MLflow 3's limit on one param value
BATCH = 100  # MLflow's limit on params per log_batch call


# -- where -------------------------------------------------------------------------------------

def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the local sqlite store under ``runs/``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    paths.RUNS.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{paths.RUNS.resolve() / 'mlflow.db'}"


def is_local(uri: str | None = None) -> bool:
    return not os.environ.get("MLFLOW_TRACKING_URI") if uri is None else uri.startswith("sqlite:")


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def _client() -> Any:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    import logging

    for name in ("alembic", "mlflow.store.db.utils"):  # schema creation on first use
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def _experiment_id(client: Any, *, create: bool = True) -> str | None:
    name = experiment_name()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if not create:
        return None
    location = (paths.RUNS.resolve() / "mlartifacts").as_uri() if is_local() else None
    return client.create_experiment(name, artifact_location=location)


# -- starting a run and wiring it into Axolotl -------------------------------------------------

def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested sections -> ``{"axolotl.lora_r": "16", ...}``; lists stay JSON, long values cut."""
    out: dict[str, str] = {}
    if isinstance(config, dict) and config:
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    text = config if isinstance(config, str) else json.dumps(config, sort_keys=True)
    out[prefix.rstrip(".")] = text[:MAX_PARAM_CHARS]
    return out


def create_run(run_dir: RunDir, config: dict[str, Any], *,
               tags: dict[str, str] | None = None) -> str:
    """Create the MLflow run of ``run_dir`` (a ``render.RunDir``), log ``config`` as params.

    Returns the run id, which is also recorded in the manifest (``mlflow_run_id``)."""
    from mlflow.entities import Param, RunTag

    from tunebook.compose import typed_line

    client = _client()
    exp_id = _experiment_id(client)
    manifest = run_dir.manifest()
    meta = config.get("meta", {})
    all_tags = {
        f"{TAG}recipe": run_dir.recipe,
        f"{TAG}run_dir": str(run_dir.path),
        f"{TAG}launcher": str(config.get("launcher", {}).get("name", "")),
        f"{TAG}method": str(meta.get("method", {}).get("name", "")),
        f"{TAG}task": str(meta.get("task", {}).get("name", "")),
        f"{TAG}primary": _primary_key(config) or "",
        "mlflow.source.git.commit": str((manifest.get("git") or {}).get("sha") or ""),
        **(tags or {}),
    }
    run = client.create_run(exp_id, run_name=f"{run_dir.recipe}/{run_dir.run_id}",
                            tags=all_tags)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in sorted(flatten(redact(config)).items())]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i:i + BATCH])
    # The manifest keeps the ``++`` that composition added; the tag shows them as typed.
    client.log_batch(run_id, tags=[RunTag(f"{TAG}overrides",
                                          typed_line(manifest.get("overrides")))])
    run_dir.update_manifest(mlflow_run_id=run_id, mlflow_experiment=experiment_name(),
                            mlflow_tracking_uri=safe_uri(tracking_uri()))
    return run_id


def safe_uri(uri: str) -> str:
    """A tracking URI without user:password@, for the manifest and axolotl.yaml."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password or parts.username:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def axolotl_keys(run_id: str | None = None) -> dict[str, Any]:
    """Keys for ``render(..., axolotl_extra=...)``: Axolotl's MLflow integration.

    They do not hold the run id (Axolotl drops a ``mlflow_run_id`` key): ``env(run_id)`` in the
    training process makes the integration resume our run instead of creating its own."""
    return {
        "use_mlflow": True,
        "mlflow_tracking_uri": safe_uri(tracking_uri()),
        "mlflow_experiment_name": experiment_name(),
        "hf_mlflow_log_artifacts": False,  # checkpoints stay in the run dir; log_artifacts picks
    }


def begin(run_dir: RunDir, config: dict[str, Any]) -> str | None:
    """``create_run`` for ``tunebook train``: a tracking problem warns and training goes on."""
    try:
        return create_run(run_dir, config)
    except Exception as e:  # noqa: BLE001 - a tracker that is down must not cost a training run
        print(f"warning: MLflow run not created ({type(e).__name__}: {e}); training continues "
              "untracked", file=sys.stderr)
        return None


def process_env(run_id: str) -> dict[str, str]:
    """Environment of the training process: resume our run, no telemetry."""
    return {"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": tracking_uri(),
            "MLFLOW_EXPERIMENT_NAME": experiment_name(), **TELEMETRY_OFF}


# -- adding to a run ---------------------------------------------------------------------------

def run_id_of(run_dir: RunDir) -> str | None:
    return run_dir.manifest().get("mlflow_run_id")


def _require(run_dir: RunDir) -> str:
    run_id = run_id_of(run_dir)
    if not run_id:
        raise UserError(f"{paths.rel(run_dir.path)}: no MLflow run recorded in manifest.json "
                        "(mlflow_run_id); it was rendered without tracking")
    return run_id


def log_metrics(run_dir: RunDir, metrics: dict[str, float], *, step: int = 0) -> None:
    from mlflow.entities import Metric

    run_id = _require(run_dir)
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())
             if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    client = _client()
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i:i + 1000])


def log_eval(run_dir: RunDir, metrics: dict[str, dict[str, float]], *,
             prefix: str = "eval") -> None:
    """``{suite: {metric: value}}`` -> metrics ``eval/<suite>/<metric>`` on the run."""
    flat = {f"{prefix}/{suite}/{name}": value for suite, values in metrics.items()
            for name, value in (values or {}).items()}
    log_metrics(run_dir, flat)


def tag_run(run_dir: RunDir, tags: dict[str, str]) -> None:
    """Set tags on the run's MLflow run (e.g. a sweep's id and grid point)."""
    run_id = _require(run_dir)
    client = _client()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def metric(run_dir: RunDir, key: str) -> float | None:
    """The latest value of metric ``key`` on the run's MLflow run, or ``None``."""
    run_id = run_id_of(run_dir)
    if not run_id:
        return None
    value = _client().get_run(run_id).data.metrics.get(key)
    return None if value is None else float(value)


def verdict(gate: Any) -> str | None:
    """``ship`` / ``no-ship`` from a gate decision as the manifest records it, else ``None``."""
    if gate is None:
        return None
    if isinstance(gate, bool):
        return "ship" if gate else "no-ship"
    if isinstance(gate, str):
        word = gate.strip().lower().replace("_", "-").replace(" ", "-")
        return "ship" if word in ("ship", "pass", "passed", "yes") else "no-ship"
    if isinstance(gate, dict):
        for key in ("ship", "decision", "verdict", "passed"):
            if key in gate:
                return verdict(gate[key])
    return None


def log_gate(run_dir: RunDir, decision: Any) -> str | None:
    """Record the gate decision: tag ``tunebook.gate``, metric ``gate/ship`` (1/0), gate.json."""
    run_id = _require(run_dir)
    word = verdict(decision)
    client = _client()
    client.set_tag(run_id, f"{TAG}gate", word or "unknown")
    if word:
        flat = {"gate/ship": 1.0 if word == "ship" else 0.0}
        if isinstance(decision, dict):
            flat.update({f"gate/{k}": v for k, v in flatten(decision).items()
                         if _is_number(v)})
        log_metrics(run_dir, {k: float(v) for k, v in flat.items()})
    client.log_dict(run_id, decision if isinstance(decision, dict) else {"decision": decision},
                    "gate.json")
    return word


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and text not in ("true", "false")
    except (TypeError, ValueError):
        return False


def log_artifacts(run_dir: RunDir) -> None:
    """Run dir files (manifest, configs, eval, gate, report) and the final adapter only."""
    run_id = _require(run_dir)
    client = _client()
    for item in sorted(run_dir.path.iterdir()):
        if item.name in ("output",) or item.name.endswith(".tmp"):
            continue
        if item.is_dir():
            client.log_artifacts(run_id, str(item), artifact_path=item.name)
        elif item.is_file():
            client.log_artifact(run_id, str(item))
    adapter = adapter_dir(run_dir)
    if adapter is not None:
        files = [f for f in adapter.iterdir() if f.is_file()]
        for f in files:
            client.log_artifact(run_id, str(f), artifact_path="adapter")
    else:
        client.set_tag(run_id, f"{TAG}output_dir", str(run_dir.output_dir))


def adapter_dir(run_dir: RunDir) -> Path | None:
    out = run_dir.output_dir
    return out if (out / "adapter_config.json").is_file() else None


def end_run(run_dir: RunDir, status: str = "FINISHED") -> None:
    """Close the run (``FINISHED``/``FAILED``/``KILLED``) and tag the manifest's status."""
    run_id = _require(run_dir)
    client = _client()
    client.set_tag(run_id, f"{TAG}status", str(run_dir.manifest().get("status", "")))
    client.set_terminated(run_id, status=status)


def record(run_dir: RunDir, *, eval_metrics: dict[str, dict[str, float]] | None = None,
           gate: Any = None, metrics: dict[str, float] | None = None, artifacts: bool = False,
           status: str | None = None) -> bool:
    """The one call train / eval / gate / report make: add to the run's MLflow run if it has one.

    A tracking problem (a team server down, a locked database) prints a warning and never
    changes the command's own result: the run dir stays the record of truth."""
    try:
        if not run_id_of(run_dir):
            return False
        if eval_metrics is not None:
            log_eval(run_dir, eval_metrics)
        if gate is not None:
            log_gate(run_dir, gate)
        if metrics:
            log_metrics(run_dir, metrics)
        if artifacts:
            log_artifacts(run_dir)
        if status is not None:
            end_run(run_dir, status)
        return True
    except Exception as e:  # noqa: BLE001 - tracking must not break training or the gate
        print(f"warning: MLflow tracking of {paths.rel(run_dir.path)} failed: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return False


def mlflow_status(manifest_status: str | None) -> str:
    """Our manifest status -> MLflow's run status."""
    return {"completed": "FINISHED", "interrupted": "KILLED"}.get(manifest_status or "", "FAILED")


def _primary_key(config: dict[str, Any]) -> str | None:
    primary = (config.get("eval") or {}).get("primary") or {}
    if primary.get("suite") and primary.get("metric"):
        return f"eval/{primary['suite']}/{primary['metric']}"
    return None


# -- reading runs back -------------------------------------------------------------------------

def recent_runs(limit: int = 20, recipe: str | None = None) -> list[dict[str, Any]]:
    """Newest first: recipe, run name, status, primary metric, eval_loss, gate verdict."""
    client = _client()
    exp_id = _experiment_id(client, create=False)
    if exp_id is None:
        return []
    query = f"tags.`{TAG}recipe` = '{recipe}'" if recipe else ""
    runs = client.search_runs([exp_id], filter_string=query, max_results=limit,
                              order_by=["attributes.start_time DESC"])
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        primary = tags.get(f"{TAG}primary") or ""
        rows.append({
            "run_id": run.info.run_id,
            "name": run.info.run_name,
            "recipe": tags.get(f"{TAG}recipe", ""),
            "launcher": tags.get(f"{TAG}launcher", ""),
            "status": run.info.status,
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
            "primary": primary.removeprefix("eval/"),
            "primary_value": metrics.get(primary),
            "eval_loss": metrics.get("eval_loss"),
            "gate": tags.get(f"{TAG}gate", ""),
            "run_dir": tags.get(f"{TAG}run_dir", ""),
        })
    return rows


# -- registry ----------------------------------------------------------------------------------

def review_required(run_dir: RunDir) -> bool:
    """Whether the run's task policy requires a scored blind review (``eval.review.required``)."""
    import yaml

    resolved = run_dir.path / "resolved.yaml"
    if not resolved.is_file():
        return False
    config = yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
    return bool(((config.get("eval") or {}).get("review") or {}).get("required"))


def register_adapter(run_dir: RunDir, *, name: str | None = None) -> tuple[str, str]:
    """Register the run's adapter as a model version; only when its gate said ship (and, when
    the task requires it, a scored blind review significantly preferred the tuned model)."""
    manifest = run_dir.manifest()
    word = verdict(manifest.get("gate"))
    if word != "ship":
        why = ("has no gate decision; run `make gate` first" if word is None else
               "was rejected by the gate (no-ship); a model that did not clearly improve is "
               "not registered")
        raise CheckFailed(f"{paths.rel(run_dir.path)} {why}")
    review = manifest.get("review")
    if review_required(run_dir) and not (review and review.get("significant")):
        why = ("has no scored blind review; run `make review`, have raters fill the sheet, then "
               "`make review-score`" if not review else
               "'s blind review shows no significant preference for the tuned model")
        raise CheckFailed(f"{paths.rel(run_dir.path)}{'' if review else ' '}{why} (the task "
                          "requires one: eval.review.required)")
    run_id = _require(run_dir)
    adapter = adapter_dir(run_dir)
    if adapter is None:
        raise UserError(f"{paths.rel(run_dir.output_dir)}: no adapter (adapter_config.json); "
                        "register works on LoRA/QLoRA runs that finished training")
    client = _client()
    artifacts = {a.path for a in client.list_artifacts(run_id, "adapter")}
    if not artifacts:
        for f in adapter.iterdir():
            if f.is_file():
                client.log_artifact(run_id, str(f), artifact_path="adapter")
    model = name or run_dir.recipe
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        client.create_registered_model(model, description=f"LoRA adapters of recipe {model}")
    source = f"{client.get_run(run_id).info.artifact_uri}/adapter"
    version = client.create_model_version(model, source=source, run_id=run_id,
                                          tags={f"{TAG}run_dir": str(run_dir.path),
                                                f"{TAG}gate": "ship"})
    run_dir.update_manifest(registered={"name": model, "version": version.version,
                                        "source": source})
    return model, str(version.version)


# -- UI ----------------------------------------------------------------------------------------

def ui_command(port: int = 5000) -> list[str]:
    """``mlflow ui`` on localhost over the same store the runs are logged to."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else "mlflow", "ui",
           "--backend-store-uri", tracking_uri(), "--host", "127.0.0.1", "--port", str(port)]
    if is_local():
        cmd += ["--default-artifact-root", (paths.RUNS.resolve() / "mlartifacts").as_uri()]
    return cmd
