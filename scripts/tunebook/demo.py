"""The whole loop on one recipe whose base is built here (the embedded tiny base: the default
recipe and every ``tiny-lora-<task>``), offline, on CPU: data check, baseline, train, eval,
ship gate, report; in one process (lm-eval and torch are imported once), ending with the
gate's verdict and the report's path. The result's exit code is the gate's: 0 ship, 1 do not
ship; a failed step ends the demo with that step's code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunebook import paths, twins
from tunebook.compose import DEFAULT_RECIPE
from tunebook.errors import UserError
from tunebook.evaluation import harness, report, ship_gate
from tunebook.training import run as lifecycle
from tunebook.validate import validate_recipe


def run_demo(recipe: str | None = None, overrides: str = "", *, log: Any = print) -> int:
    recipe = recipe or DEFAULT_RECIPE
    started = time.time()

    def step(name: str) -> None:
        log(f"\n== {name} ({time.time() - started:.0f} s)")

    config = validate_recipe(recipe, overrides, axolotl=False).config
    base = twins.ensure_base(config)
    if not Path(base).is_dir():
        raise UserError(f"make demo RECIPE={recipe}: its base {base!r} is a Hub model; the demo "
                        "runs offline on a base built here (tiny-lora-<task> recipes, or "
                        "OVERRIDES='+profile=cpu-smoke' for a recipe's tiny twin)")
    step(f"data-check {recipe}")
    checked = lifecycle.check_data(config, recipe)
    for line in checked.lines():
        log(line)
    log(checked.summary())
    if checked.exit_code:
        log(f"demo: data-check said no (exit {checked.exit_code})")
        return checked.exit_code
    step("baseline: the base model, prompting only")
    harness.baseline(config, recipe, log=log)
    step("train")
    # the run this demo trained, never "the newest run": another job may have started one
    run, manifest = lifecycle.train(recipe, overrides)
    code = lifecycle.finish(run, manifest)
    if code:
        log(f"demo: training failed (exit {code})")
        return code
    step(f"eval {paths.rel(run.path)}")
    harness.evaluate_run(run, log=log)
    step("gate")
    result = ship_gate.gate_run(run, log=log)
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
