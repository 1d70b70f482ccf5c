"""The memory / time / cost plan of a recipe on a named GPU, computed before any GPU time is spent.

Everything is arithmetic on the recipe itself: the architecture numbers in ``meta.model``, the
method in ``meta.method.kind`` and ``axolotl.*``, the topology in ``launcher.*`` and the GPU table
(``recipes/hardware/gpus.yaml``). The terms follow what PyTorch actually keeps alive in an
Axolotl 0.19 / transformers 5 / PEFT 0.20 / bitsandbytes run (see ``memory_terms`` below);
``make bench-plan`` compares the result with published measurements
(``scripts/bench/calibration.yaml``, each point with its source).

Units: GiB (2**30 bytes) throughout; NVIDIA's "24 GB" cards hold 24 GiB, so the GPU table's
``memory_gb`` is read as GiB. JSON keys keep the ``_gb`` suffix the rest of tunebook uses.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunebook import families, gpus, paths
from tunebook.errors import UserError, did_you_mean

GIB = 2**30
MARGIN = 0.10  # keep 10% of the GPU free: the estimate's error band (bench-plan) plus spikes
CUDA_CONTEXT_GIB = 0.5  # CUDA context + cuBLAS/FlashAttention workspaces, outside torch's pool
FRAGMENTATION = 0.10  # caching-allocator slack on the transient (activation) part
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 per 256 blocks
NF4_BYTES_NO_DQ = 0.5 + 4 / 64  # fp32 absmax per 64-weight block
INT8_BYTES = 1.0  # LLM.int8 weights; the per-row fp32 scales are negligible
MFU_DEFAULT = 0.35  # bf16 LoRA / full fine-tunes with FlashAttention reach 0.3-0.45 on A100/H100
MFU_QLORA = 0.25  # every NF4 matmul dequantises its weight first: slower per FLOP

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


# ----------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Arch:
    """The numbers of ``meta.model`` the planner needs (``tunebook.schema.ModelInfo``)."""

    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    params_b: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Arch:
        m = _need(config, "meta.model")
        try:
            return cls(
                family=str(m["family"]), layers=int(m["layers"]), hidden=int(m["hidden_size"]),
                heads=int(m["heads"]), kv_heads=int(m["kv_heads"]),
                head_dim=int(m.get("head_dim") or int(m["hidden_size"]) // int(m["heads"])),
                intermediate=int(m["intermediate_size"]), vocab=int(m["vocab_size"]),
                tied=bool(m["tie_embeddings"]), params_b=float(m["params_b"]),
            )
        except KeyError as e:
            raise UserError(f"meta.model.{e.args[0]} is missing; the planner needs the "
                            "architecture numbers of recipes/model/*.yaml") from None

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def modules(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of every linear layer in one decoder block, by its PEFT target name.

        Phi-3 fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``; the others keep
        separate projections with grouped-query k/v of ``kv_heads * head_dim`` outputs."""
        h, ff = self.hidden, self.intermediate
        if families.get(self.family).fused_projections:
            return {"qkv_proj": (h, self.q_dim + 2 * self.kv_dim), "o_proj": (self.q_dim, h),
                    "gate_up_proj": (h, 2 * ff), "down_proj": (ff, h)}
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, ff), "up_proj": (h, ff),
                "down_proj": (ff, h)}

    @property
    def norms_per_layer(self) -> int:
        return families.get(self.family).norms_per_layer

    @property
    def layer_linear_params(self) -> int:
        return sum(i * o for i, o in self.modules().values())

    @property
    def layer_other_params(self) -> int:
        bias = self.q_dim + 2 * self.kv_dim if families.get(self.family).qkv_bias else 0
        return self.norms_per_layer * self.hidden + bias

    @property
    def linear_params(self) -> int:
        return self.layers * self.layer_linear_params

    @property
    def embedding_params(self) -> int:
        """Input embedding plus LM head (one matrix when tied): never quantised by bnb."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def other_params(self) -> int:
        return self.layers * self.layer_other_params + self.hidden  # + final norm

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.other_params

    @property
    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token: linears + LM head (not the lookup)."""
        return self.linear_params + self.vocab * self.hidden


