"""The memory / time / cost plan of a recipe on a named GPU, computed before any GPU time is spent.

Everything is arithmetic on the recipe itself: the architecture numbers in ``meta.model``, the
method in ``meta.method.kind`` and ``axolotl.*``, the topology in ``launcher.*`` and the GPU table
(``recipes/hardware/gpus.yaml``). This module assembles the plan from the package's parts:

- ``arch``: the model's shape and LoRA parameter counts;
- ``settings``: what the recipe and the GPU imply (method, precision, batch, loss, sharding);
- ``memory`` and ``activations``: the named memory terms at the peak;
- ``throughput`` and ``tokens``: FLOPs, tokens, hours and cost;
- ``suggest``: changes that make a recipe fit;
- ``table``: ``make plan``'s output.

``make bench-plan`` compares the memory terms with published measurements
(``scripts/bench/calibration.yaml``). Units: GiB (``units``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tunebook import gpus
from tunebook.plan.arch import Arch
from tunebook.plan.batching import BatchingSettings, batch
from tunebook.plan.memory import Term, memory_terms
from tunebook.plan.settings import Settings, settings_from
from tunebook.plan.suggest import Suggestion, suggestions
from tunebook.plan.throughput import TimeCost, time_cost
from tunebook.plan.tokens import recipe_lengths
from tunebook.plan.units import human

MARGIN = 0.10  # keep 10% of the GPU free: the estimate's error band (bench-plan) plus spikes


@dataclass
class Plan:
    recipe: str
    gpu: str
    gpu_name: str
    gpus: int
    capacity_gb: float
    usable_gb: float
    peak_gb: float
    fits: bool
    headroom_gb: float
    terms: list[Term]
    sharding: str
    params_b: float
    trainable_params: int
    suggestions: list[Suggestion] = field(default_factory=list)
    time: TimeCost | None = None
    assumptions: list[str] = field(default_factory=list)
    overrides: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["breakdown"] = d.pop("terms")
        return d



def _gpu(gpu_id: str) -> gpus.GPU:
    return gpus.get(gpu_id)  # (``estimate``'s ``gpus`` argument shadows the module there)


def estimate(config: dict[str, Any], gpu_id: str, gpus: int | None = None, *,
             price: float | None = None,
             mfu: float | None = None, tokens: int | None = None, count: bool = False,
             framework: dict[str, Any] | None = None, suggest: bool = True,
             recipe: str = "") -> Plan:
    """The plan of a composed recipe on ``gpus`` x ``gpu_id`` (``None``: the launcher's
    ``gpus_per_node`` x ``nnodes``).

    ``tokens`` (per epoch) gives time and cost; ``count=True`` counts them from ``data.train``
    with the recipe's tokenizer (cached under ``.cache/plan``)."""
    gpu = _gpu(gpu_id)
    arch = Arch.from_config(config)
    s = settings_from(config, gpu, gpus, framework)
    terms, notes, trainable = memory_terms(arch, s)
    peak = sum(t.gb for t in terms)
    usable = gpu.memory_gb * (1 - MARGIN)
    assumptions = [
        f"GiB = 2^30 bytes; {gpu.name} holds {gpu.memory_gb:g} GiB, of which {1 - MARGIN:.0%} "
        "is planned (the rest absorbs the estimate's error and allocator spikes)",
        f"worst case: every micro-batch is {s.micro_batch} x sequence_len {s.seq_len} tokens "
        "(sample packing fills it; without packing the longest batch pads to it)",
        f"weights/activations in {s.dtype_name} (axolotl.bf16/fp16 on {gpu.id})",
        f"attention: {s.attn}"
        + (" (saves O(seq) per layer, no seq^2 scores)" if s.attn != "eager" else ""),
        "LoRA adapters, their gradients and AdamW states are fp32 (PEFT autocast_adapter_dtype)"
        if s.adapter and s.adapter_bytes == 4 else "",
        "DPO: chosen and rejected run as one batch of 2 x micro_batch_size; the reference model is "
        "the base with adapters disabled (no second copy of the weights)" if s.dpo else "",
        f"time: {s.gpus} GPUs scale linearly (communication not modelled)" if s.gpus > 1 else "",
        "time: LoRA/QLoRA cost 4N FLOPs per token, not 6N: a frozen weight needs the gradient of "
        "its input (2N) but no weight gradient (the other 2N of a full backward)"
        if s.adapter else "time: full fine-tuning costs 6N FLOPs per token (2N forward, 4N "
        "backward)",
        "time: gradient checkpointing recomputes the forward (+2N per token)"
        if s.checkpointing else "",
        f"time: {gpu.bf16_tflops:g} TFLOP/s dense bf16 peak (recipes/hardware/gpus.yaml) x the "
        "assumed utilisation (--mfu); QLoRA defaults lower because every NF4 matmul dequantises "
        "its weight first",
        *notes,
    ]
    ax = config.get("axolotl") or {}
    kernels = [k for k in ("liger_rope", "liger_rms_norm", "liger_glu_activation") if ax.get(k)]
    if kernels:
        assumptions.append(f"{', '.join(kernels)}: Liger's kernels keep less inside a layer than "
                           "eager PyTorch; the plan counts eager PyTorch there (errs high)")
    total_params = arch.total_params
    if abs(total_params / 1e9 - arch.params_b) / arch.params_b > 0.03:
        assumptions.append(f"meta.model.params_b says {arch.params_b}B but the architecture "
                           f"numbers give {human(total_params)}: check recipes/model/")
    plan = Plan(
        recipe=recipe, gpu=gpu.id, gpu_name=gpu.name, gpus=s.gpus,
        capacity_gb=float(gpu.memory_gb), usable_gb=round(usable, 3), peak_gb=round(peak, 3),
        fits=peak <= usable, headroom_gb=round(gpu.memory_gb - peak, 3), terms=terms,
        sharding=_sharding_text(s), params_b=round(total_params / 1e9, 6),
        trainable_params=trainable, assumptions=[a for a in assumptions if a],
    )
    plan.time = _time_cost(config, arch, s, gpu, price, mfu, tokens, count)
    plan.assumptions += _time_assumptions(plan.time)
    if suggest and not plan.fits:
        plan.suggestions = suggestions(config, gpu, s.gpus, framework, estimate)
    return plan


