"""Tokens per second of the headline recipe against Axolotl's own example, side by side on one
GPU in one run, and their ratio (target: the recipe at least as fast, ratio >= 1).

    .venv/bin/python scripts/bench/throughput.py [--recipe mistral7b-qlora-support] [--repeat 1]

The peer is Axolotl's ``examples/mistral/qlora.yml`` (vendored unchanged in
``tests/fixtures/axolotl-examples/mistral_qlora.yml``), adapted to the same work: the recipe's
base model, datasets and chat template replace the example's, everything that decides speed
(sequence length, packing, micro-batch, LoRA targets and rank, optimiser, attention, gradient
checkpointing, precision) stays the example's. Both sides then train one epoch with evaluation,
checkpoints and trackers off, through the installed ``axolotl train``, alternately.

No model hub is reachable from a GPU machine here, so the base is the recipe's architecture at
full size with random weights (built from ``meta.model`` as ``gpu_memory.py`` builds it) and the
tokenizer of the family's twin; speed does not depend on the weights' values. The measure is
useful tokens per second: the tokens of the rows each side keeps (rows longer than its
``sequence_len`` are dropped, as Axolotl drops them), counted with the data gate's counter, over
the Trainer's own ``train_runtime``. Padding is work a side chose to do, so it is not counted.

Without a CUDA GPU the bench refuses at once (exit 2): the numbers would mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "tests" / "fixtures" / "axolotl-examples" / "mistral_qlora.yml"
TARGET = 1.0  # the recipe at least as fast as Axolotl's own example
# The work both sides do: taken from the recipe on the peer's side too.
WORK_KEYS = ("datasets", "chat_template", "chat_template_jinja", "special_tokens", "tokens",
             "train_on_inputs")
# The measurement's own settings, the same on both sides: one epoch, nothing but training.
NOT_MEASURED = ("test_datasets", "val_set_size", "eval_steps", "evals_per_epoch", "save_steps",
                "saves_per_epoch", "save_total_limit", "early_stopping_patience",
                "resume_from_checkpoint", "hub_model_id", "max_steps", "model_type",
                "tokenizer_type", "lora_model_dir", "loss_watchdog_threshold",
                "loss_watchdog_patience")
RUNTIME = re.compile(r"""['"]train_runtime['"]:\s*['"]?([0-9.]+)""")


def measured(ax: dict[str, Any], base: str, out: Path) -> dict[str, Any]:
    """``ax`` with the settings of the measurement: the local base, one epoch, no evaluation,
    checkpoints or trackers, everything written under ``out``."""
    ax = {k: v for k, v in copy.deepcopy(ax).items()
          if k not in NOT_MEASURED and not k.startswith("wandb_") and v is not None}
    ax.update(base_model=base, output_dir=str(out / "output"),
              dataset_prepared_path=str(out / "prepared"), num_epochs=1, val_set_size=0.0,
              eval_strategy="no", save_strategy="no", logging_steps=1)
    return ax


def recipe_side(rendered: dict[str, Any], base: str, out: Path) -> dict[str, Any]:
    """The recipe's rendered Axolotl config, as measured."""
    return measured(rendered, base, out)


def peer_side(example: dict[str, Any], rendered: dict[str, Any], base: str,
              out: Path) -> dict[str, Any]:
    """Axolotl's example with the recipe's work (base, data, chat template), as measured; the
    example's ``model_type``/``tokenizer_type`` name Mistral v0.1's classes and go: the base's
    own config decides."""
    ax = {k: v for k, v in example.items() if k not in WORK_KEYS}
    ax.update({k: copy.deepcopy(rendered[k]) for k in WORK_KEYS if k in rendered})
    return measured(ax, base, out)


def throughput_keys(ax: dict[str, Any]) -> dict[str, Any]:
    """The keys that decide a side's speed, for the report."""
    keys = ("sequence_len", "sample_packing", "pad_to_sequence_len", "micro_batch_size",
            "gradient_accumulation_steps", "lora_r", "optimizer", "attn_implementation",
            "gradient_checkpointing", "liger_fused_linear_cross_entropy")
    return {k: ax.get(k) for k in keys}


@dataclass
class Side:
    name: str
    config: dict[str, Any]
    useful_tokens: int
    runtimes: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.useful_tokens / min(self.runtimes) if self.runtimes else 0.0