def lora_params(arch: Arch, targets: Iterable[str], r: int) -> dict[str, int]:
    """Trainable LoRA parameters per target module (all layers): r * (d_in + d_out) each."""
    mods = arch.modules()
    out: dict[str, int] = {}
    for t in targets:
        if t in mods:
            d_in, d_out = mods[t]
            out[t] = arch.layers * r * (d_in + d_out)
        elif t == "lm_head":
            out[t] = r * (arch.hidden + arch.vocab)
        elif t == "embed_tokens":
            out[t] = r * (arch.vocab + arch.hidden)
        else:
            known = [*mods, "lm_head", "embed_tokens"]
            raise UserError(
                f"axolotl.lora_target_modules: {t!r} is not a linear layer of a {arch.family} "
                f"model{did_you_mean(t, known)}; its modules are {', '.join(known)}"
            )
    return out


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """What the planner reads from ``meta.method``, ``axolotl`` and ``launcher``."""

    kind: str  # lora | qlora | full | dpo
    adapter: bool  # LoRA adapters on a frozen base
    quant_bits: int  # 16 (bf16/fp16/fp32 base), 8 or 4
    double_quant: bool
    r: int
    targets: tuple[str, ...]
    lora_dropout: float
    optimizer: str
    micro_batch: int
    seq_len: int
    grad_accum: int
    epochs: float
    checkpointing: bool
    dtype_bytes: int  # compute / weight dtype: 2 (bf16, fp16) or 4 (fp32)
    dtype_name: str
    attn: str  # flash_attention_2 | sdpa | eager
    loss: str  # hf | chunked | fused | dpo
    dpo: bool
    launcher: str
    gpus: int
    zero_stage: int  # 0 replicated; 1 optimiser; 2 + gradients; 3 + weights sharded
    offload: bool
    adapter_bytes: int  # PEFT keeps adapters in fp32 (autocast_adapter_dtype)
    embedding_bytes: int  # Axolotl casts embeddings/LM head of a quantised base back to bf16
    evaluations: float  # validation passes over data.val in the whole run
    device: str  # the GPU id; "cpu" has no CUDA context


