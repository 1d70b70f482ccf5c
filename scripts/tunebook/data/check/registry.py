"""The registry of data checks: what each check is, in one place.

A check is one small unit (a module of this package with a subclass of ``base.Check``) that declares

- ``name``: its key in the report (``FileReport.details[name]``, the JSON count of that name),
- ``codes``: the problem codes it writes (``path:line: code: message``),
- ``severity``: ``MALFORMED`` (the file is not valid data of its format: exit 2) or ``GATED``
  (a threshold in ``data.checks`` decides: exit 1),
- ``threshold``: the ``data.checks`` key its measure is compared with (``GATED`` checks), and
  ``params``: any other ``data.checks`` keys it reads,
- ``reports``: what it reports, one line,
- ``drops``: whether ``--fix`` removes the rows it names,

and implements the hooks it needs, which the engine (``checks.engine``) calls for every check in
registry order:

- ``prepare(ctx)`` -- once, before any row is read (load what could be missing: say so early);
- ``validate(row, ctx)`` -- in a worker, per parsed row, until a check finds a problem: the row's
  problems ``[(code, message)]``; a row with problems is malformed and no later check sees it;
- ``observe(chunk, ctx)`` -- in a worker, once per chunk of valid rows: a small picklable
  partial result (hashes, counts, findings; never the rows);
- ``finish(file, partials, ctx)`` -- in the main process, per file, after the stream: turn the
  partials into problems and details (``file.add``, ``file.details[name]``);
- ``second_pass(file, ctx)`` -- per file, once every ``finish`` has run (token lengths need the
  number of valid rows before they can pick their sample);
- ``across(files, ctx, report)`` -- once, over all files in order (leaks between splits).

The report derives from the registry: ``Report.failures()`` asks every ``GATED`` check, in
registry order, whether its measure is past its threshold; the JSON counts and thresholds are the
checks' names and keys. Adding a check = one new unit (a module in this package) listed in
``REGISTRY`` below, + its test; ``tests/data/test_data_registry.py`` checks that every code
belongs to one check and every ``data.checks`` key to one check.
"""

from __future__ import annotations

from tunebook.data.check import (
    answers,
    exact,
    format,
    label_balance,
    label_set,
    leaks,
    lengths,
    near,
    personal,
    readable,
)
from tunebook.data.check.base import GATED, MALFORMED, Check

__all__ = ["GATED", "MALFORMED", "REGISTRY", "Check", "by_name", "codes", "hooks"]

# The order is the report's: validate hooks run in it, finish hooks too, and failures are listed
# in it.
REGISTRY: list[Check] = [
    readable.Readable(),
    format.Format(),
    label_set.UnknownLabel(),
    answers.AnswerSchema(),
    exact.ExactDuplicates(),
    near.NearDuplicates(),
    leaks.Leaks(),
    personal.PersonalData(),
    lengths.TooLong(),
    label_balance.LabelImbalance(),
]


def codes(severity: str) -> frozenset[str]:
    return frozenset(code for c in REGISTRY if c.severity == severity for code in c.codes)


def hooks(name: str) -> list[Check]:
    """The checks that define the hook ``name``, in registry order."""
    return [c for c in REGISTRY if getattr(c, name) is not None]


def by_name(name: str) -> Check:
    return next(c for c in REGISTRY if c.name == name)
