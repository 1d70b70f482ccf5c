"""The GPU table (``recipes/hardware/gpus.yaml``): memory, speed and price of named GPUs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import yaml

from tunebook import paths
from tunebook.errors import UserError, did_you_mean

TABLE = paths.RECIPES / "hardware" / "gpus.yaml"


@dataclass(frozen=True)
class GPU:
    id: str
    name: str
    memory_gb: float
    bf16_tflops: float
    bandwidth_gbs: float
    price_per_hour: float
    bf16: bool
    flash_attention: bool
    compute_capability: str | None = None  # sm_<major><minor>, as Axolotl reports it


@functools.cache
def table() -> dict[str, GPU]:
    rows = yaml.safe_load(TABLE.read_text(encoding="utf-8"))["gpus"]
    return {row["id"]: GPU(**row) for row in rows}


def get(gpu_id: str) -> GPU:
    gpus = table()
    if gpu_id not in gpus:
        raise UserError(
            f"unknown GPU {gpu_id!r}{did_you_mean(gpu_id, gpus)}; known GPUs "
            f"({paths.rel(TABLE)}): {', '.join(gpus)}"
        )
    return gpus[gpu_id]