def _time_cost(config: dict[str, Any], arch: Arch, s: Settings, gpu: gpus.GPU,
               price: float | None, mfu: float | None, tokens: int | None,
               count: bool) -> TimeCost:
    """Time and cost from given tokens, or from ``data.train`` batched as Axolotl batches it."""
    ax = config.get("axolotl") or {}
    bs = BatchingSettings.from_axolotl(ax, s.attn, s.gpus)
    if s.dpo:  # a micro-batch holds micro_batch_size pairs: chosen and rejected sequences
        bs = replace(bs, micro_batch=2 * bs.micro_batch, packed=False)
    if tokens is not None or not count:
        return time_cost(arch, s, gpu, price, mfu, tokens=tokens,
                         source="given" if tokens is not None else "not counted")
    lengths, source = recipe_lengths(config)
    if lengths is None:
        return time_cost(arch, s, gpu, price, mfu, source=source)
    train = batch(lengths, bs)
    val = None
    if s.evaluations:
        val_lengths, _ = recipe_lengths(config, split="val")
        if val_lengths:
            eval_packed = ax.get("eval_sample_packing")
            val = batch(val_lengths, replace(
                bs, packed=bs.packed if eval_packed is None else bool(eval_packed) and not s.dpo,
                micro_batch=int(ax.get("eval_batch_size") or 0) * (2 if s.dpo else 1)
                or bs.micro_batch, grad_accum=1))
    return time_cost(arch, s, gpu, price, mfu, train=train, source=source, val=val,
                     max_steps=bs.max_steps)


def _time_assumptions(tc: TimeCost) -> list[str]:
    if tc.tokens_per_epoch is None:
        return []
    out = [f"time: {tc.batching}"]
    if tc.packing_efficiency is not None:
        out.append(
            "time: tokens = each training sequence rendered with the tokenizer's chat template "
            "(the data gate's counter); rows longer than sequence_len are dropped as Axolotl "
            "drops them (excess_length_strategy: truncate cuts them instead); hours follow the "
            "processed tokens, padding included")
    return out


def peak_gb(config: dict[str, Any], gpu_id: str) -> float:
    """Estimated peak GPU memory (GiB) of a composed recipe on one ``gpu_id`` (``make list``)."""
    return estimate(config, gpu_id, suggest=False).peak_gb  # on the launcher's GPU count


def _sharding_text(s: Settings) -> str:
    if s.gpus == 1 and s.zero_stage == 0:
        return "single GPU: nothing sharded"
    what = {0: "replicated on every GPU (DDP)", 1: "optimizer states sharded (ZeRO-1)",
            2: "optimizer states + gradients sharded (ZeRO-2 / FSDP SHARD_GRAD_OP)",
            3: "weights + gradients + optimizer states sharded (ZeRO-3 / FSDP FULL_SHARD)"}
    text = f"{s.launcher} on {s.gpus} GPUs: {what[s.zero_stage]}"
    if s.offload:
        text += ", offloaded to CPU"
    return text + "; activations are per GPU (data parallel)"