def settings_from(config: dict[str, Any], gpu: gpus.GPU, gpus_override: int | None = None,
                  framework: dict[str, Any] | None = None) -> Settings:
    """Resolve the recipe's training settings; ``framework`` holds knobs of non-Axolotl stacks
    (used only by the calibration bench: ``adapter_bytes``, ``embedding_bytes``, ``loss``)."""
    ax = config.get("axolotl") or {}
    meta = config.get("meta") or {}
    launcher = config.get("launcher") or {}
    fw = framework or {}
    kind = str(_need(config, "meta.method.kind"))
    if kind not in {"lora", "qlora", "full", "dpo"}:
        raise UserError(f"meta.method.kind: {kind!r} is not one of lora, qlora, full, dpo")
    adapter = kind in {"lora", "qlora"} or (kind == "dpo" and bool(ax.get("adapter")))
    bits = 4 if ax.get("load_in_4bit") else 8 if ax.get("load_in_8bit") else 16
    if not adapter:
        bits = 16
    if ax.get("lora_target_linear") and not ax.get("lora_target_modules"):
        targets = tuple(Arch.from_config(config).modules())
    else:
        targets = tuple(ax.get("lora_target_modules")
                        or (meta.get("model") or {}).get("lora_target_modules") or ())
    bf16 = ax.get("bf16")
    if bf16 == "auto":
        bf16 = gpu.bf16
    if bf16 or ax.get("bfloat16"):
        dtype_bytes, dtype_name = 2, "bf16"
    elif ax.get("fp16") or ax.get("float16"):
        dtype_bytes, dtype_name = 2, "fp16"
    else:
        dtype_bytes, dtype_name = 4, "fp32"
    attn = str(ax.get("attn_implementation") or
               ("flash_attention_2" if ax.get("flash_attention") else
                "sdpa" if ax.get("sdp_attention") else "eager"))
    if ax.get("rl") == "dpo" or kind == "dpo":
        loss = "dpo"
    elif ax.get("cut_cross_entropy") or ax.get("liger_fused_linear_cross_entropy"):
        loss = "fused"
    elif ax.get("chunked_cross_entropy"):
        loss = "chunked"
    else:
        loss = "hf"
    loss = str(fw.get("loss", loss))
    lkind = str(launcher.get("kind", "single"))
    n = gpus_override or int(launcher.get("gpus_per_node", 1)) * int(launcher.get("nnodes", 1))
    if n < 1:
        raise UserError(f"--gpus must be at least 1, got {n}")
    stage = launcher.get("zero_stage")
    if stage is None:
        if lkind in {"deepspeed", "fsdp"}:
            stage = (3 if launcher.get("shards_weights") else
                     2 if launcher.get("shards_optimizer") else 0 if lkind == "deepspeed" else 3)
        else:
            stage = 0
    return Settings(
        kind=kind, adapter=adapter, quant_bits=bits,
        double_quant=bool((ax.get("bnb_config_kwargs") or {}).get("bnb_4bit_use_double_quant",
                                                                    True)),
        r=int(ax.get("lora_r") or 0), targets=targets,
        lora_dropout=float(ax.get("lora_dropout") or 0.0),
        optimizer=str(ax.get("optimizer") or "adamw_torch_fused"),
        micro_batch=int(ax.get("micro_batch_size") or 1),
        seq_len=int(_need(config, "axolotl.sequence_len")),
        grad_accum=int(ax.get("gradient_accumulation_steps") or 1),
        epochs=float(ax.get("num_epochs") or 1),
        # FSDP2 recipes checkpoint through fsdp_config.activation_checkpointing instead
        checkpointing=bool(ax.get("gradient_checkpointing")
                           or (ax.get("fsdp_config") or {}).get("activation_checkpointing")),
        dtype_bytes=dtype_bytes, dtype_name=dtype_name, attn=attn, loss=loss,
        dpo=loss == "dpo" or kind == "dpo", launcher=lkind, gpus=n, zero_stage=int(stage),
        offload=bool(launcher.get("offload")),
        adapter_bytes=int(fw.get("adapter_bytes", 4)),
        embedding_bytes=int(fw.get("embedding_bytes", dtype_bytes)),
        evaluations=_evaluations(ax), device=gpu.id,
    )


def _evaluations(ax: dict[str, Any]) -> float:
    """Validation passes in the run: evals_per_epoch x epochs, or 1/eval_steps when eval_steps
    is a fraction of the run (HF semantics); integer eval_steps need the step count: not counted."""
    epochs = float(ax.get("num_epochs") or 1)
    if ax.get("evals_per_epoch"):
        return float(ax["evals_per_epoch"]) * epochs
    steps = ax.get("eval_steps")
    if isinstance(steps, float) and 0 < steps < 1:
        return round(1 / steps)
    return 0.0


# ----------------------------------------------------------------------------- memory terms
@dataclass
class Term:
    name: str
    gb: float
    detail: str


@dataclass
class Suggestion:
    change: str
    overrides: str
    peak_gb: float
    fits: bool
    cost: str


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


def _gb(nbytes: float) -> float:
    return nbytes / GIB


