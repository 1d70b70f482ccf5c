"""Time and cost of a plan: training FLOPs per token, the token count, the assumed utilisation
of the GPU's dense bf16 peak, hours and dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunebook import gpus
from tunebook.errors import UserError
from tunebook.plan.arch import Arch
from tunebook.plan.settings import Settings
from tunebook.plan.tokens import count_recipe_tokens
from tunebook.plan.units import human

MFU_DEFAULT = 0.35  # bf16 LoRA / full fine-tunes with FlashAttention reach 0.3-0.45 on A100/H100
MFU_QLORA = 0.25  # every NF4 matmul dequantises its weight first: slower per FLOP


@dataclass
class TimeCost:
    tokens_per_epoch: int | None
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


def time_cost(arch: Arch, s: Settings, gpu: gpus.GPU, tokens: int | None, price: float | None,
              mfu: float | None, config: dict[str, Any] | None) -> TimeCost:
    f, how = flops_per_token(arch, s)
    rate = gpu.price_per_hour if price is None else price
    if rate < 0:
        raise UserError(f"--price must be >= 0 USD per GPU-hour, got {rate}")
    u = mfu if mfu is not None else (MFU_QLORA if s.quant_bits == 4 else MFU_DEFAULT)
    if not 0 < u <= 1:
        raise UserError(f"--mfu must be in (0, 1], got {u}")
    source = "not counted"
    val_tokens = None
    if tokens is None and config is not None:
        tokens, source = count_recipe_tokens(config)
        if tokens is not None and s.evaluations:
            val_tokens, _ = count_recipe_tokens(config, split="val")
    elif tokens is not None:
        source = "given"
    if tokens is None:
        return TimeCost(None, source, s.epochs, f, None, u, None, rate, None, how)
    total = f * tokens * s.epochs
    if val_tokens:
        # validation passes over data.val are forward only: 2N per token
        eval_f = (2 * arch.matmul_params) * val_tokens * s.evaluations
        total += eval_f
        eval_how = f"{s.evaluations:g} validation passes x {val_tokens:,} tokens x 2N (forward)"
    else:
        eval_f, eval_how = 0.0, "no validation passes counted"
    secs = total / (s.gpus * gpu.bf16_tflops * 1e12 * u)
    hours = secs / 3600
    return TimeCost(int(tokens), source, s.epochs, f, total, u, hours, rate,
                    hours * s.gpus * rate, how, eval_f, eval_how)

