"""``make bench-plan``: the planner's estimates beside published GPU-memory reference points.

Reads ``scripts/bench/calibration.yaml``, builds a recipe-shaped config for each point, runs
``tunebook.plan.estimate.estimate`` and prints estimate vs reference with the error.
Target: within 15% on every in-target point and never more than 10% under it (an
underestimate is the dangerous direction: the plan says "fits" and the run dies of OOM); an
``upper_bound`` point passes when the estimate does not exceed it.
Points the planner does not model are printed with the reason. ``--strict`` exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunebook.plan.estimate import estimate
from tunebook.plan.memory import CUDA_CONTEXT_GIB

CALIBRATION = Path(__file__).with_name("calibration.yaml")
TARGET = 0.15  # |estimate / reference - 1| at most this
UNDER = 0.10  # and never more than this much under the reference
GPU_FOR_ARITHMETIC = "a100-80g"  # only its bf16 support matters: every point sets bf16 itself
STATE_TERMS = ("weights", "LoRA adapters", "gradients", "optimizer states")


@dataclass
class Result:
    id: str
    kind: str
    metric: str
    reference_gib: float
    estimate_gib: float
    error: float  # estimate / reference - 1
    ok: bool | None  # None: outside the target (not_modelled)
    note: str


def load(path: Path = CALIBRATION) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["points"]


def config_of(point: dict[str, Any]) -> dict[str, Any]:
    """A recipe-shaped config (the five sections' planner-relevant keys) for one point."""
    model = dict(point["model"])
    ax = dict(point["axolotl"])
    model.setdefault("lora_target_modules", ax.get("lora_target_modules") or [])
    launcher = dict(point.get("launcher") or {"kind": "single"})
    n = int(launcher.pop("gpus", 1))
    launcher["gpus_per_node"] = n
    return {"meta": {"model": model, "method": {"kind": point["method"]}},
            "axolotl": ax, "launcher": launcher, "data": {}}


def within(err: float) -> bool:
    """The target: at most 15% over and at most 10% under."""
    return -UNDER <= err <= TARGET


def evaluate(point: dict[str, Any]) -> Result:
    config = config_of(point)
    gpus = int(config["launcher"]["gpus_per_node"])
    p = estimate(config, GPU_FOR_ARITHMETIC, gpus, framework=point.get("framework"),
                      suggest=False, recipe=point["id"])
    metric = point["metric"]
    overhead = next(t.gb for t in p.terms if t.name.startswith("CUDA context"))
    if metric == "model_states":
        est = sum(t.gb for t in p.terms if t.name in STATE_TERMS)
    elif metric in ("capacity", "nvidia_smi"):
        est = p.peak_gb
    elif metric == "torch_reserved":
        est = p.peak_gb - CUDA_CONTEXT_GIB
    elif metric == "torch_allocated":
        est = p.peak_gb - overhead
    else:
        raise ValueError(f"{point['id']}: unknown metric {metric!r}")
    ref = float(point["value_gib"])
    err = est / ref - 1
    kind = point["kind"]
    if kind == "not_modelled":
        ok = None
    elif kind == "upper_bound":
        ok = est <= ref
    else:
        ok = within(err)
    note = str(point.get("expected_miss") or "")
    return Result(point["id"], kind, metric, ref, est, err, ok, note)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strict", action="store_true", help="exit 1 when an in-target point misses")
    ap.add_argument("--file", type=Path, default=CALIBRATION)
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    points = load(args.file)
    results = [evaluate(p) for p in points]
    con = Console(width=140)
    t = Table(title=f"planner vs published reference points (target: {-UNDER:+.0%} to "
                    f"{TARGET:+.0%}; upper_bound: estimate must not exceed it)",
              title_justify="left")
    for col in ("point", "kind", "compared", "reference GiB", "estimate GiB", "error", "verdict"):
        t.add_column(col, justify="right" if "GiB" in col or col == "error" else "left")
    for r in results:
        verdict = ("n/a (not modelled)" if r.ok is None else
                   "[green]ok[/green]" if r.ok else "[red]MISS[/red]")
        if r.ok is False and r.note:
            verdict = "[yellow]MISS (known)[/yellow]"
        t.add_row(r.id, r.kind, r.metric, f"{r.reference_gib:.2f}", f"{r.estimate_gib:.2f}",
                  f"{r.error:+.1%}", verdict)
    con.print(t)
    for p, r in zip(points, results, strict=True):
        con.print(f"[bold]{r.id}[/bold]: {p['what']}", highlight=False)
        con.print(f"    source: {p['source']}", highlight=False)
        if p.get("settings"):
            con.print(f"    settings: {p['settings']}", highlight=False)
        if p.get("note"):
            con.print(f"    note: {p['note']}", highlight=False)
        if r.note and (r.ok is not True):
            con.print(f"    why it misses: {r.note}", highlight=False)
    in_target = [r for r in results if r.ok is not None]
    good = sum(r.ok for r in in_target)
    unexplained = [r.id for r in in_target if not r.ok and not r.note]
    con.print(f"{good}/{len(in_target)} in-target points within target; "
              f"{len(results) - len(in_target)} not modelled; "
              f"unexplained misses: {', '.join(unexplained) or 'none'}")
    if args.strict and good < len(in_target):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
