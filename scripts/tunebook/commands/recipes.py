"""Recipe commands: ``list``, ``show``, ``catalog``, ``validate``, ``render``, ``lock``,
``diff`` and ``pr-summary``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tunebook import catalog, compose, lock, paths, prsummary
from tunebook.commands.args import recipe_args
from tunebook.errors import CheckFailed, UserError
from tunebook.training import render as run_render
from tunebook.validate import validate_recipe


def list_args(_p: argparse.ArgumentParser) -> None:
    pass


def list_recipes(_args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tunebook recipes", title_justify="left")
    peak_col = "est. peak VRAM (GiB)"
    for col in ("recipe", "model", "method", "task", "status", "planned GPU", peak_col):
        table.add_column(col, justify="right" if col == peak_col else "left")
    data = catalog.rows()
    for r in data:
        peak = f"{r['peak_gb']:.1f}"
        table.add_row(r["name"], r["model"], r["method"], r["task"], r["status"], r["gpu"], peak)
    Console(width=140).print(table)
    print(f"{len(data)} recipes; `make show RECIPE=<name>` explains one, "
          "`make plan RECIPE=<name> GPU=<id>` plans it")
    return 0


def show_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)


def show(args: argparse.Namespace) -> int:
    print(catalog.show(args.recipe, args.overrides))
    return 0


def catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", metavar="README", help="file holding the table markers")
    p.add_argument("--check", metavar="README", help="fail if the table in README is stale")


def catalog_table(args: argparse.Namespace) -> int:
    if args.check:
        if not catalog.is_current(Path(args.check)):
            raise CheckFailed(f"{args.check}: the recipe table is stale; run `make catalog`")
        print(f"{args.check}: recipe table is current")
        return 0
    readme = Path(args.write or paths.ROOT / "README.md")
    changed = catalog.update_readme(readme)
    print(f"{paths.rel(readme)}: recipe table {'updated' if changed else 'already current'}")
    return 0


def validate_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, default=None)
    p.add_argument("--all", action="store_true", help="validate every recipe in recipes/")


def validate(args: argparse.Namespace) -> int:
    names = compose.recipe_names() if args.all or not args.recipe else [args.recipe]
    t0 = time.perf_counter()
    for name in names:
        result = validate_recipe(name, args.overrides)
        for w in result.warnings:
            print(f"warning: {w.render(result.composed.sources)}", file=sys.stderr)
        for w in result.acknowledged:
            print(f"note: {w.render(result.composed.sources)} (kept: its line says why)",
                  file=sys.stderr)
        print(f"ok  {name}")
    print(f"{len(names)} recipe(s) valid in {time.perf_counter() - t0:.1f} s")
    return 0


def render_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p)


def render(args: argparse.Namespace) -> int:
    validated = validate_recipe(args.recipe, args.overrides)
    for w in validated.warnings:
        print(f"warning: {w.render(validated.composed.sources)}", file=sys.stderr)
    run = run_render.render(validated)
    print(f"rendered {paths.rel(run.path)}/ (axolotl.yaml, resolved.yaml, manifest.json)")
    return 0


def lock_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="fail naming every stale snapshot")


def write_lock(args: argparse.Namespace) -> int:
    if args.check:
        bad = lock.stale()
        if bad:
            lines = "\n".join(f"  {name}: {why}" for name, why in bad.items())
            raise CheckFailed(f"{len(bad)} recipe snapshot(s) in {paths.rel(paths.LOCK_DIR)}/ "
                              f"are stale:\n{lines}\nreview with `make diff`, then run "
                              "`make lock` and commit recipes/.lock/")
        print(f"all {len(compose.recipe_names())} recipe snapshots are current")
        return 0
    changed = lock.write_lock()
    print(f"wrote {len(changed)} snapshot(s) to {paths.rel(paths.LOCK_DIR)}/"
          + (": " + ", ".join(changed) if changed else " (all current)"))
    return 0


def diff_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, default=None)
    p.add_argument("--ref", default="HEAD", help="git ref to compare with (default HEAD)")


def diff(args: argparse.Namespace) -> int:
    if args.overrides:
        raise UserError("make diff compares committed recipes; OVERRIDES is not used here")
    diffs = lock.diff_recipes(args.recipe, args.ref)
    if not diffs:
        what = f"recipe {args.recipe}" if args.recipe else "no recipe"
        print(f"{what}: effective config unchanged since {args.ref}" if args.recipe
              else f"{what} changed its effective config since {args.ref}")
        return 0
    if not args.recipe:
        print(f"{len(diffs)} recipe(s) changed since {args.ref}: "
              + ", ".join(n for n, _ in diffs) + "\n")
    for _name, text in diffs:
        print(text)
    return 0


def pr_summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ref", default="HEAD", help="git ref to compare with (default HEAD)")
    p.add_argument("--changed", action="store_true",
                   help="print only the recipes added or changed, one name a line")


def pr_summary(args: argparse.Namespace) -> int:
    if args.changed:
        print("\n".join(prsummary.changed_recipes(args.ref)))
    else:
        print(prsummary.markdown(prsummary.summarize(args.ref)), end="")
    return 0
