"""Merge a LoRA/QLoRA adapter into its base, in the dtype it was trained in, and say how to serve
it with vLLM: the merged model, or the base with the adapter beside it (no merge needed).

The dtype is what the Trainer used (``training_args.bin`` beside the adapter: bf16 or fp16),
so vLLM serves the weights in the precision that was evaluated; ``--dtype auto`` would run a
bf16 model's fp32 copy in fp16. A CPU run trained in fp32 and stays fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunebook import env, paths, twins
from tunebook.errors import UserError
from tunebook.rundir import RunDir
from tunebook.runlock import writes_run


def merge_run(run: RunDir) -> Path:
    """Merge the run's adapter into its base; write ``<run>/merged/`` and return it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    env.quiet_environment()
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    out = run.output_dir
    if not (out / "adapter_config.json").is_file():
        raise UserError(f"RUN={paths.rel(run.path)}: no LoRA adapter in {paths.rel(out)}/ "
                        "(adapter_config.json); train it to completion first")
    base = twins.ensure_base({"axolotl": ax})
    attn = ax.get("attn_implementation")
    kwargs = {"attn_implementation": attn} if attn in ("eager", "sdpa") else {}
    dtype = getattr(torch, trained_dtype(run))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, **kwargs)
    merged = PeftModel.from_pretrained(model, str(out)).merge_and_unload()
    dest = run.path / "merged"
    merged.save_pretrained(dest, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out))  # Axolotl saved it beside the adapter
    tokenizer.save_pretrained(dest)
    if tokenizer.chat_template and not (dest / "chat_template.jinja").is_file():
        (dest / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    return dest


def trained_dtype(run: RunDir) -> str:
    """``bfloat16``, ``float16`` or ``float32``: what the run's Trainer computed in."""
    args_file = run.output_dir / "training_args.bin"
    if args_file.is_file():
        import torch

        args = torch.load(args_file, weights_only=False)  # the Trainer's own pickle, ours
        return "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    if ax.get("fp16") is True:
        return "float16"
    gpus = (run.manifest().get("hardware") or {}).get("gpus")
    return "bfloat16" if ax.get("bf16") is True or (ax.get("bf16") == "auto" and gpus) \
        else "float32"


def vllm_command(model_dir: Path, recipe: str, ax: dict[str, Any], dtype: str) -> str:
    """Serve a standalone model (merged, or a full fine-tune) in the dtype it was trained in."""
    seq = ax.get("sequence_len")
    return (f"vllm serve {model_dir} --served-model-name {recipe}"
            + (f" --max-model-len {seq}" if seq else "") + f" --dtype {dtype}")


def adapter_command(base: str, adapter: Path, recipe: str, ax: dict[str, Any],
                    dtype: str) -> str:
    """Serve the base with the adapter attached (vLLM's multi-LoRA: no merge, several adapters
    per base); vLLM's largest rank is 16 unless told otherwise."""
    seq, rank = ax.get("sequence_len"), int(ax.get("lora_r") or 16)
    return (f"vllm serve {base} --enable-lora --lora-modules {recipe}={adapter}"
            + (f" --max-lora-rank {rank}" if rank > 16 else "")
            + (f" --max-model-len {seq}" if seq else "") + f" --dtype {dtype}")


@dataclass
class Merged:
    """What ``merge`` made and how to serve it."""

    model_dir: Path
    merged_now: bool  # False: a full fine-tune, already standalone
    dtype: str
    serve: str  # the vLLM command for the standalone model
    serve_adapter: str | None  # the vLLM command for base + adapter, when there is an adapter
    warning: str | None  # the gate said no


@writes_run("merge")
def merge(run: RunDir) -> Merged:
    """Make a completed run servable: a full fine-tune is already standalone (its ``output/``);
    an adapter run is merged into ``merged/`` in the dtype it trained in."""
    manifest = run.manifest()
    if manifest.get("status") != "completed":
        raise UserError(f"RUN={paths.rel(run.path)} is {manifest.get('status')!r}, not "
                        "completed; finish it first (make train RESUME=last)")
    gate = manifest.get("gate") or {}
    warning = None
    if gate and not gate.get("ship"):
        warning = (f"the gate said DO NOT SHIP for {paths.rel(run.path)} ("
                   + "; ".join(gate.get("reasons") or []) + "): merging it anyway")
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    dtype = trained_dtype(run)
    if not ax.get("adapter"):
        return Merged(run.output_dir, False, dtype, vllm_command(run.output_dir, run.recipe, ax,
                                                                 dtype), None, warning)
    dest = merge_run(run)
    run.update_manifest(merged=str(dest), merged_dtype=dtype)
    base = str(ax["base_model"])
    return Merged(dest, True, dtype, vllm_command(dest, run.recipe, ax, dtype),
                  adapter_command(base, run.output_dir, run.recipe, ax, dtype), warning)
