"""Arguments several commands share: ``--recipe`` / ``--overrides`` / ``--run``."""

from __future__ import annotations

import argparse

from tunebook.compose import DEFAULT_RECIPE


def recipe_args(parser: argparse.ArgumentParser, *, required: bool = False,
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

