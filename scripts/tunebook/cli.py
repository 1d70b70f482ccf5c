"""The ``tunebook`` command. Every Make target is one line that calls one subcommand here.

Each command module exposes ``register(subparsers)``; modules keep heavy imports (torch,
Axolotl, lm-eval) inside their functions so ``tunebook --help`` stays instant.
Exit codes: 0 ok, 1 a gate or check said no, 2 invalid input. A ``TunebookError`` prints one
message, never a traceback; any other exception is a tunebook bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tunebook.errors import TunebookError

# Command modules, in the order `tunebook --help` lists them.
COMMAND_MODULES = (
    "tunebook.catalog",
    "tunebook.validate",
    "tunebook.lock",
    "tunebook.render",
    "tunebook.data.cli",
    "tunebook.plan",
    "tunebook.train",
    "tunebook.evaluate",
    "tunebook.launch",
    "tunebook.tracking",
)

DEFAULT_RECIPE = "tiny-lora-triage"  # the embedded CPU default; `make train` with no RECIPE


def add_recipe_args(parser: argparse.ArgumentParser, *, required: bool = False,
                    default: str | None = DEFAULT_RECIPE, run: bool = False) -> None:
    """``--recipe`` and ``--overrides``, shared by every command that composes a recipe;
    ``run=True`` adds ``--run`` for the commands that act on a trained run."""
    if run:
        parser.add_argument("--run", default="last", help="run directory or 'last' (default)")
    parser.add_argument("--recipe", default=None if required else default, required=required,
                        help=f"recipe name (default: {default})" if default else "recipe name")
    parser.add_argument("--overrides", default="",
                        help="Hydra overrides, e.g. "
                             "'launcher=deepspeed-zero3 axolotl.num_epochs=1'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunebook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except TunebookError as e:
        print(f"tunebook: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tunebook: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
