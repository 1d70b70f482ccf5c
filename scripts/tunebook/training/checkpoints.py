"""What a training run left on disk: checkpoints, the final weights and how training ended.

A checkpoint is *complete* when it holds a trainer state and weights; a half-written newest one
(killed mid-save) is skipped, which Axolotl's own auto-resume would crash on. How training ended
is judged from the trainer state (the last step reached, or early stopping), never from the exit
code: Axolotl exits 0 on Ctrl-C after saving a partial adapter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "adapter_model.bin")
FINAL_FILES = WEIGHT_FILES[:3]


def checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint with a trainer state and weights; a half-written one is skipped."""
    for ckpt in reversed(checkpoints(output_dir)):
        weights = any((ckpt / n).is_file() for n in (
            "adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin", "adapter_model.bin"))
        if (ckpt / "trainer_state.json").is_file() and weights:
            return ckpt
    return None


def final_weights(output_dir: Path) -> Path | None:
    for name in ("adapter_model.safetensors", "model.safetensors",
                 "model.safetensors.index.json"):
        if (output_dir / name).is_file():
            return output_dir / name
    return None


def metrics_from(result: dict[str, Any]) -> dict[str, Any]:
    history = result.get("log_history") or []
    train = [e["loss"] for e in history if "loss" in e]
    evals = [(e.get("step"), e["eval_loss"]) for e in history if "eval_loss" in e]
    out: dict[str, Any] = {
        "steps": result.get("global_step"),
        "max_steps": result.get("max_steps"),
        "early_stopped": result.get("early_stopped"),
        "stop_reason": result.get("stop_reason"),
        "linear4bit_layers": result.get("linear4bit_layers"),  # > 0: a 4-bit (QLoRA) base
        "train_loss": train[-1] if train else None,
        "first_train_loss": train[0] if train else None,
        "first_eval_loss": evals[0][1] if evals else None,
        "last_eval_loss": evals[-1][1] if evals else None,
        "best_eval_loss": min((v for _, v in evals), default=None),
        "eval_steps": [s for s, _ in evals],
        "all_finite": all(isinstance(v, int | float) and math.isfinite(v)
                          for v in [*train, *(v for _, v in evals)]) and bool(train),
    }
    summary = [e for e in history if "train_runtime" in e]
    if summary:
        out["train_runtime_s"] = summary[-1].get("train_runtime")
    return out


def result_from_output(output_dir: Path) -> dict[str, Any]:
    """How a torchrun-launched training ended, judged from what the Trainer left on disk.

    ``axolotl train --launcher torchrun`` writes no result file, and an exit code does not say
    whether the last step was reached; the final checkpoint's trainer state does (the Trainer
    saves one at the last step, and early stopping leaves its patience counter in it)."""
    states = [p for p in output_dir.glob("checkpoint-*/trainer_state.json")
              if p.parent.name.split("-")[-1].isdigit()]
    if not states:
        return {}
    newest = max(states, key=lambda p: int(p.parent.name.split("-")[-1]))
    state = json.loads(newest.read_text(encoding="utf-8"))
    step, max_steps = int(state.get("global_step") or 0), int(state.get("max_steps") or 0)
    early = (state.get("stateful_callbacks") or {}).get("EarlyStoppingCallback") or {}
    patience = (early.get("args") or {}).get("early_stopping_patience")
    counter = (early.get("attributes") or {}).get("early_stopping_patience_counter", 0)
    early_stopped = bool(patience) and counter >= patience
    finals = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
    saved = any((output_dir / name).is_file() for name in finals)
    done = saved and (step >= max_steps or early_stopped)
    return {"outcome": "completed" if done else "interrupted", "global_step": step,
            "max_steps": max_steps, "early_stopped": early_stopped and step < max_steps,
            "best_metric": state.get("best_metric"),
            "best_model_checkpoint": state.get("best_model_checkpoint"),
            "log_history": state.get("log_history") or []}
