"""Render a validated recipe into a run directory: ``runs/<recipe>/<run-id>/``.

- ``axolotl.yaml``: exactly what Axolotl reads (the ``axolotl`` section, repository paths made
  absolute, ``output_dir`` inside the run directory);
- ``resolved.yaml``: the whole effective recipe (all five sections);
- ``manifest.json``: provenance (git SHA and dirty flag, hashes of every recipe/group file and
  data file, package versions, hardware, command, timestamps, status). Secrets never land here:
  values of keys that look like credentials are redacted and the environment is not recorded.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tunebook import compose, paths
from tunebook.redaction import redact
from tunebook.rundir import RunDir, new_run_id
from tunebook.validate import Validated

PACKAGES = ("tunebook", "torch", "axolotl", "transformers", "peft", "trl", "datasets", "accelerate",
            "bitsandbytes", "lm_eval", "hydra-core", "omegaconf", "mlflow")
# Axolotl keys that hold repository-relative paths, made absolute in axolotl.yaml.
PATH_KEYS = ("deepspeed", "chat_template_jinja", "fsdp_config_path")


def render(validated: Validated, *, run_id: str | None = None,
           axolotl_extra: dict[str, Any] | None = None,
           held: Callable[[Path], Any] | None = None) -> RunDir:
    """Write the run directory of ``validated``; ``axolotl_extra`` sets wrapper-owned keys;
    ``held`` takes the run's writer lock as soon as the directory exists, before any file in it
    (``RUN=last`` only ever sees runs with a manifest, so never one that is not held yet)."""
    name = validated.composed.name
    run_id = run_id or new_run_id()
    run = RunDir(path=paths.RUNS / name / run_id, recipe=name, run_id=run_id)
    run.path.mkdir(parents=True, exist_ok=False)
    if held is not None:
        held(run.path)
    config = validated.config
    ax = axolotl_config(config, run)
    ax.update(axolotl_extra or {})
    run.axolotl_yaml.write_text(
        f"# Rendered by tunebook from recipe {name}; Axolotl reads this file.\n"
        + yaml.safe_dump(ax, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (run.path / "resolved.yaml").write_text(
        f"# Effective configuration of recipe {name} (all sections), as rendered.\n"
        + compose.to_yaml(redact(config)), encoding="utf-8")
    manifest = build_manifest(validated, run)
    run.manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                 encoding="utf-8")
    return run


def axolotl_config(config: dict[str, Any], run: RunDir) -> dict[str, Any]:
    """The ``axolotl`` section as Axolotl must read it, independent of the working directory."""
    ax = json.loads(json.dumps(config["axolotl"]))  # deep copy of plain data
    for list_key in ("datasets", "test_datasets"):
        for entry in ax.get(list_key) or []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                entry["path"] = _absolute(entry["path"])
    for key in PATH_KEYS:
        if isinstance(ax.get(key), str):
            ax[key] = _absolute(ax[key])
    if isinstance(ax.get("base_model"), str):
        ax["base_model"] = _absolute(ax["base_model"])
    ax["output_dir"] = str(run.output_dir)
    return ax


def _absolute(value: str) -> str:
    """A repository-relative path that exists becomes absolute, links resolved (a run records
    the base it really used, not a link that later moves); a hub id stays as it is."""
    candidate = paths.ROOT / value
    return str(candidate.resolve()) if not os.path.isabs(value) and candidate.exists() else value


def build_manifest(validated: Validated, run: RunDir) -> dict[str, Any]:
    composed = validated.composed
    config = validated.config
    data_files = {k: config["data"].get(k) for k in ("train", "val", "test", "system_prompt",
                                                    "answer_schema")}
    return redact({
        "recipe": composed.name,
        "run_id": run.run_id,
        "run_dir": str(run.path),
        "overrides": composed.overrides,
        "choices": composed.choices,
        "status": "rendered",
        "created": _now(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "git": git_state(),
        "recipe_files": {paths.rel(f): sha256(f) for f in composed.files},
        "data_files": {paths.rel(paths.ROOT / p): sha256(paths.ROOT / p)
                       for p in data_files.values() if p},
        "packages": package_versions(),
        "hardware": hardware(),
        "warnings": [w.render(composed.sources) for w in validated.warnings],
        "acknowledged_warnings": [w.render(composed.sources) for w in validated.acknowledged],
    })


def sha256(path: Path) -> str | None:
    return paths.sha256(path) if path.is_file() else None


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
    }
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gb"] = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10)
            info["gpus"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