def _n(count: float) -> str:
    """A parameter or FLOP count, readable at any size: 7.24B, 83.9M, 672k."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= div:
            return f"{count / div:.3g}{unit}"
    return f"{count:.3g}"


def optimizer_state_bytes(optimizer: str, param_bytes: int) -> tuple[float, str]:
    """Bytes of optimiser state per trainable parameter, and a note when it was assumed."""
    name = optimizer.lower()
    if name in OPTIMIZER_STATE_BYTES:
        b = OPTIMIZER_STATE_BYTES[name]
        return (STATES_PER_ADAMW * param_bytes if b is None else float(b)), ""
    return STATES_PER_ADAMW * param_bytes, (f"optimizer {optimizer!r} is not in the planner's "
                                            "table: counted as AdamW (2 states)")


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
        how = (f"{_n(P_lin)} linear params x {qb:.3f} B (NF4"
               f"{' + double-quantised constants' if s.double_quant else ' + fp32 absmax'})"
               f" + {_n(P_emb + P_oth)} embeddings/LM head/norms x {eb} B "
               f"({'fp32' if eb == 4 else s.dtype_name}, never quantised)")
    elif s.adapter and s.quant_bits == 8:
        eb = s.embedding_bytes
        w = P_lin * INT8_BYTES + (P_emb + P_oth) * eb
        how = (f"{_n(P_lin)} linear params x 1 B (LLM.int8) + "
               f"{_n(P_emb + P_oth)} embeddings/LM head/norms x {eb} B")
    else:
        w = arch.total_params * bb
        how = f"{_n(arch.total_params)} params x {bb} B ({s.dtype_name})"
    if w_shard > 1:
        how += f", sharded / {n} GPUs"
        if s.offload:
            how += ", offloaded to CPU between uses"
    w_gpu = 0.0 if (w_shard > 1 and s.offload) else w / w_shard
    fp32_embeddings = s.adapter and s.quant_bits < 16 and s.embedding_bytes == 4 and bb == 2
    if fp32_embeddings:
        # Plain PEFT (no Axolotl cast-back) leaves the LM head in fp32: autocast keeps a bf16
        # copy of it from forward to backward.
        head_copy = arch.vocab * arch.hidden * bb
        w_gpu += head_copy
        how += f"; + bf16 autocast copy of the fp32 LM head ({_gb(head_copy):.2f})"
    terms.append(Term("weights", _gb(w_gpu), how))
    if w_shard > 1:
        layer_w = (arch.layer_linear_params * (NF4_BYTES if s.quant_bits == 4 else bb)
                   + arch.layer_other_params * bb)
        terms.append(Term("gathered layers (ZeRO-3/FSDP)", _gb(2 * layer_w),
                          "2 decoder layers' full weights, gathered for compute and prefetch"))

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
        terms.append(Term("LoRA adapters", _gb(trainable * pb / w_shard),
                          f"{_n(trainable)} params = r {s.r} x (d_in + d_out) over "
                          f"{shapes} x {arch.layers} layers, x {pb} B "
                          f"({'fp32: PEFT autocasts adapters' if pb == 4 else 'bf16'})"))
        grad_b, opt_param_b, master = pb, pb, 0
    else:
        trainable = arch.total_params
        grad_b = bb
        # DeepSpeed keeps an fp32 master copy and fp32 states (mixed precision, ZeRO paper's
        # K=12); single-GPU/DDP/FSDP Axolotl runs train the bf16 weights in place.
        master = 4 if (s.launcher == "deepspeed" and bb == 2) else 0
        opt_param_b = 4 if master else bb
    terms.append(Term("gradients", _gb(trainable * grad_b / g_shard),
                      f"{_n(trainable)} trainable x {grad_b} B"
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
    terms.append(Term("optimizer states", _gb(opt_gpu), how))
    if n > 1 and s.zero_stage == 0:
        terms.append(Term("DDP gradient buckets", _gb(trainable * grad_b),
                          "DDP all-reduces through a flat copy of the gradients"))

    # 3. Activations: saved layer inputs (checkpointing) or every layer's activations.
    seqs = s.micro_batch * (2 if s.dpo else 1)  # DPO concatenates chosen + rejected
    T = seqs * s.seq_len
    a_layer = layer_activation_bytes(arch, s)
    h = arch.hidden
    scores = 0.0
    if s.attn == "eager":
        # softmax in fp32 + its bf16 copy + the pre-softmax scores, per head, s x s
        scores = (4 + 2 * bb) * arch.heads * s.seq_len**2 * seqs
        notes.append("eager attention materialises heads x seq^2 scores per layer "
                     f"({_gb(scores):.2f} GiB per layer here)")
    grads_ws = bb * 2 * (h + arch.intermediate) * T  # gradient tensors alive inside a layer
    dequant = (max(i * o for i, o in arch.modules().values()) * bb
               if s.adapter and s.quant_bits in (4, 8) else 0.0)
    layer_peak = a_layer * T + scores + grads_ws + dequant
    lb, lhow = logits_bytes_per_element(arch, s)
    logits = lb * T * arch.vocab
    if s.checkpointing:
        # fp32 embeddings make the residual stream fp32 (fp32 + bf16 promotes): 4 B checkpoints
        rb = 4 if fp32_embeddings else bb
        saved = rb * h * arch.layers * T
        terms.append(Term("activations: checkpoints", _gb(saved),
                          f"{rb} B x hidden {h} x {arch.layers} layers x {T} tokens "
                          f"({seqs} seq x {s.seq_len}{', chosen+rejected' if s.dpo else ''})"))
        transient = max(layer_peak, logits)
        which = "logits & loss" if logits >= layer_peak else "one recomputed layer"
        terms.append(Term(
            f"activations: peak transient ({which})", _gb(transient),
            f"max(logits {_gb(logits):.2f} GiB = {lb:g} B x {T} tokens x vocab {arch.vocab}; "
            f"one layer recomputed in backward {_gb(layer_peak):.2f} GiB = "
            f"{a_layer / h:.1f}h B/token + gradients"
            + (f" + eager scores {_gb(scores):.2f}" if scores else "")
            + (f" + dequantised weight {_gb(dequant):.2f}" if dequant else "") + ")"))
        dynamic = saved + transient
    else:
        saved = a_layer * T * arch.layers + scores * arch.layers
        terms.append(Term("activations: all layers", _gb(saved),
                          f"{a_layer / h:.1f}h B/token x {T} tokens x {arch.layers} layers "
                          "(no gradient checkpointing)"))
        transient = max(logits, grads_ws + dequant)
        terms.append(Term("activations: logits & loss", _gb(transient),
                          f"{lb:g} B x {T} tokens x vocab {arch.vocab}"))
        dynamic = saved + transient
    notes.append(lhow)

    # 4. Overheads.
    context = 0.0 if s.device == "cpu" else CUDA_CONTEXT_GIB
    terms.append(Term("CUDA context + allocator", context + _gb(dynamic) * FRAGMENTATION,
                      f"{context} GiB context/workspaces + {FRAGMENTATION:.0%} "
                      "caching-allocator slack on activations"))
    return terms, notes, trainable


def _need(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"{dotted} is missing from the recipe; the planner needs it")
        node = node[part]
    return node


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
        "time: tokens = each training conversation rendered with the tokenizer's chat template, "
        "capped at sequence_len, x num_epochs; padding is not counted",
        *notes,
    ]
    total_params = arch.total_params
    if abs(total_params / 1e9 - arch.params_b) / arch.params_b > 0.03:
        assumptions.append(f"meta.model.params_b says {arch.params_b}B but the architecture "
                           f"numbers give {_n(total_params)}: check recipes/model/")
    plan = Plan(
        recipe=recipe, gpu=gpu.id, gpu_name=gpu.name, gpus=s.gpus,
        capacity_gb=float(gpu.memory_gb), usable_gb=round(usable, 3), peak_gb=round(peak, 3),
        fits=peak <= usable, headroom_gb=round(gpu.memory_gb - peak, 3), terms=terms,
        sharding=_sharding_text(s), params_b=round(total_params / 1e9, 6),
        trainable_params=trainable, assumptions=[a for a in assumptions if a],
    )
    plan.time = time_cost(arch, s, gpu, tokens, price, mfu, config if count else None)
    if suggest and not plan.fits:
        plan.suggestions = suggestions(config, gpu, s.gpus, framework)
    return plan


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


# ----------------------------------------------------------------------------- suggestions
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
                framework: dict[str, Any] | None = None) -> list[Suggestion]:
    """Concrete changes that make the recipe fit, cheapest first, each with its new estimate."""
    ax = config.get("axolotl") or {}
    kind = config["meta"]["method"]["kind"]
    cur = settings_from(config, gpu, n, framework)
    out: list[Suggestion] = []

    def peak(c: dict[str, Any], g: str = gpu.id, gp: int = n) -> tuple[float, bool]:
        p = estimate(c, g, gp, framework=framework, suggest=False)
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


# ----------------------------------------------------------------------------- time and cost
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
    how = (f"{lin_mult} x N ({_n(N)} matmul params: {parts}"
           f"{' + 2 recompute' if s.checkpointing else ''}) + attention {mult_attn} x "
           f"{_n(attn_fwd)} FLOPs")
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


def _row_texts(row: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The conversations one JSONL row trains on: one for chat rows, two for preference pairs."""
    if "messages" in row:
        return [row["messages"]]
    if "chosen" in row and "rejected" in row:
        prompt = row.get("prompt") or []
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        convs = []
        for key in ("chosen", "rejected"):
            ans = row[key]
            ans = ans if isinstance(ans, dict) else {"role": "assistant", "content": str(ans)}
            convs.append([*prompt, ans])
        return convs
    if "text" in row:
        return [[{"role": "user", "content": str(row["text"])}]]
    raise UserError("a data.train row has none of messages / prompt+chosen+rejected / text")


