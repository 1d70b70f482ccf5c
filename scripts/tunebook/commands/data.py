"""Data commands: ``data-check``, ``convert``, ``split`` and ``new-task``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunebook import paths, twins
from tunebook.commands.args import recipe_args
from tunebook.compose import DEFAULT_RECIPE, compose_recipe
from tunebook.data import checks, converters
from tunebook.data import split as splitter
from tunebook.errors import UserError
from tunebook.evaluation.kinds import KINDS
from tunebook.tasks import create


def data_check_args(p: argparse.ArgumentParser) -> None:
    recipe_args(p, default=None)
    p.add_argument("--data", help="check this file instead of the recipe's splits (with "
                   "--recipe: its thresholds and tokenizer)")
    p.add_argument("--json", help="write the machine-readable report here")
    p.add_argument("--fix", help="write a cleaned copy of --data here (drops malformed rows, "
                   "empty turns, exact and near duplicates)")


def _config(args: argparse.Namespace) -> dict | None:
    """The composed recipe of ``--recipe`` (with ``--overrides``), or None without one."""
    if not args.recipe:
        if args.overrides:
            raise UserError("--overrides needs --recipe (RECIPE=...)")
        return None
    return compose_recipe(args.recipe, args.overrides).config


def _tokenizer(config: dict | None) -> object | None:
    """The recipe's tokenizer when token lengths can be checked (it sets sequence_len)."""
    if config is None or not (config.get("axolotl") or {}).get("sequence_len"):
        return None
    return twins.tokenizer_for(config, full=False)


def data_check(args: argparse.Namespace) -> int:
    if args.fix and not args.data:
        raise UserError("--fix cleans one file: pass it with --data (DATA=path FIX=out.jsonl)")
    if not args.data and not args.recipe:
        args.recipe = DEFAULT_RECIPE
    config = _config(args)
    if args.data:
        report = checks.check_path(Path(args.data), config, tokenizer=_tokenizer(config))
    else:
        report = checks.check_recipe(config, _tokenizer(config), name=args.recipe)
    for line in report.lines():
        print(line)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n",
                       encoding="utf-8")
    if args.fix:
        checks.write_fixed(report, Path(args.data), Path(args.fix))
    print(report.summary())
    return report.exit_code


def convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="input file")
    p.add_argument("--from", dest="source", required=True,
                   choices=("sharegpt", "alpaca", "openai", "csv"), help="input layout")
    p.add_argument("--out", required=True, help="output .jsonl")


def convert(args: argparse.Namespace) -> int:
    n = converters.convert(args.source, Path(args.data), Path(args.out))
    print(f"converted {n} rows from {args.source} ({paths.rel(args.data)}) to "
          f"{paths.rel(args.out)} (chat format); `tunebook data-check --data {args.out}` next")
    return 0


def split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="input file")
    p.add_argument("--out", required=True, help="output directory")
    recipe_args(p, default=None)
    p.add_argument("--label-field", help="top-level key holding the label (default: the final "
                   "assistant message when the recipe has data.labels)")
    p.add_argument("--seed", type=int, default=0, help="changes the assignment, still "
                   "deterministic (default 0)")


def split(args: argparse.Namespace) -> int:
    result = splitter.split_file(Path(args.data), Path(args.out), _config(args),
                                 label_field=args.label_field, seed=args.seed)
    for path, rows, labels in result.files:
        mix = " (" + ", ".join(f"{lab} {n}" for lab, n in labels.items()) + ")" if labels else ""
        print(f"{paths.rel(path)}: {rows} rows{mix}")
    print(f"split sha256 {result.digest} (same input and seed -> same split)")
    return 0


def new_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="the task's name, a lower-case slug")
    p.add_argument("--data", required=True, help="your data file (.jsonl, .json or .csv)")
    p.add_argument("--from", dest="source", default=None,
                   choices=("sharegpt", "alpaca", "openai", "csv"),
                   help="its layout (default: inferred from the file)")
    p.add_argument("--kind", default=None, choices=KINDS,
                   help="the task kind (default: inferred from the replies)")
    p.add_argument("--model", default=None,
                   help=f"model option for the GPU recipe (default {create.DEFAULT_MODEL})")
    p.add_argument("--text", default=None, help="CSV column with the text (default: text)")
    p.add_argument("--label", default=None, help="CSV column with the label (default: label)")
    p.add_argument("--force", action="store_true", help="make an existing task again")


def new_task(args: argparse.Namespace) -> int:
    made = create.new_task(args.name, Path(args.data), source=args.source, kind=args.kind,
                           model=args.model, text_column=args.text, label_column=args.label,
                           force=args.force)
    print(f"\nmade task {made.name} ({made.kind}):")
    for path in made.files:
        print(f"  {paths.rel(path)}")
    print("validated recipes: " + ", ".join(made.recipes) + "; lock snapshots and the README "
          "catalogue updated")
    print("next:")
    for step in made.next_steps:
        print(f"  {step}")
    return 0
