"""The environment variables tunebook sets, in one place: telemetry off, local data, offline Hub.

- ``TELEMETRY_OFF``: no usage reporting from Axolotl, MLflow, W&B or anything honouring
  ``DO_NOT_TRACK``; always, in every process tunebook starts or runs in.
- ``LOCAL_DATA``: datasets are local JSONL files; ``datasets`` must not ask the Hub about them
  (without it, it sends a HEAD request per file and waits for a timeout).
- ``HUB_OFFLINE``: no model downloads. Our own process is always offline (it only checks and
  builds local things); the training process goes online only to download a base model that is
  a Hub id and not yet in the local cache (``child_env``).
- ``OFFLINE``: all of the above, for evaluation and for tests.

Variables the user set are never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "AXOLOTL_DO_NOT_TRACK": "1",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "WANDB_MODE": "disabled"}
LOCAL_DATA = {"HF_DATASETS_OFFLINE": "1"}
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Rust tokenizers must not spawn threads before a fork; child output must reach the log live.
PROCESS = {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
QUIET = {**TELEMETRY_OFF, **LOCAL_DATA, **PROCESS}
OFFLINE = {**QUIET, **HUB_OFFLINE}

_ADDED: set[str] = set()  # HUB_OFFLINE keys quiet_environment() added to our own process


def hub_offline(base_model: str) -> bool:
    """Offline unless ``base_model`` is a Hub id that is not in the local cache."""
    if Path(base_model).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(base_model, "config.json"), str)
    except Exception:  # an id the cache cannot parse: let the Hub client speak for itself
        return False


def user_hub_offline() -> bool:
    """Whether the user (not ``quiet_environment``) asked for no Hub access."""
    return any(os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")
               for key in HUB_OFFLINE if key not in _ADDED)


def hush_library_notices() -> None:
    """Drop notices addressed to library authors, not to tunebook's users, in every process
    tunebook runs: torchao 0.17 registers Enum types with torch's pytree, which torch 2.13 logs
    as deprecated (two ``W... _pytree.py`` lines) each time transformers or peft is imported.
    Only that logger, and only below ERROR; every other warning still shows."""
    import logging

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def quiet_environment() -> None:
    """For our own process: no telemetry, nothing fetched while checking and building."""
    for key, value in OFFLINE.items():
        if key not in os.environ:
            os.environ[key] = value
            if key in HUB_OFFLINE:
                _ADDED.add(key)  # ours, not the user's: the child decides for itself


def child_env(base_model: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the training process: quiet, offline unless ``base_model`` must be
    downloaded, the venv's ``bin/`` first on PATH (Axolotl execs ``accelerate`` from it)."""
    env = {k: v for k, v in os.environ.items() if k not in _ADDED}
    for key, value in QUIET.items():
        env.setdefault(key, value)
    if hub_offline(base_model):
        env.update(HUB_OFFLINE)
    env.update(extra or {})
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


@contextlib.contextmanager
def scoped(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore the old values."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def offline() -> contextlib.AbstractContextManager[None]:
    """``OFFLINE`` for the duration of a block (an evaluation: no Hub, no telemetry)."""
    return scoped(OFFLINE)