def count_tokens(path: Path, tokenizer: Any, seq_len: int) -> int:
    """Tokens the trainer sees in one epoch: each conversation rendered with the tokenizer's chat
    template (or its contents joined, when it has none), capped at ``seq_len``."""
    total = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{paths.rel(path)}:{lineno}: not JSON ({e.msg}); "
                                "run make data-check") from None
            for conv in _row_texts(row):
                n = _conv_tokens(conv, tokenizer)
                total += min(n, seq_len)
    return total


def _conv_tokens(conv: list[dict[str, str]], tokenizer: Any) -> int:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(conv, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)
    return sum(len(tokenizer.encode(m.get("content", ""), add_special_tokens=False))
               for m in conv) + 2 * len(conv)


def _tokenizer_key(tokenizer: Any) -> str:
    parts = [str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
             str(len(tokenizer) if hasattr(tokenizer, "__len__") else ""),
             str(getattr(tokenizer, "chat_template", "") or "")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cached_token_count(path: Path, tokenizer: Any, seq_len: int,
                       cache_dir: Path | None = None) -> tuple[int, bool]:
    """``count_tokens`` cached under ``.cache/plan/`` by data hash + tokenizer + seq_len.

    Returns (tokens, hit)."""
    data_hash = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    key = f"tokens-{data_hash}-{_tokenizer_key(tokenizer)}-{seq_len}.json"
    d = cache_dir or (paths.CACHE / "plan")
    f = d / key
    if f.is_file():
        try:
            return int(json.loads(f.read_text())["tokens"]), True
        except (ValueError, KeyError):
            pass
    n = count_tokens(path, tokenizer, seq_len)
    d.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tokens": n, "data": paths.rel(path)}))
    tmp.replace(f)
    return n, False


def count_recipe_tokens(config: dict[str, Any], tokenizer: Any = None,
                        split: str = "train") -> tuple[int | None, str]:
    """Tokens per epoch of the recipe's ``data.<split>``, with the recipe's tokenizer."""
    train = (config.get("data") or {}).get(split)
    if not train:
        return None, f"data.{split} is not set"
    path = Path(train) if Path(train).is_absolute() else paths.ROOT / train
    if not path.is_file():
        return None, f"{train} does not exist yet"
    if tokenizer is None:
        try:
            from tunebook.twins import tokenizer_for
            tokenizer = tokenizer_for(config)
        except Exception as e:  # noqa: BLE001 - a missing tokenizer must not stop the memory plan
            return None, f"no tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    seq = int((config.get("axolotl") or {}).get("sequence_len") or 10**9)
    n, hit = cached_token_count(path, tokenizer, seq)
    who = str(getattr(tokenizer, "name_or_path", "tokenizer"))
    twin = " (a tiny twin's tokenizer: counts are approximate)" if "twins" in who else ""
    return n, f"{train} with {paths.rel(who) if '/' in who else who}{twin}" + (
        ", cached" if hit else "")
