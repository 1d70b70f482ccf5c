"""Merge a LoRA/QLoRA adapter into its base and print how to serve the result with vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunebook import env, paths, twins
from tunebook.errors import UserError
from tunebook.rundir import RunDir


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
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **kwargs)
    merged = PeftModel.from_pretrained(model, str(out)).merge_and_unload()
    dest = run.path / "merged"
    merged.save_pretrained(dest, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out))  # Axolotl saved it beside the adapter
    tokenizer.save_pretrained(dest)
    if tokenizer.chat_template and not (dest / "chat_template.jinja").is_file():
        (dest / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    return dest


def vllm_command(model_dir: Path, recipe: str, ax: dict[str, Any]) -> str:
    seq = ax.get("sequence_len")
    return (f"vllm serve {model_dir} --served-model-name {recipe}"
            + (f" --max-model-len {seq}" if seq else "") + " --dtype auto")


def merge(run: RunDir) -> tuple[Path, bool]:
    """Merge a completed run for serving: ``(model dir, merged now)``. A full fine-tune is
    already a standalone model (its ``output/``); an adapter run is merged into ``merged/``."""
    manifest = run.manifest()
    if manifest.get("status") != "completed":
        raise UserError(f"RUN={paths.rel(run.path)} is {manifest.get('status')!r}, not "
                        "completed; finish it first (make train RESUME=last)")
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    if not ax.get("adapter"):
        return run.output_dir, False
    dest = merge_run(run)
    run.update_manifest(merged=str(dest))
    return dest, True
