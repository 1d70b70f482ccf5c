"""Concrete changes that make a recipe fit a GPU, cheapest first, each re-planned.

``suggestions`` receives the planner itself (``plan_fn``) rather than importing it, so that the
estimate can call the suggestions and the suggestions can re-run the estimate without an import
cycle.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunebook import gpus
from tunebook.plan.memory import OPTIMIZER_STATE_BYTES
from tunebook.plan.settings import settings_from


@dataclass
class Suggestion:
    change: str
    overrides: str
    peak_gb: float
    fits: bool
    cost: str


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    node = config
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def _variant(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    c = copy.deepcopy(config)
    for k, v in changes.items():
        _set(c, k, v)
    return c


def suggestions(config: dict[str, Any], gpu: gpus.GPU, n: int,
                framework: dict[str, Any] | None, plan_fn: Callable[..., Any]) -> list[Suggestion]:
    """Concrete changes that make the recipe fit, cheapest first, each with its new estimate.

    ``plan_fn`` is ``tunebook.plan.estimate.estimate``: ``plan_fn(config, gpu_id, gpus,
    framework=..., suggest=False)`` returns an object with ``peak_gb`` and ``fits``."""
    ax = config.get("axolotl") or {}
    kind = config["meta"]["method"]["kind"]
    cur = settings_from(config, gpu, n, framework)
    out: list[Suggestion] = []

    def peak(c: dict[str, Any], g: str = gpu.id, gp: int = n) -> tuple[float, bool]:
        p = plan_fn(c, g, gp, framework=framework, suggest=False)
        return p.peak_gb, p.fits

    def add(change: str, overrides: str, c: dict[str, Any], cost: str,
            g: str = gpu.id, gp: int = n) -> None:
        pk, fits = peak(c, g, gp)
        out.append(Suggestion(change, overrides, round(pk, 2), fits, cost))

    if not cur.checkpointing:
        add("turn on gradient checkpointing", 'OVERRIDES="axolotl.gradient_checkpointing=true"',
            _variant(config, {"axolotl.gradient_checkpointing": True}),
            "~+30% step time (one extra forward)")
    mb = int(ax.get("micro_batch_size") or 1)
    ga = int(ax.get("gradient_accumulation_steps") or 1)
    if mb > 1:
        new = mb // 2
        while new > 1 and not peak(_variant(config, {"axolotl.micro_batch_size": new}))[1]:
            new //= 2
        add(f"micro-batch {mb} -> {new}, accumulation {ga} -> {ga * mb // new}",
            f'OVERRIDES="axolotl.micro_batch_size={new} '
            f'axolotl.gradient_accumulation_steps={ga * mb // new}"',
            _variant(config, {"axolotl.micro_batch_size": new,
                              "axolotl.gradient_accumulation_steps": ga * mb // new}),
            "same sequences per step; lower GPU utilisation")
    opt = str(ax.get("optimizer") or "")
    if kind == "full" and (OPTIMIZER_STATE_BYTES.get(opt) is None):
        add("8-bit AdamW states", 'OVERRIDES="axolotl.optimizer=adamw_bnb_8bit"',
            _variant(config, {"axolotl.optimizer": "adamw_bnb_8bit"}),
            "optimizer states 4-8 -> 2 B/param; usually no quality change")
    if kind == "full":
        lora = {"meta.method.kind": "lora", "axolotl.adapter": "lora",
                "axolotl.lora_r": ax.get("lora_r") or 16,
                "axolotl.lora_alpha": ax.get("lora_alpha") or 32,
                "axolotl.lora_target_modules": config["meta"]["model"]["lora_target_modules"]}
        add("LoRA instead of a full fine-tune", 'OVERRIDES="method=lora"', _variant(config, lora),
            "trains adapters only; usually close to full fine-tuning on small task sets")
    if kind in {"full", "lora"}:
        q = {"meta.method.kind": "qlora", "axolotl.adapter": "qlora",
             "axolotl.load_in_4bit": True, "axolotl.lora_r": ax.get("lora_r") or 16,
             "axolotl.lora_alpha": ax.get("lora_alpha") or 32,
             "axolotl.lora_target_modules": config["meta"]["model"]["lora_target_modules"]}
        add("QLoRA (4-bit NF4 base)", 'OVERRIDES="method=qlora"', _variant(config, q),
            "base weights 2 -> ~0.52 B/param; ~25% slower, small quality cost")
    seq = int(ax.get("sequence_len") or 0)
    if seq > 256:
        new = seq // 2
        while new > 256 and not peak(_variant(config, {"axolotl.sequence_len": new}))[1]:
            new //= 2
        add(f"sequence_len {seq} -> {new}", f'OVERRIDES="axolotl.sequence_len={new}"',
            _variant(config, {"axolotl.sequence_len": new}),
            "rows longer than this are dropped: check make data-check")
    launcher3 = {"launcher.kind": "deepspeed", "launcher.name": "deepspeed-zero3",
                 "launcher.shards_optimizer": True, "launcher.shards_weights": True,
                 "launcher.zero_stage": 3}
    counts = [k for k in (2, 4, 8, 16) if k > (cur.gpus if cur.zero_stage == 3 else 1)]
    for k in counts:
        c = _variant(config, {**launcher3, "launcher.gpus_per_node": k, "launcher.nnodes": 1})
        pk, fits = peak(c, gpu.id, k)
        if fits or k == counts[-1]:
            out.append(Suggestion(f"DeepSpeed ZeRO-3 on {k} x {gpu.id}",
                                  f'OVERRIDES="launcher=deepspeed-zero3" GPUS={k}',
                                  round(pk, 2), fits,
                                  f"{k} GPUs: ${k * gpu.price_per_hour:.2f}/h, "
                                  "inter-GPU traffic each step"))
            break
    bigger = [g for g in gpus.table().values()
              if g.id != "cpu" and g.memory_gb > gpu.memory_gb]
    for g in sorted(bigger, key=lambda g: (g.price_per_hour, g.memory_gb)):
        pk, fits = peak(config, g.id, n)
        if fits:
            out.append(Suggestion(f"a bigger GPU: {g.id} ({g.memory_gb:g} GiB)", f"GPU={g.id}",
                                  round(pk, 2), True,
                                  f"${g.price_per_hour:.2f}/h vs ${gpu.price_per_hour:.2f}/h"))
            break
    return out


