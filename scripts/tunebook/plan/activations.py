"""Activation memory per token: what one decoder layer keeps for backward, and what the logits
and the loss hold at their peak, for each loss implementation the planner knows.
"""

from __future__ import annotations

from tunebook import families
from tunebook.errors import UserError
from tunebook.plan.arch import Arch
from tunebook.plan.settings import Settings


def layer_activation_bytes(arch: Arch, s: Settings) -> float:
    """Bytes one decoder layer keeps for backward, per token (bf16 activations, 2 B/element).

    Full fine-tuning saves every linear's input for its weight gradient; a frozen base (LoRA)
    saves only what input gradients need, plus each adapter's input (a dropout copy and its
    1-byte mask per target when lora_dropout > 0)."""
    h, ff, qd, kvd = arch.hidden, arch.intermediate, arch.q_dim, arch.kv_dim
    act = s.dtype_bytes
    attn = act * (2 * qd + 2 * kvd)  # FlashAttention saves q, k (after RoPE), v and its output
    if not s.adapter:
        norm = 4 * h + act * h + act * h  # fp32 input, normalised (for weight grad), output
        mlp = 4 * act * ff  # gate out, SiLU out, up out, product (down's input)
        return arch.norms_per_layer * norm + attn + mlp
    norm = 4 * h  # frozen weight: only the fp32 input for the variance gradient
    mlp = 3 * act * ff  # gate out (SiLU), SiLU out and up out (product)
    mods = arch.modules()
    extra = 0.0
    shared_inputs: set[str] = set()
    for t in s.targets:
        if t not in mods:
            continue  # lm_head / embed_tokens adapters: their input is counted with the logits
        d_in = mods[t][0]
        if s.lora_dropout > 0:
            extra += (act + 1) * d_in  # dropout output (lora_A's saved input) + bool mask
        else:
            key = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in",
                   "qkv_proj": "attn_in", "gate_proj": "mlp_in", "up_proj": "mlp_in",
                   "gate_up_proj": "mlp_in", "o_proj": "attn_out", "down_proj": "mlp_mid"}[t]
            if key not in shared_inputs and key != "attn_out":  # attention output: saved above
                shared_inputs.add(key)
                extra += act * d_in
        extra += act * s.r  # lora_A output, saved by lora_B
    return arch.norms_per_layer * norm + attn + mlp + extra


def logits_bytes_per_element(arch: Arch, s: Settings) -> tuple[float, str]:
    """Peak bytes per (token x vocabulary) element around the loss."""
    # final logit soft-capping: tanh keeps its output for the backward pass
    cap = 4.0 if families.get(arch.family).final_logit_softcapping else 0.0
    if s.loss == "hf":
        return 12 + cap, ("transformers 5 loss: fp32 upcast of the logits, log-softmax saved in "
                          "fp32, its gradient and the input gradient (12 B/element)")
    if s.loss == "chunked":
        return 2 + 12 / 8 + cap, ("chunked cross-entropy: bf16 logits + one fp32 chunk of 8 "
                                  "at a time (3.5 B/element)")
    if s.loss == "fused":
        return 0.5, "fused linear cross-entropy (CCE / Liger): logits never materialised"
    if s.loss == "dpo":
        return 8 + cap, ("TRL DPO: bf16 policy logits, per-row log-softmax, their gradients and "
                         "the reference forward's logits (8 B/element)")
    raise UserError(f"unknown loss model {s.loss!r}")

