"""The per-GPU memory terms of a plan at its peak: weights, adapters, gradients, optimiser
states, activations and overheads, each a named row with the arithmetic that gives it.

The terms follow what PyTorch actually keeps alive in an Axolotl 0.19 / transformers 5 / PEFT 0.20
/ bitsandbytes run; ``make bench-plan`` compares the result with published measurements
(``scripts/bench/calibration.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunebook.errors import UserError
from tunebook.plan.activations import layer_activation_bytes, loss_bytes_per_token
from tunebook.plan.arch import Arch, lora_params
from tunebook.plan.quant import (
    INT8_BYTES,
    NF4_BYTES,
    NF4_BYTES_NO_DQ,
    dequant_bytes,
    dequant_how,
    kbit_preparation,
)
from tunebook.plan.settings import Settings
from tunebook.plan.units import gb, human

CUDA_CONTEXT_GIB = 0.5  # CUDA context + cuBLAS/FlashAttention workspaces, outside torch's pool
FRAGMENTATION = 0.10  # caching-allocator slack on the transient (activation) part

# Optimiser state bytes per trainable parameter. ``None`` = two states in the optimiser's param
# dtype (torch AdamW keeps exp_avg/exp_avg_sq in the parameter's dtype).
OPTIMIZER_STATE_BYTES: dict[str, float | None] = {
    "adamw_torch": None, "adamw_torch_fused": None, "adamw_hf": None, "adamw": None,
    "adamw_apex_fused": None, "adamw_anyprecision": None, "adam": None, "optimi_adamw": None,
    "adopt_adamw": None, "adamc": None, "flash_adamw": None, "flash_adam": None,
    "adamw_bnb_8bit": 2, "adamw_8bit": 2, "bnb_8bit": 2, "paged_adamw_8bit": 2,
    "ao_adamw_8bit": 2, "ademamix_8bit": 3, "paged_ademamix_8bit": 3, "q_galore_adamw8bit": 2,
    "paged_adamw_32bit": 8, "paged_adamw": 8, "adamw_bnb_32bit": 8, "ademamix": 12,
    "ao_adamw_4bit": 1, "ao_adamw_fp8": 2,
    "lion_8bit": 1, "paged_lion_8bit": 1, "lion_32bit": 4, "paged_lion_32bit": 4, "flash_lion": 4,
    "sgd": 0, "flash_sgd": 0, "flash_sgdw": 0,
    "adafactor": 0.1, "came_pytorch": 0.1,  # factored second moments: a few bytes per row/col
    "muon": 4, "dion": 4, "sinkgd": 0, "polora": 4,
}
STATES_PER_ADAMW = 2


@dataclass
class Term:
    name: str
    gb: float
    detail: str



def optimizer_state_bytes(optimizer: str, param_bytes: int) -> tuple[float, str]:
    """Bytes of optimiser state per trainable parameter, and a note when it was assumed."""
    name = optimizer.lower()
    if name in OPTIMIZER_STATE_BYTES:
        b = OPTIMIZER_STATE_BYTES[name]
        return (STATES_PER_ADAMW * param_bytes if b is None else float(b)), ""
    return STATES_PER_ADAMW * param_bytes, (f"optimizer {optimizer!r} is not in the planner's "
                                            "table: counted as AdamW (2 states)")



def memory_terms(arch: Arch, s: Settings) -> tuple[list[Term], list[str], int]:
    """The per-GPU memory terms at the peak, their notes, and the trainable parameter count."""
    notes: list[str] = []
    n = s.gpus
    w_shard = n if s.zero_stage >= 3 else 1
    g_shard = n if s.zero_stage >= 2 else 1
    o_shard = n if s.zero_stage >= 1 else 1
    terms: list[Term] = []
    P_lin, P_emb, P_oth = arch.linear_params, arch.embedding_params, arch.other_params
    bb = s.dtype_bytes

    # 1. Frozen or trained weights.
    if s.adapter and s.quant_bits == 4:
        qb = NF4_BYTES if s.double_quant else NF4_BYTES_NO_DQ
        eb = s.embedding_bytes
        w = P_lin * qb + (P_emb + P_oth) * eb
        how = (f"{human(P_lin)} linear params x {qb:.3f} B (NF4"
               f"{' + double-quantised constants' if s.double_quant else ' + fp32 absmax'})"
               f" + {human(P_emb + P_oth)} embeddings/LM head/norms x {eb} B "
               f"({'fp32' if eb == 4 else s.dtype_name}, never quantised)")
    elif s.adapter and s.quant_bits == 8:
        eb = s.embedding_bytes
        w = P_lin * INT8_BYTES + (P_emb + P_oth) * eb
        how = (f"{human(P_lin)} linear params x 1 B (LLM.int8) + "
               f"{human(P_emb + P_oth)} embeddings/LM head/norms x {eb} B")
    else:
        w = arch.total_params * bb
        how = f"{human(arch.total_params)} params x {bb} B ({s.dtype_name})"
    if w_shard > 1:
        how += f", sharded / {n} GPUs"
        if s.offload:
            how += ", offloaded to CPU between uses"
    w_gpu = 0.0 if (w_shard > 1 and s.offload) else w / w_shard
    terms.append(Term("weights", gb(w_gpu), how))
    if w_shard > 1:
        layer_w = (arch.layer_linear_params * (NF4_BYTES if s.quant_bits == 4 else bb)
                   + arch.layer_other_params * bb)
        terms.append(Term("gathered layers (ZeRO-3/FSDP)", gb(2 * layer_w),
                          "2 decoder layers' full weights, gathered for compute and prefetch"))

    if s.adapter and s.quant_bits < 16:
        prep, prep_how = kbit_preparation(arch, s)
        terms.append(Term("k-bit preparation: layers left in fp32", gb(prep), prep_how))

    # 2. Trainable parameters, their gradients and optimiser states.
    if s.adapter:
        per = lora_params(arch, s.targets, s.r)
        trainable = sum(per.values())
        if s.r <= 0 or not per:
            raise UserError("axolotl.lora_r and axolotl.lora_target_modules must be set for a "
                            "LoRA/QLoRA recipe")
        pb = s.adapter_bytes
        shapes = ", ".join(f"{t} {arch.modules().get(t, ('?', '?'))[0]}->"
                           f"{arch.modules().get(t, ('?', '?'))[1]}" for t in per)
        terms.append(Term("LoRA adapters", gb(trainable * pb / w_shard),
                          f"{human(trainable)} params = r {s.r} x (d_in + d_out) over "
                          f"{shapes} x {arch.layers} layers, x {pb} B "
                          f"({'fp32: PEFT autocasts adapters' if pb == 4 else 'bf16'})"))
        if pb > bb and s.autocast:
            terms.append(Term(
                "LoRA adapters: autocast copies", gb(trainable * bb / w_shard),
                f"{human(trainable)} x {bb} B: autocast casts each fp32 adapter weight to "
                f"{s.dtype_name} once per forward and keeps the copy until the forward ends"))
        grad_b, opt_param_b, master = pb, pb, 0
    else:
        trainable = arch.total_params
        grad_b = bb
        # DeepSpeed keeps an fp32 master copy and fp32 states (mixed precision, ZeRO paper's
        # K=12); single-GPU/DDP/FSDP Axolotl runs train the bf16 weights in place.
        master = 4 if (s.launcher == "deepspeed" and bb == 2) else 0
        opt_param_b = 4 if master else bb
    terms.append(Term("gradients", gb(trainable * grad_b / g_shard),
                      f"{human(trainable)} trainable x {grad_b} B"
                      + (f", sharded / {n}" if g_shard > 1 else "")))
    state_b, note = optimizer_state_bytes(s.optimizer, opt_param_b)
    if note:
        notes.append(note)
    opt_total = trainable * (state_b + master)
    how = (f"{s.optimizer}: {state_b:g} B/param of state"
           + (f" + {master} B fp32 master weights" if master else ""))
    if "paged" in s.optimizer:
        how += " (paged: can spill to CPU under pressure; counted on GPU)"
    if o_shard > 1:
        how += f", sharded / {n}"
    if s.offload and s.zero_stage >= 1:
        how += ", offloaded to CPU"
        opt_gpu = 0.0
    else:
        opt_gpu = opt_total / o_shard
    terms.append(Term("optimizer states", gb(opt_gpu), how))
    if n > 1 and s.zero_stage == 0:
        terms.append(Term("DDP gradient buckets", gb(trainable * grad_b),
                          "DDP all-reduces through a flat copy of the gradients"))

    # 3. Activations: saved layer inputs (checkpointing) or every layer's activations, then the
    #    larger of two transient phases: the logits and loss, or one layer's recompute/backward
    #    (with a quantised base's dequantised weight).
    seqs = s.micro_batch * (2 if s.dpo else 1)  # DPO concatenates chosen + rejected
    T = seqs * s.seq_len
    a_layer = layer_activation_bytes(arch, s)
    h = arch.hidden
    scores = 0.0
    if s.attn == "eager":
        # softmax in fp32 + its bf16 copy + the pre-softmax scores, per head, s x s
        scores = (4 + 2 * bb) * arch.heads * s.seq_len**2 * seqs
        notes.append("eager attention materialises heads x seq^2 scores per layer "
                     f"({gb(scores):.2f} GiB per layer here)")
    # gradient tensors alive inside a layer (fp32 when PEFT's preparation left the stream fp32)
    grads_ws = (4 if s.fp32_layers else bb) * 2 * (h + arch.intermediate) * T
    dequant = dequant_bytes(arch, s, T)
    lb, lhow = loss_bytes_per_token(arch, s, T)
    logits = lb * T
    if s.checkpointing:
        # fp32 embeddings make the residual stream fp32 (fp32 + bf16 promotes): 4 B checkpoints
        rb = 4 if s.fp32_layers else bb
        saved = rb * h * arch.layers * T
        terms.append(Term("activations: checkpoints", gb(saved),
                          f"{rb} B x hidden {h} x {arch.layers} layers x {T} tokens "
                          f"({seqs} seq x {s.seq_len}{', chosen+rejected' if s.dpo else ''})"))
        layer = a_layer * T + scores + grads_ws
        layer_how = (f"one layer recomputed in backward {gb(layer):.2f} GiB = "
                     f"{a_layer / h:.1f}h B/token + gradients"
                     + (f" + eager scores {gb(scores):.2f}" if scores else ""))
    else:
        saved = a_layer * T * arch.layers + scores * arch.layers
        terms.append(Term("activations: all layers", gb(saved),
                          f"{a_layer / h:.1f}h B/token x {T} tokens x {arch.layers} layers "
                          "(no gradient checkpointing)"))
        layer = grads_ws
        layer_how = f"a layer's backward {gb(layer):.2f} GiB of gradients"
    layer_phase = layer + dequant
    logits_how = f"logits & loss {gb(logits):.2f} GiB = {lb:.0f} B/token x {T} tokens"
    if logits >= layer_phase:
        terms.append(Term("activations: peak transient (logits & loss)", gb(logits),
                          f"{logits_how} (above {layer_how}"
                          + (f" + dequantised weight {gb(dequant):.2f}" if dequant else "")
                          + ")"))
    else:
        terms.append(Term("activations: peak transient (one layer)", gb(layer),
                          f"{layer_how} (above {logits_how})"))
    if s.adapter and s.quant_bits < 16:
        alive = layer_phase > logits
        terms.append(Term("bitsandbytes: dequantised weight", gb(dequant if alive else 0.0),
                          dequant_how(arch, s, dequant, alive)))
    dynamic = saved + max(logits, layer_phase)
    notes.append(lhow)

    # 4. Overheads.
    context = 0.0 if s.device == "cpu" else CUDA_CONTEXT_GIB
    terms.append(Term("CUDA context + allocator", context + gb(dynamic) * FRAGMENTATION,
                      f"{context} GiB context/workspaces + {FRAGMENTATION:.0%} "
                      "caching-allocator slack on activations"))
    return terms, notes, trainable

