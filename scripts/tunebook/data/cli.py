"""``tunebook data-check``, ``convert`` and ``split``: the data commands behind the Makefile."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

from tunebook.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from tunebook.cli import add_recipe_args

    p = subparsers.add_parser(
        "data-check", help="the data gate: a recipe's train/val/test, or any file",
        description="Check a recipe's train/val/test files (and leaks between them), or any "
        "file with --data. Exit 0 clean, 1 a threshold in data.checks.* failed, 2 malformed.")
    add_recipe_args(p, default=None)
    p.add_argument("--data", help="check this file instead of the recipe's splits (with "
                   "--recipe: its thresholds and tokenizer)")
    p.add_argument("--json", help="write the machine-readable report here")
    p.add_argument("--fix", help="write a cleaned copy of --data here (drops malformed rows, "
                   "empty turns, exact and near duplicates)")
    p.set_defaults(func=data_check)

    p = subparsers.add_parser(
        "convert", help="convert ShareGPT / Alpaca / OpenAI / CSV data to the chat format",
        description="Convert a dataset to tunebook's chat JSONL; the input is never modified.")
    p.add_argument("--data", required=True, help="input file")
    p.add_argument("--from", dest="source", required=True,
                   choices=("sharegpt", "alpaca", "openai", "csv"), help="input layout")
    p.add_argument("--out", required=True, help="output .jsonl")
    p.set_defaults(func=convert)

    p = subparsers.add_parser(
        "split", help="deterministic 80/10/10 train/val/test split, leak-free",
        description="Split a file 80/10/10 into OUT/{train,val,test}.jsonl: deterministic, "
        "stratified by label for classification, near-duplicate clusters kept in one split.")
    p.add_argument("--data", required=True, help="input file")
    p.add_argument("--out", required=True, help="output directory")
    add_recipe_args(p, default=None)
    p.add_argument("--label-field", help="top-level key holding the label (default: the final "
                   "assistant message when the recipe has data.labels)")
    p.add_argument("--seed", type=int, default=0, help="changes the assignment, still "
                   "deterministic (default 0)")
    p.set_defaults(func=split)


def _compose(args: argparse.Namespace) -> dict | None:
    if not args.recipe:
        if args.overrides:
            raise UserError("--overrides needs --recipe (RECIPE=...)")
        return None
    from tunebook.compose import compose_recipe

    composed = compose_recipe(args.recipe, args.overrides)
    config = dict(composed.config)
    config["_recipe_name"] = composed.name
    return config


def data_check(args: argparse.Namespace) -> int:
    from tunebook import cli
    from tunebook.data import gate

    config = _compose(args)
    if args.fix and not args.data:
        raise UserError("--fix cleans one file: pass it with --data (DATA=path FIX=out.jsonl)")
    if args.data:
        path = Path(args.data)
        report = gate.check_path(path, config)
    else:
        if config is None:
            args.recipe = cli.DEFAULT_RECIPE
            config = _compose(args)
        report = gate.check_recipe(config, name=config.get("_recipe_name"))
    for line in report.lines():
        print(line)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n",
                       encoding="utf-8")
    if args.fix:
        gate.write_fixed(report, Path(args.data), Path(args.fix))
    print(report.summary())
    return report.exit_code


def convert(args: argparse.Namespace) -> int:
    from tunebook import paths
    from tunebook.data import converters

    n = converters.convert(args.source, Path(args.data), Path(args.out))
    print(f"converted {n} rows from {args.source} ({paths.rel(args.data)}) to "
          f"{paths.rel(args.out)} (chat format); `tunebook data-check --data {args.out}` next")
    return 0


def split(args: argparse.Namespace) -> int:
    from tunebook import paths
    from tunebook.data import formats, gate
    from tunebook.data import split as splitter

    config = _compose(args)
    src = Path(args.data)
    report = gate.check_path(src, None)
    bad = report.malformed()
    if bad:
        for p in bad[: report.checks.max_errors_per_code]:
            print(p)
        raise UserError(f"{paths.rel(src)}: {len(bad)} malformed rows; fix them first "
                        "(`tunebook data-check --data ... --fix clean.jsonl`)")
    rows = report.files[0].rows
    labels = ((config or {}).get("data") or {}).get("labels")
    threshold = gate.Checks.from_config(config).near_duplicate_threshold
    label_of = None
    if args.label_field:
        field = args.label_field
        missing = [r.line for r in rows if not isinstance(r.obj, dict) or field not in r.obj]
        if missing:
            raise UserError(f"{paths.rel(src)}:{missing[0]}: no {field!r} key (--label-field); "
                            f"{len(missing)} rows lack it")
        label_of = lambda r: str(r.obj[field])  # noqa: E731
    elif labels:
        label_of = lambda r: (formats.answer(r.obj) or "").strip()  # noqa: E731
    where = splitter.assign([formats.row_text(r.obj) for r in rows],
                            [label_of(r) for r in rows] if label_of else None,
                            seed=args.seed, threshold=threshold)
    out = Path(args.out)
    if out.resolve() == src.resolve().parent and src.stem in splitter.SPLITS:
        raise UserError(f"--out {out}: would overwrite {paths.rel(src)}; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for k, name in enumerate(splitter.SPLITS):
        part = [r for r, w in zip(rows, where, strict=True) if w == k]
        text = "".join(r.raw + "\n" for r in part)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")
        digest.update(text.encode())
        mix = ""
        if label_of:
            counts = Counter(label_of(r) for r in part)
            mix = " (" + ", ".join(f"{lab} {n}" for lab, n in sorted(counts.items())) + ")"
        print(f"{paths.rel(out / f'{name}.jsonl')}: {len(part)} rows{mix}")
    print(f"split sha256 {digest.hexdigest()[:16]} (same input and seed -> same split)")
    return 0
