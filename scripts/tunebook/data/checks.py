"""The data checks: no GPU time is spent on data that has not been checked.

Two kinds of problem, two exit codes:

- **2, malformed**: the file cannot be read as its format -- not UTF-8, NUL bytes, a line that
  is not JSON, a JSON array in a ``.jsonl``, rows that break the format's schema or turn rules,
  empty assistant turns (Axolotl drops them silently), identical chosen/rejected, an answer
  outside ``data.labels`` or ``data.answer_schema``.
- **1, a threshold said no**: the rows parse but there are duplicates, near-duplicates, leaks
  between train/val/test, label imbalance, personal data or rows longer than
  ``axolotl.sequence_len`` (which Axolotl would drop), beyond ``data.checks.*``
  (``tunebook.schema.DataChecks``, the one threshold model).

Every problem names ``<path>:<line>`` (1-based; for a ``.json`` array file, the array index).
``check_recipe(config)`` is what ``tunebook train`` calls before launching Axolotl.

The checks stream: a file is read once in byte ranges by one worker per core, and what is kept
per row is a few numbers (``tunebook.data.check.store``), so memory does not grow with the rows'
text. Each check is one unit in ``tunebook.data.check`` listed in its ``registry``, which says
how to add one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.data.check import engine, registry
from tunebook.data.check.fix import droppable, write_fixed
from tunebook.data.check.lengths import token_lengths
from tunebook.data.check.problems import Problem
from tunebook.data.check.report import FileReport, Report
from tunebook.data.check.store import Row
from tunebook.errors import UserError

__all__ = ["DROPPABLE", "GATED", "MALFORMED", "REGISTRY", "FileReport", "Problem", "Report",
           "Row", "check_files", "check_path", "check_recipe", "thresholds", "token_lengths",
           "write_fixed"]

REGISTRY = registry.REGISTRY
MALFORMED = registry.codes(registry.MALFORMED)  # codes that mean exit 2
GATED = registry.codes(registry.GATED)  # codes a data.checks threshold decides: exit 1
DROPPABLE = droppable()  # what --fix removes
thresholds = engine.thresholds


def check_files(files: Iterable[tuple[str, Path]], config: dict | None = None, *,
                tokenizer: Any = None, name: str | None = None) -> Report:
    """Check ``(role, path)`` files with the recipe ``config``'s thresholds, labels and format
    (``None`` config: defaults and the auto-detected format). Token lengths are checked against
    ``axolotl.sequence_len`` when the caller passes the recipe's ``tokenizer``; ``name`` is the
    recipe the report speaks of. Leaks: rows of a later file that repeat an earlier file's."""
    report, _ = engine.run(files, config, tokenizer, name)
    return report


def check_recipe(config: dict, tokenizer: Any = None, *, name: str | None = None) -> Report:
    """The checks ``tunebook train`` runs before launching: train/val/test of the composed
    recipe, each checked, plus leaks from train into val and test and from val into test."""
    data = config.get("data") or {}
    missing = [k for k in ("train", "val", "test") if not data.get(k)]
    if missing:
        raise UserError(f"data.{missing[0]} is not set; the task must name its train, val and "
                        "test files")
    return check_files([(k, paths.ROOT / data[k]) for k in ("train", "val", "test")], config,
                       tokenizer=tokenizer, name=name)


def check_path(path: Path | str, config: dict | None = None, tokenizer: Any = None) -> Report:
    """The checks over any one file; with a recipe ``config``, its thresholds (and, given its
    tokenizer, its sequence length)."""
    return check_files([("data", Path(path))], config, tokenizer=tokenizer)
