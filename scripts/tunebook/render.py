"""Render a validated recipe into a run directory: ``runs/<recipe>/<run-id>/``.

- ``axolotl.yaml``: exactly what Axolotl reads (the ``axolotl`` section, repository paths made
  absolute, ``output_dir`` inside the run directory);
- ``resolved.yaml``: the whole effective recipe (all five sections);
- ``manifest.json``: provenance (git SHA and dirty flag, hashes of every recipe/group file and
  data file, package versions, hardware, command, timestamps, status). Secrets never land here:
  values of keys that look like credentials are redacted and the environment is not recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunebook import compose, paths
from tunebook.validate import Validated, validate_recipe

PACKAGES = ("tunebook", "torch", "axolotl", "transformers", "peft", "trl", "datasets", "accelerate",
            "bitsandbytes", "lm_eval", "hydra-core", "omegaconf", "mlflow")
# A credential word as a whole component of a key name: hub_token, wandb_api_key, HF_TOKEN;
# not max_new_tokens or tokenizer_type, which are settings.
_SECRET_WORD = r"(?:token|secret|password|passwd|api_?key|credentials?)"
SECRET_KEY = re.compile(rf"(?:^|[_.\-]){_SECRET_WORD}(?:$|[_.\-])", re.I)
REDACTED = "<redacted>"
SECRET_ASSIGNMENT = re.compile(
    rf"((?:[^\s=]*[_.\-])?{_SECRET_WORD}(?:[_.\-][^\s=]*)?=)[^\s]+", re.I)
HF_TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
# Axolotl keys that hold repository-relative paths, made absolute in axolotl.yaml.
PATH_KEYS = ("deepspeed", "chat_template_jinja", "fsdp_config_path")


@dataclass
class RunDir:
    path: Path
    recipe: str
    run_id: str

    @property
    def axolotl_yaml(self) -> Path:
        return self.path / "axolotl.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def output_dir(self) -> Path:
        return self.path / "output"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into manifest.json atomically (write then rename)."""
        data = self.manifest()
        data.update(redact(fields))
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
                       encoding="utf-8")
        os.replace(tmp, self.manifest_path)
        return data

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = path.resolve()
        return cls(path=path, recipe=path.parent.name, run_id=path.name)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def render(validated: Validated, *, run_id: str | None = None,
           axolotl_extra: dict[str, Any] | None = None) -> RunDir:
    """Write the run directory of ``validated``; ``axolotl_extra`` sets wrapper-owned keys."""
    name = validated.composed.name
    run_id = run_id or new_run_id()
    run = RunDir(path=paths.RUNS / name / run_id, recipe=name, run_id=run_id)
    run.path.mkdir(parents=True, exist_ok=False)
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


def redact(value: Any, key: str = "") -> Any:
    """Replace values of credential-like keys (and overrides setting them) with a marker."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v is not None
                    else redact(v, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        # any `...token...=value` inside a string (an OVERRIDES string holds several), and
        # anything shaped like a Hugging Face token
        value = SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, value)
        return HF_TOKEN_VALUE.sub(REDACTED, value)
    return value


def sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def resolve_run(recipe: str | None, run: str | None) -> RunDir:
    """``RUN=<dir>`` or ``RUN=last`` (the newest run of ``recipe``, or of any recipe)."""
    from tunebook.errors import UserError

    if run and run != "last":
        path = Path(run)
        if not path.is_absolute():
            path = (Path.cwd() / path) if (Path.cwd() / path).exists() else paths.ROOT / path
        if not (path / "manifest.json").is_file():
            raise UserError(f"RUN={run}: not a run directory (no manifest.json); expected "
                            "runs/<recipe>/<run-id> or RUN=last")
        return RunDir.open(path)
    base = paths.RUNS / recipe if recipe else paths.RUNS
    pattern = "*/manifest.json" if recipe else "*/*/manifest.json"
    candidates = sorted(base.glob(pattern), key=lambda p: p.parent.name) if base.is_dir() else []
    candidates = [c for c in candidates if c.parent.name != "baseline"
                  and not c.parent.name.endswith(("-smoke", "-bench"))]  # twins, benchmarks
    if not candidates:
        where = f"recipe {recipe}" if recipe else "any recipe"
        raise UserError(f"RUN=last: no runs of {where} under {paths.rel(base)}; "
                        f"run `make train{' RECIPE=' + recipe if recipe else ''}` first")
    return RunDir.open(candidates[-1].parent)


def register(sub: argparse._SubParsersAction) -> None:
    from tunebook.cli import add_recipe_args

    p = sub.add_parser("render", help="write runs/<recipe>/<run-id>/ without training")
    add_recipe_args(p)
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    validated = validate_recipe(args.recipe, args.overrides)
    for w in validated.warnings:
        print(f"warning: {w.render(validated.composed.sources)}", file=sys.stderr)
    run = render(validated)
    print(f"rendered {paths.rel(run.path)}/ (axolotl.yaml, resolved.yaml, manifest.json)")
    return 0
