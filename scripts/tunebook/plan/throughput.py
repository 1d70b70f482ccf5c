"""Time and cost of a plan: training FLOPs per token x the tokens the GPU processes (padding
included: ``tunebook.plan.batching``) / the assumed utilisation of the GPU's dense bf16 peak,
hours and dollars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunebook import gpus
from tunebook.errors import UserError
from tunebook.plan.arch import Arch
from tunebook.plan.batching import Batching
from tunebook.plan.settings import Settings
from tunebook.plan.units import human

MFU_DEFAULT = 0.35  # bf16 LoRA / full fine-tunes with FlashAttention reach 0.3-0.45 on A100/H100
MFU_QLORA = 0.25  # every NF4 matmul dequantises its weight first: slower per FLOP


@dataclass
class TimeCost:
    tokens_per_epoch: int | None  # useful tokens: the rows' own, after the length filter
    tokens_source: str
    epochs: float
    flops_per_token: float
    flops_total: float | None
    mfu: float
    hours: float | None
    price_per_hour: float
    cost_usd: float | None
    detail: str
    eval_flops: float = 0.0
    eval_detail: str = ""
    processed_tokens_per_epoch: float | None = None  # padding included: what the GPU runs
    packing_efficiency: float | None = None  # useful / processed; None when not known
    batching: str = ""
    sequences: int | None = None
    dropped: int | None = None
    steps_per_epoch: int | None = None
    tokens_per_step: float | None = None
    total_steps: int | None = None


def flops_per_token(arch: Arch, s: Settings) -> tuple[float, str]:
    """Training FLOPs per token: 2N forward; backward 4N for full fine-tuning (input and weight
    gradients), 2N for LoRA (a frozen weight needs no weight gradient, only the input gradient
    that flows through it; the adapters' own 6 x N_lora is negligible); +2N when checkpointing
    recomputes the forward. Attention (no weights) always costs 3x its forward (+1x recomputed)."""
    N = arch.matmul_params
    attn_fwd = 2 * 2 * arch.layers * arch.q_dim * (s.seq_len / 2)  # QK^T and AV, causal half
    lin_mult = 4 if s.adapter else 6
    mult_attn = 3
    if s.checkpointing:
        lin_mult += 2
        mult_attn += 1
    f = lin_mult * N + mult_attn * attn_fwd
    parts = "2 fwd + 2 input-grad" if s.adapter else "2 fwd + 4 bwd"
    how = (f"{lin_mult} x N ({human(N)} matmul params: {parts}"
           f"{' + 2 recompute' if s.checkpointing else ''}) + attention {mult_attn} x "
           f"{human(attn_fwd)} FLOPs")
    if s.dpo:
        f += 2 * N + attn_fwd  # reference forward, no backward
        how += " + 2N reference forward (DPO)"
    return f, how


def time_cost(arch: Arch, s: Settings, gpu: gpus.GPU, price: float | None, mfu: float | None,
              *, train: Batching | None = None, tokens: int | None = None,
              source: str = "not counted", val: Batching | None = None,
              max_steps: int | None = None) -> TimeCost:
    """Hours and dollars of the run. ``train`` (the data batched as Axolotl batches it) gives
    the processed tokens, padding included; ``tokens`` (per epoch, given) is taken as processed
    with no padding known; with neither, only FLOPs per token are known."""
    f, how = flops_per_token(arch, s)
    rate = gpu.price_per_hour if price is None else price
    if rate < 0:
        raise UserError(f"--price must be >= 0 USD per GPU-hour, got {rate}")
    u = mfu if mfu is not None else (MFU_QLORA if s.quant_bits == 4 else MFU_DEFAULT)
    if not 0 < u <= 1:
        raise UserError(f"--mfu must be in (0, 1], got {u}")
    if train is None and tokens is None:
        return TimeCost(None, source, s.epochs, f, None, u, None, rate, None, how)
    if train is not None:
        useful, processed = train.useful_tokens, train.processed_tokens
        steps = math.ceil(train.steps * s.epochs)
        if max_steps:
            steps = min(steps, max_steps)
        run_processed = train.tokens_per_step * steps
    else:
        useful, processed, steps = int(tokens or 0), float(tokens or 0), None
        run_processed = processed * s.epochs
    total = f * run_processed
    if val is not None and val.processed_tokens and s.evaluations:
        # validation passes over data.val are forward only: 2N per token
        eval_f = (2 * arch.matmul_params) * val.processed_tokens * s.evaluations
        total += eval_f
        eval_how = (f"{s.evaluations:g} validation passes x {val.processed_tokens:,.0f} processed "
                    "tokens x 2N (forward)")
    else:
        eval_f, eval_how = 0.0, "no validation passes counted"
    secs = total / (s.gpus * gpu.bf16_tflops * 1e12 * u)
    hours = secs / 3600
    tc = TimeCost(int(useful), source, s.epochs, f, total, u, hours, rate,
                  hours * s.gpus * rate, how, eval_f, eval_how,
                  processed_tokens_per_epoch=processed, total_steps=steps)
    if train is not None:
        tc.packing_efficiency = train.efficiency
        tc.batching = train.how
        tc.sequences, tc.dropped = train.sequences, train.dropped
        tc.steps_per_epoch, tc.tokens_per_step = train.steps, train.tokens_per_step
    else:
        tc.batching = "tokens given: padding and packing not known (processed = given)"
    return tc
