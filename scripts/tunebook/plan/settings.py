"""What the recipe and the GPU imply for the plan: method, precision, batch, attention, loss,
topology and sharding, read from ``meta.method``, ``axolotl`` and ``launcher``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunebook import gpus, schema
from tunebook.errors import UserError
from tunebook.plan.arch import Arch


def need(config: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in the composed recipe, or a message naming the missing key."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"{dotted} is missing from the recipe; the planner needs it")
        node = node[part]
    return node


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
    loss: str  # hf | hf_shift | chunked | liger | cce | dpo (see activations.LOSSES)
    dpo: bool
    launcher: str
    gpus: int
    zero_stage: int  # 0 replicated; 1 optimiser; 2 + gradients; 3 + weights sharded
    offload: bool
    adapter_bytes: int  # PEFT keeps adapters in fp32 (autocast_adapter_dtype)
    embedding_bytes: int  # Axolotl casts embeddings/LM head of a quantised base back to bf16
    evaluations: float  # validation passes over data.val in the whole run
    device: str  # the GPU id; "cpu" has no CUDA context
    autocast: bool = True  # HF Trainer + accelerate run a 16-bit model's forward under autocast

    @property
    def fp32_layers(self) -> bool:
        """PEFT's k-bit preparation left embeddings, LM head and norms in fp32 (plain PEFT;
        Axolotl casts them back to the compute dtype), so the residual stream is fp32."""
        return (self.adapter and self.quant_bits < 16 and self.embedding_bytes == 4
                and self.dtype_bytes == 2)


def deepspeed_stage(ref: Any) -> int | None:
    """``zero_optimization.stage`` of the DeepSpeed config ``axolotl.deepspeed`` gives: the
    stage DeepSpeed will run. The launcher's ``shards_*`` flags only describe it, and cannot
    tell ZeRO-1 (optimizer states sharded) from ZeRO-2 (gradients too). None without one."""
    config, problem = schema.deepspeed_config(ref)
    if problem:
        raise UserError(f"axolotl.deepspeed: {problem}")
    return None if config is None else schema.zero_stage(config)


def settings_from(config: dict[str, Any], gpu: gpus.GPU, gpus_override: int | None = None,
                  framework: dict[str, Any] | None = None) -> Settings:
    """Resolve the recipe's training settings; ``framework`` holds knobs of non-Axolotl stacks
    (used only by the calibration bench: ``adapter_bytes``, ``embedding_bytes``, ``loss``,
    ``autocast``)."""
    ax = config.get("axolotl") or {}
    meta = config.get("meta") or {}
    launcher = config.get("launcher") or {}
    fw = framework or {}
    kind = str(need(config, "meta.method.kind"))
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
        loss = "cce" if ax.get("cut_cross_entropy") else "liger"
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
    if stage is None and lkind == "deepspeed":
        stage = deepspeed_stage(ax.get("deepspeed"))
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
        seq_len=int(need(config, "axolotl.sequence_len")),
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
        autocast=bool(fw.get("autocast", dtype_bytes == 2)),
        evaluations=evaluations(ax), device=gpu.id,
    )


def evaluations(ax: dict[str, Any]) -> float:
    """Validation passes in the run: evals_per_epoch x epochs, or 1/eval_steps when eval_steps
    is a fraction of the run (HF semantics); integer eval_steps need the step count: not counted."""
    epochs = float(ax.get("num_epochs") or 1)
    if ax.get("evals_per_epoch"):
        return float(ax["evals_per_epoch"]) * epochs
    steps = ax.get("eval_steps")
    if isinstance(steps, float) and 0 < steps < 1:
        return round(1 / steps)
    return 0.0