def format_report(recipe: Side, peer: Side, device: str) -> str:
    """The two sides side by side and the ratio, as printed."""
    lines = [f"throughput on {device}: useful tokens per second over one epoch (best of "
             f"{max(len(recipe.runtimes), len(peer.runtimes))})"]
    for side in (recipe, peer):
        k = throughput_keys(side.config)
        lines.append(
            f"  {side.name:<34} {side.tokens_per_s:>10,.0f} tok/s  "
            f"({side.useful_tokens:,} tokens / {min(side.runtimes):.1f} s; sequence_len "
            f"{k['sequence_len']}, packing {bool(k['sample_packing'])}, micro-batch "
            f"{k['micro_batch_size']}, r {k['lora_r']}, {k['optimizer']})")
    ratio = recipe.tokens_per_s / peer.tokens_per_s if peer.tokens_per_s else float("nan")
    verdict = "at least as fast" if ratio >= TARGET else "SLOWER"
    lines.append(f"  ratio recipe / Axolotl example: {ratio:.2f}x ({verdict}; target >= "
                 f"{TARGET:g})")
    return "\n".join(lines)


def runtime_of(log: str) -> float:
    """The Trainer's ``train_runtime`` (seconds) from an ``axolotl train`` log."""
    found = RUNTIME.findall(log)
    if not found:
        raise RuntimeError("no train_runtime in the log: the run did not finish training")
    return float(found[-1])


def useful_tokens(lengths: list[int], sequence_len: int) -> int:
    """Tokens of the rows a side trains (longer rows are dropped, Axolotl's default)."""
    return sum(n for n in lengths if n <= sequence_len)


def build_base(config: dict[str, Any], where: Path) -> str:
    """The recipe's architecture at full size, random bf16 weights, with its twin's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    from gpu_memory import hf_config

    from tunebook.twins import twin_dir

    attn = str(config["axolotl"].get("attn_implementation") or "sdpa")
    cfg = hf_config(config, attn)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(where)
    del model
    torch.cuda.empty_cache()
    AutoTokenizer.from_pretrained(twin_dir(config["meta"]["model"]["family"])).save_pretrained(
        where)
    return str(where)


def train(config: dict[str, Any], where: Path, env: dict[str, str]) -> float:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "axolotl.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    axolotl = str(Path(sys.executable).parent / "axolotl")
    proc = subprocess.run([axolotl, "train", str(path)], cwd=ROOT, env=env, text=True,
                          capture_output=True)
    (where / "train.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"axolotl train failed (exit {proc.returncode}); see "
                           f"{where / 'train.log'}")
    shutil.rmtree(where / "output", ignore_errors=True)  # keep the disk for the other side
    return runtime_of(proc.stdout + proc.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mistral7b-qlora-support")
    ap.add_argument("--overrides", default="")
    ap.add_argument("--peer", type=Path, default=PEER)
    ap.add_argument("--repeat", type=int, default=1, help="runs per side (the best counts)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the recipe is slower")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("throughput.py measures training speed on a CUDA GPU; none is visible here "
              "(torch.cuda.is_available() is False), so nothing was measured.", file=sys.stderr)
        return 2
    from tunebook.compose import compose_recipe
    from tunebook.env import OFFLINE
    from tunebook.plan.tokens import sequence_lengths
    from tunebook.rundir import RunDir
    from tunebook.training.render import axolotl_config

    config = compose_recipe(args.recipe, args.overrides).config
    scratch = Path(tempfile.mkdtemp(prefix="tunebook-bench-throughput-"))
    try:
        base = build_base(config, scratch / "base")
        rendered = axolotl_config(config, RunDir(path=scratch / "render", recipe=args.recipe,
                                                 run_id="bench"))
        example = yaml.safe_load(args.peer.read_text(encoding="utf-8"))
        sides = {"recipe": recipe_side(rendered, base, scratch / "recipe"),
                 "peer": peer_side(example, rendered, base, scratch / "peer")}
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        lengths = sequence_lengths(ROOT / config["data"]["train"], tokenizer)
        env = {**os.environ, **OFFLINE}
        runtimes: dict[str, list[float]] = {"recipe": [], "peer": []}
        for i in range(max(1, args.repeat)):
            order = ("recipe", "peer") if i % 2 == 0 else ("peer", "recipe")
            for name in order:
                t0 = time.perf_counter()
                runtimes[name].append(train(sides[name], scratch / name, env))
                print(f"{name}: train_runtime {runtimes[name][-1]:.1f} s "
                      f"(wall {time.perf_counter() - t0:.0f} s)", flush=True)
        recipe = Side(f"{args.recipe} (tunebook)", sides["recipe"],
                      useful_tokens(lengths, int(sides["recipe"]["sequence_len"])),
                      runtimes["recipe"])
        peer = Side(f"Axolotl {args.peer.name}", sides["peer"],
                    useful_tokens(lengths, int(sides["peer"]["sequence_len"])), runtimes["peer"])
        print(format_report(recipe, peer, torch.cuda.get_device_name(0)))
        return 1 if args.strict and recipe.tokens_per_s < TARGET * peer.tokens_per_s else 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
