"""``tunebook plan``: memory, time and cost of a recipe on a named GPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunebook.commands.args import recipe_args
from tunebook.compose import compose_recipe
from tunebook.errors import CheckFailed, UserError
from tunebook.plan.estimate import estimate
from tunebook.plan.table import print_plan
from tunebook.plan.throughput import MFU_DEFAULT, MFU_QLORA


def _gpu_count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of GPUs, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 GPU, got {v}")
    return v


def plan_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)
    p.add_argument("--gpu", default=None, help="GPU id from recipes/hardware/gpus.yaml "
                   "(default: the recipe's meta.gpu)")
    p.add_argument("--gpus", type=_gpu_count, default=None,
                   help="number of GPUs (default: launcher.gpus_per_node x launcher.nnodes)")
    p.add_argument("--price", type=float, default=None, help="USD per GPU-hour (default: table)")
    p.add_argument("--mfu", type=float, default=None,
                   help=f"assumed model FLOPs utilisation (default {MFU_DEFAULT}; QLoRA "
                        f"{MFU_QLORA})")
    p.add_argument("--json", default=None, help="write the plan as JSON to this file")


def plan(args: argparse.Namespace) -> int:
    config = compose_recipe(args.recipe, args.overrides).config
    gpu_id = args.gpu or (config.get("meta") or {}).get("gpu")
    if not gpu_id:
        raise UserError("no GPU: pass GPU=<id> or set meta.gpu in the recipe")
    result = estimate(config, gpu_id, args.gpus, price=args.price, mfu=args.mfu, count=True,
                      recipe=args.recipe)
    result.overrides = args.overrides
    print_plan(result, args.overrides)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    if not result.fits:
        fitting = [sg.change for sg in result.suggestions if sg.fits]
        hint = (f"cheapest change that fits: {fitting[0]}" if fitting else
                "no single change above fits; combine them or pick a larger GPU")
        raise CheckFailed(
            f"{args.recipe} does not fit on {result.gpus} x {result.gpu}: peak "
            f"{result.peak_gb:.1f} GiB > {result.usable_gb:.1f} GiB usable; {hint}")
    return 0
