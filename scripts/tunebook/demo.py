"""``tunebook demo``: the whole loop on the embedded default recipe, offline, on CPU.

data-check -> baseline -> train -> eval -> gate -> report, in one process (lm-eval and
torch are imported once), ending with the gate's verdict and the report's path. Exit code is
the gate's: 0 ship, 1 do not ship; a failed step exits with that step's code.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tunebook import paths


def run_demo(recipe: str | None = None, overrides: str = "", *, log: Any = print) -> int:
    from tunebook import cli, evaluate, gate, report, train
    from tunebook.validate import validate_recipe

    recipe = recipe or cli.DEFAULT_RECIPE
    started = time.time()

    def step(name: str) -> None:
        log(f"\n== {name} ({time.time() - started:.0f} s)")

    extra = ["--overrides", overrides] if overrides else []
    step(f"data-check {recipe}")
    code = cli.main(["data-check", "--recipe", recipe, *extra])
    if code:
        log(f"demo: data-check said no (exit {code})")
        return code
    step("baseline: the base model, prompting only")
    config = validate_recipe(recipe, overrides, axolotl=False).config
    evaluate.baseline(config, recipe, log=log)
    step("train")
    # the run this demo trained, never "the newest run": another job may have started one
    run, manifest = train.start_run(recipe, overrides)
    code = train.finish(run, manifest)
    if code:
        log(f"demo: training failed (exit {code})")
        return code
    step(f"eval {paths.rel(run.path)}")
    evaluate.evaluate_run(run, log=log)
    step("gate")
    result = gate.gate_run(run, log=log)
    step("report")
    files = report.write_report(run, log=log)
    wall = time.time() - started
    run.update_manifest(demo={"wall_s": round(wall, 1)})
    verdict = "SHIP" if result["ship"] else "DO NOT SHIP"
    primary = next(r for r in result["rows"] if r["role"] == "primary")
    log(f"\ndemo finished in {wall:.0f} s: gate says {verdict} "
        f"({primary['suite']}/{primary['metric']} {primary['base']:.3f} -> {primary['tuned']:.3f},"
        f" p={primary['p']:.2g})")
    log(f"report: {files['html']}")
    return 0 if result["ship"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole loop on the embedded default, offline on CPU")
    p.add_argument("--recipe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    return run_demo(args.recipe, args.overrides)
