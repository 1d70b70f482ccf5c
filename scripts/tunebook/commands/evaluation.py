"""Evaluation commands: ``baseline``, ``eval``, ``gate``, ``report``, ``review``,
``review-score`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunebook import demo as pipeline
from tunebook import paths
from tunebook.commands.args import recipe_args
from tunebook.errors import CheckFailed, UserError
from tunebook.evaluation import harness, report, review, ship_gate
from tunebook.rundir import resolve_run
from tunebook.validate import validate_recipe


def baseline_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)
    p.add_argument("--force", action="store_true", help="re-evaluate even when cached")


def baseline(args: argparse.Namespace) -> int:
    validated = validate_recipe(args.recipe, args.overrides, axolotl=False)
    harness.baseline(validated.config, args.recipe, force=args.force)
    return 0


def run_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, run=True)


def evaluate(args: argparse.Namespace) -> int:
    harness.evaluate_run(resolve_run(args.recipe, args.run))
    return 0


def gate(args: argparse.Namespace) -> int:
    run = resolve_run(args.recipe, args.run)
    result = ship_gate.gate_run(run)
    if not result["ship"]:
        raise CheckFailed(f"gate for {paths.rel(run.path)}: do not ship: "
                          + "; ".join(result["reasons"]))
    return 0


def write_report(args: argparse.Namespace) -> int:
    run = resolve_run(args.recipe, args.run)
    if not (run.path / "resolved.yaml").is_file():
        raise UserError(f"RUN={paths.rel(run.path)}: not a rendered run")
    report.write_report(run)
    return 0


def review_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, run=True)
    p.add_argument("--n", type=int, default=None,
                   help="items to review (default: the task's eval.review.items, 100)")


def review_sheet(args: argparse.Namespace) -> int:
    out = review.build_sheet(resolve_run(args.recipe, args.run), args.n)
    if out["used"] < out["asked"]:
        print(f"WARNING: the test split has only {out['available']} items: the sheet uses all "
              f"{out['used']}, not the {out['asked']} asked for; a blind review of fewer than "
              f"{out['asked']} pairs can only show a large preference", file=sys.stderr)
    strata = ", ".join(f"{k} {n}" for k, n in out["strata"].items())
    print(f"review sheet of {out['used']} items ({strata}): {paths.rel(out['csv'])} and "
          f"{paths.rel(out['html'])}; hidden key: {paths.rel(out['key'])} (do not show it to "
          "raters)")
    return 0


def review_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sheet", required=True, help="the filled sheet.csv")
    p.add_argument("--key", default=None, help="the hidden key (default: key.json beside it)")


def review_score(args: argparse.Namespace) -> int:
    result = review.score_sheet(Path(args.sheet), Path(args.key) if args.key else None)
    for rater, r in result["raters"].items():
        rate = "n/a" if r["preference_rate"] is None else f"{r['preference_rate']:.1%}"
        print(f"{rater}: tuned preferred {r['tuned_preferred']}, base {r['base_preferred']}, "
              f"ties {r['ties']} -> preference rate {rate} (binomial p={r['p_value']:.3g})")
    for name, means in result["rubric"].items():
        shown = {k: "n/a" if v is None else f"{v:.2f}" for k, v in means.items()}
        print(f"{name} (1-5): base {shown['base']}, tuned {shown['tuned']}")
    if "agreement" in result:
        a = result["agreement"]
        print(f"agreement on {a['items']} items: Cohen's kappa {a['cohen_kappa']:.3f} "
              f"(raw {a['raw']:.1%})")
    print("significant preference for the tuned model: "
          + ("yes" if result["significant"] else "no") + " (recorded in the run's manifest)")
    return 0


def demo_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)


def demo(args: argparse.Namespace) -> int:
    return pipeline.run_demo(args.recipe, args.overrides)
