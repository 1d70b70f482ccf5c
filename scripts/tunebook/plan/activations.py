"""Activation memory per token: what one decoder layer keeps for backward, and what the logits
and the loss hold at their peak, for each loss implementation the planner knows.
"""

from __future__ import annotations

from tunebook import families
from tunebook.errors import UserError
from tunebook.plan.arch import Arch
from tunebook.plan.settings import Settings

# Loss implementations and the peak bytes they hold per (token x vocabulary) element, or per
# token for the fused ones (which never build the logits).
LOSSES = ("hf", "hf_shift", "chunked", "liger", "cce", "dpo")
LIGER_MAX_FUSED = 65536 // 2  # liger_kernel.ops.fused_linear_cross_entropy.MAX_FUSED_SIZE


def layer_activation_bytes(arch: Arch, s: Settings) -> float:
    """Bytes one decoder layer keeps for backward, per token (bf16 activations, 2 B/element).

    Full fine-tuning saves every linear's input for its weight gradient; a frozen base (LoRA)
    saves only what input gradients need, plus each adapter's input (a dropout copy and its
    1-byte mask per target when lora_dropout > 0).

    With PEFT's k-bit preparation left in fp32 (plain PEFT, ``Settings.fp32_layers``) the
    residual stream and the MLP run in fp32 (bitsandbytes returns its output in its input's
    dtype), and every adapter keeps its own autocast bf16 copy of an fp32 input (autocast does
    not cache activations, so q/k/v and gate/up do not share one)."""
    h, ff, qd, kvd = arch.hidden, arch.intermediate, arch.q_dim, arch.kv_dim
    act = s.dtype_bytes
    attn = act * (2 * qd + 2 * kvd)  # FlashAttention saves q, k (after RoPE), v and its output
    if not s.adapter:
        norm = 4 * h + act * h + act * h  # fp32 input, normalised (for weight grad), output
        mlp = 4 * act * ff  # gate out, SiLU out, up out, product (down's input)
        return arch.norms_per_layer * norm + attn + mlp
    norm = 4 * h  # frozen weight: only the fp32 input for the variance gradient
    mlp_b = 4 if s.fp32_layers else act
    mlp = 3 * mlp_b * ff  # gate out (SiLU), SiLU out and up out (product)
    mods = arch.modules()
    # without autocast PEFT casts each adapter's input to the adapter dtype (fp32) itself
    cast = s.adapter_bytes if not s.autocast and s.adapter_bytes > act else act
    extra = 0.0
    shared_inputs: set[str] = set()
    for t in s.targets:
        if t not in mods:
            continue  # lm_head / embed_tokens adapters: their input is counted with the logits
        d_in = mods[t][0]
        key = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in",
               "qkv_proj": "attn_in", "gate_proj": "mlp_in", "up_proj": "mlp_in",
               "gate_up_proj": "mlp_in", "o_proj": "attn_out", "down_proj": "mlp_mid"}[t]
        if s.lora_dropout > 0:
            extra += (cast + 1) * d_in  # dropout output (lora_A's saved input) + bool mask
        elif cast != act or (s.fp32_layers and key != "attn_out"):
            extra += cast * d_in  # its own copy of the input in the adapter's dtype
        elif key not in shared_inputs and key != "attn_out":  # attention output: saved above
            shared_inputs.add(key)
            extra += act * d_in
        extra += cast * s.r  # lora_A output, saved by lora_B
    return arch.norms_per_layer * norm + attn + mlp + extra


def loss_bytes_per_token(arch: Arch, s: Settings, tokens: int) -> tuple[float, str]:
    """Peak bytes per token around the LM head and the loss, and how they arise.

    ``tokens`` (in one micro-batch) matters only for Liger's chunking."""
    V, h, act = arch.vocab, arch.hidden, s.dtype_bytes
    # final logit soft-capping: tanh keeps its output for the backward pass
    cap = 4.0 if families.get(arch.family).final_logit_softcapping else 0.0
    if s.loss == "hf":
        return (12 + cap) * V, (
            "transformers 5 loss: bf16 logits, their fp32 upcast and the fp32 log-softmax in the "
            "forward (10 B/element; accelerate's fp32 copy of the output logits replaces the "
            "freed upcast); in the backward the saved log-softmax, its gradient and the input "
            f"gradient (12 B/element{' + 4 soft-capping' if cap else ''})")
    if s.loss == "hf_shift":
        return (14 + cap) * V, (
            "transformers 4.46-4.48 loss: bf16 logits, their fp32 upcast, a contiguous shifted "
            "fp32 copy and the fp32 log-softmax alive together (14 B/element; removed by "
            "transformers PR #35646)")
    if s.loss == "chunked":
        return (2 + 12 / 8 + cap) * V, ("chunked cross-entropy: bf16 logits + one fp32 chunk "
                                        "of 8 at a time (3.5 B/element)")
    if s.loss == "liger":
        # liger_kernel fused_linear_cross_entropy_forward: chunks of
        # next_pow2(ceil(BT / ceil(V / H))) rows of logits in the input dtype, the input
        # gradient (BT x H) and an fp32 loss per token; the logits never exist whole
        inc = -(-V // h)
        chunk = 1 << max(0, (-(-tokens // inc) - 1).bit_length())
        per = act * h + 4 + act * V * min(chunk, tokens) / max(tokens, 1)
        return per, (f"Liger fused linear cross-entropy: the input gradient ({act} B x hidden), "
                     f"one chunk of {min(chunk, tokens)} rows of logits ({act} B x vocab) and an "
                     "fp32 loss per token; the logits never exist whole")
    if s.loss == "cce":
        return act * h + 8, ("Cut Cross-Entropy: logits computed block by block in on-chip "
                             f"memory; the input gradient ({act} B x hidden) and fp32 "
                             "log-sum-exp and loss per token")
    if s.loss == "dpo":
        return (8 + cap) * V, ("TRL DPO: bf16 policy logits, per-row log-softmax, their "
                               "gradients and the reference forward's logits (8 B/element)")
    raise UserError(f"unknown loss model {s.loss!r}; one of {', '.join(LOSSES)}")
