"""Benchmark: ``make train`` against raw ``axolotl train`` on the same rendered config.

``make bench-train`` first renders the recipe once (``tunebook train --dry-run``), then
alternates (a) the venv's own ``axolotl train <that axolotl.yaml>`` (only ``output_dir`` moved to
a scratch folder), (c) the same with ``--launcher python`` and (b) the whole front door,
``make train RECIPE=...``: validation, the data gate, rendering, the MLflow run, the launch, the
manifest and the summary. After each (b) the run's ``axolotl.yaml`` is compared with the one
(a) trained; any difference but the run's own paths fails the benchmark, so every side trains
the same config. The minimum of each side is compared, so the first run's dataset preparation
(a shared, content-hashed cache) and load from other jobs weigh on no side. Target: b / a <=
1.05. ``axolotl train`` starts training through ``accelerate launch`` (a second process with its
own imports); ``make train`` and (c) train in one process, so b / c, printed for information,
is the front door's own cost.

Both sides get the same environment: offline, telemetry off, one CPU thread
(``OMP_NUM_THREADS=1``, what ``tunebook train`` uses on CPU-only machines), and the MLflow
experiment ``tunebook-bench`` so the user's own experiment stays clean. The runs of (b) are
ordinary run directories named ``<stamp>-bench-<n>`` under ``runs/<recipe>/``.

    .venv/bin/python scripts/bench/train.py [--recipe tiny-lora-triage] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TARGET_RATIO = 1.05
EXPERIMENT = "tunebook-bench"
RUN_PATH_KEYS = ("output_dir",)  # where a run writes: the one key allowed to differ
SIDES = {"raw": "(a) axolotl train", "lean": "(c) axolotl train --launcher python",
         "make": "(b) make train"}


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - t0, code


def _config(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {k: v for k, v in config.items() if k not in RUN_PATH_KEYS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=os.environ.get("RECIPE") or "tiny-lora-triage")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("RECIPE", "OVERRIDES", "RESUME", "FORCE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(key, None)  # the benchmark's own make invocation must not leak into (b)

    from tunebook import paths
    from tunebook.env import OFFLINE
    from tunebook.training.distributed import RUN_ID_ENV  # names a run directory

    env.update(OFFLINE)  # the recipe's base is local (a twin or the tiny base)
    from tunebook import twins
    from tunebook.validate import validate_recipe

    twins.ensure_base(validate_recipe(args.recipe, deep=False).config)  # built before the clock
    scratch = Path(tempfile.mkdtemp(prefix="tunebook-bench-train-"))
    try:
        dry = subprocess.run([str(bin_dir / "tunebook"), "train", "--recipe", args.recipe,
                              "--dry-run"], env=env, cwd=ROOT, capture_output=True, text=True)
        if dry.returncode:
            print(dry.stdout + dry.stderr, file=sys.stderr)
            return 1
        rendered = Path(next(line.split(None, 1)[1] for line in dry.stdout.splitlines()
                             if line.startswith("config:")))
        raw_config = yaml.safe_load(rendered.read_text(encoding="utf-8"))
        raw_config["output_dir"] = str(scratch / "output")
        raw_yaml = scratch / "axolotl.yaml"
        raw_yaml.write_text(yaml.safe_dump(raw_config, sort_keys=False), encoding="utf-8")
        print(f"rendered {paths.rel(rendered)} once; (a) and (c) train a copy, (b) renders "
              "its own",
              flush=True)

        axolotl = [str(bin_dir / "axolotl"), "train", str(raw_yaml)]
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        for i in range(1, args.repeat + 1):
            run_id = f"{stamp}-bench-{i}"
            commands = {"raw": (axolotl, env), "lean": ([*axolotl, "--launcher", "python"], env),
                        "make": (["make", "-s", "train", f"RECIPE={args.recipe}"],
                                 {**env, RUN_ID_ENV: run_id})}
            for side, (cmd, side_env) in commands.items():
                shutil.rmtree(scratch / "output", ignore_errors=True)
                log = scratch / f"{side}-{i}.log"
                took, code = _run(cmd, side_env, log)
                times[side].append(took)
                print(f"{SIDES[side]:<36} #{i}: {took:6.1f} s (exit {code})", flush=True)
                if code:
                    print(log.read_text()[-3000:], file=sys.stderr)
                    return 1
            trained = paths.RUNS / args.recipe / run_id / "axolotl.yaml"
            if _config(trained) != _config(raw_yaml):
                print(f"{paths.rel(trained)} differs from the config (a) trained; the sides "
                      "must train the same rendered config", file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    best = {side: min(t) for side, t in times.items()}
    ratio = best["make"] / best["raw"]
    print(f"\nbest of {args.repeat}: raw axolotl train {best['raw']:.1f} s, make train "
          f"{best['make']:.1f} s: overhead ratio {ratio:.3f} (target <= {TARGET_RATIO}: "
          f"{'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    print(f"for information, against Axolotl's leanest launcher (--launcher python, "
          f"{best['lean']:.1f} s): {best['make'] / best['lean']:.3f}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
