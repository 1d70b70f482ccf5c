"""tunebook: fine-tuning recipes, composed, checked, trained, evaluated and gated.

Every command is in one table, ``COMMANDS``; every Make target is one line that calls one of them.

A command is a pair of thin functions in ``tunebook.commands``: one adds its arguments, one
calls the domain code and returns the exit code. Heavy libraries (torch, Axolotl, lm-eval) are
imported inside the domain functions that need them, so ``tunebook --help`` stays fast.
Exit codes: 0 ok, 1 a gate or check said no, 2 invalid input. A ``TunebookError`` prints one
message, never a traceback; any other exception is a tunebook bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

from tunebook import env
from tunebook.commands import data, evaluation, plan, recipes, tracking, training
from tunebook.errors import TunebookError


class Command(NamedTuple):
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# In the order `tunebook --help` lists them: the loop a practitioner follows.
COMMANDS: tuple[Command, ...] = (
    Command("list", "table of recipes", recipes.list_args, recipes.list_recipes),
    Command("show", "effective config of a recipe and where each value came from",
            recipes.show_args, recipes.show),
    Command("catalog", "regenerate (or --check) the recipe table in README.md",
            recipes.catalog_args, recipes.catalog_table),
    Command("validate", "compose and strictly validate one recipe or all",
            recipes.validate_args, recipes.validate),
    Command("lock", "write (or --check) the resolved snapshots in recipes/.lock/",
            recipes.lock_args, recipes.write_lock),
    Command("diff", "resolved-config diff between a git ref and the work tree",
            recipes.diff_args, recipes.diff),
    Command("pr-summary", "Markdown for a pull request: recipes whose resolved config changed "
            "vs a git ref, with plan, validate and lock-check", recipes.pr_summary_args,
            recipes.pr_summary),
    Command("render", "write runs/<recipe>/<run-id>/ without training",
            recipes.render_args, recipes.render),
    Command("data-check", "the data gate: a recipe's train/val/test, or any file",
            data.data_check_args, data.data_check),
    Command("convert", "convert ShareGPT / Alpaca / OpenAI / CSV data to the chat format",
            data.convert_args, data.convert),
    Command("split", "deterministic 80/10/10 train/val/test split, leak-free",
            data.split_args, data.split),
    Command("new-task", "make a task (data splits, prompt, suite, recipes) from your data file",
            data.new_task_args, data.new_task),
    Command("plan", "memory / time / cost of a recipe on a named GPU",
            plan.plan_args, plan.plan),
    Command("baseline", "evaluate the base model on the recipe's suites",
            evaluation.baseline_args, evaluation.baseline),
    Command("preflight", "before any GPU time: GPU and plan, base model, disk (make train "
            "runs it too)", training.preflight_args, training.run_preflight),
    Command("train", "render and train a recipe with Axolotl; resume a run",
            training.train_args, training.train),
    Command("smoke", "train a recipe on its tiny CPU twin for a few steps",
            training.smoke_args, training.smoke_train),
    Command("eval", "evaluate a run's tuned model on the recipe's suites",
            evaluation.run_args, evaluation.evaluate),
    Command("gate", "paired tuned-vs-base ship decision; exit 0 ship, 1 do not",
            evaluation.run_args, evaluation.gate),
    Command("report", "self-contained HTML + Markdown report of a run",
            evaluation.run_args, evaluation.write_report),
    Command("review", "blind A/B review sheet of a run (CSV, HTML, hidden key)",
            evaluation.review_args, evaluation.review_sheet),
    Command("review-score", "score a filled review sheet",
            evaluation.review_score_args, evaluation.review_score),
    Command("merge", "merge a run's LoRA adapter into its base; print the vLLM command",
            training.merge_args, training.merge),
    Command("demo", "the whole loop on the embedded default, offline on CPU",
            evaluation.demo_args, evaluation.demo),
    Command("sbatch", "render a Slurm batch script that trains RECIPE on NODES x "
            "GPUS_PER_NODE GPUs (requeue resumes)", training.sbatch_args, training.sbatch),
    Command("sweep", "Hydra multirun over RECIPE: one tracked training run per grid point, "
            "ranked by validation loss", training.sweep_args, training.run_sweep),
    Command("runs", "recent runs from MLflow: recipe, status, metric, gate",
            tracking.runs_args, tracking.runs),
    Command("ui", "start the MLflow UI on 127.0.0.1", tracking.ui_args, tracking.ui),
    Command("register", "register RUN's adapter in the MLflow model registry (only if the "
            "gate said ship)", tracking.register_args, tracking.register),
)


def build_parser(commands: tuple[Command, ...] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunebook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        p = sub.add_parser(command.name, help=command.help)
        command.arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.hush_library_notices()
    args = build_parser().parse_args(argv)
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
