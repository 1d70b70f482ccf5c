"""Benchmark: the overhead of tunebook's launcher over raw ``axolotl train`` (``make bench-train``).

The same rendered config (one recipe rendered once per run, identical content) is trained
(a) by the venv's own ``axolotl train <axolotl.yaml>`` CLI and (b) through ``tunebook train``'s
launch path (``tunebook.launch`` child: seeding, the trainer-state result file, log tee and
manifest updates). Runs alternate a/b/a/b... and the minimum of each is compared, so the first
run's dataset preparation (shared cache) and load noise from other jobs weigh on neither side.
Target: b / a <= 1.05. Both sides get the same environment, including one CPU thread
(``OMP_NUM_THREADS=1``, what the launcher sets on CPU-only machines).

The whole ``tunebook train`` command is also timed once, for information: it adds validation
(Axolotl's schema import), the data gate and rendering, which raw Axolotl does not do.

    .venv/bin/python scripts/bench/train.py [--recipe tiny-lora-triage] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_RATIO = 1.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=os.environ.get("RECIPE") or "tiny-lora-triage")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI timing")
    args = parser.parse_args()

    from tunebook import render, train, twins
    from tunebook.launch import launch_command
    from tunebook.validate import validate_recipe

    train.quiet_environment()
    validated = validate_recipe(args.recipe, "")
    config = validated.config
    config["axolotl"]["base_model"] = twins.ensure_base(config)
    extra = {"dataset_prepared_path": str(train.prepared_path(config["axolotl"]))}
    env = train.child_env(config["axolotl"]["base_model"])
    env["OMP_NUM_THREADS"] = "1"
    axolotl_cli = str(Path(sys.executable).parent / "axolotl")

    raw, ours = [], []
    for i in range(args.repeat):
        run = render.render(validated, axolotl_extra=extra, run_id=render.new_run_id() + "-bench")
        t0 = time.perf_counter()
        with (run.path / "train.log").open("w") as log:
            code = subprocess.run([axolotl_cli, "train", str(run.axolotl_yaml)], env=env,
                                  cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        raw.append(time.perf_counter() - t0)
        print(f"raw axolotl train  #{i + 1}: {raw[-1]:6.1f} s (exit {code})", flush=True)
        if code:
            print(f"raw axolotl failed; see {run.path / 'train.log'}", file=sys.stderr)
            return 1

        run = render.render(validated, axolotl_extra=extra, run_id=render.new_run_id() + "-bench")
        cmd = launch_command(run, config)
        os.environ["OMP_NUM_THREADS"] = "1"
        t0 = time.perf_counter()
        manifest = train.run_launch(run, config, cmd, echo=False)
        ours.append(time.perf_counter() - t0)
        print(f"tunebook launcher  #{i + 1}: {ours[-1]:6.1f} s ({manifest['status']})",
              flush=True)
        if manifest["status"] != "completed":
            return 1

    ratio = min(ours) / min(raw)
    print(f"\nbest of {args.repeat}: raw axolotl train {min(raw):.1f} s, tunebook launcher "
          f"{min(ours):.1f} s: overhead ratio {ratio:.3f} (target <= {TARGET_RATIO})")
    if not args.no_cli:
        t0 = time.perf_counter()
        proc = subprocess.run([str(Path(sys.executable).parent / "tunebook"), "train",
                               "--recipe", args.recipe], env={**env}, cwd=ROOT,
                              capture_output=True, text=True)
        whole = time.perf_counter() - t0
        print(f"whole `tunebook train` (validate + data gate + render + train): {whole:.1f} s "
              f"(exit {proc.returncode}); ratio to raw {whole / min(raw):.3f}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
