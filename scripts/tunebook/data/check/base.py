"""The shape of a data check (see ``registry`` for what each part means and how the engine
calls it)."""

from __future__ import annotations

from typing import Any, ClassVar

MALFORMED = "malformed"  # exit 2: not valid data of its format
GATED = "gated"  # exit 1: a data.checks threshold says no

class Check:
    name: ClassVar[str]
    codes: ClassVar[tuple[str, ...]]
    severity: ClassVar[str]
    threshold: ClassVar[str | None] = None
    params: ClassVar[tuple[str, ...]] = ()
    reports: ClassVar[str]
    drops: ClassVar[bool] = False
    counted: ClassVar[bool] = True  # the JSON report counts its rows under ``name``

    # -- verdict ------------------------------------------------------------------------------
    def measure(self, report: Any) -> float | None:
        """What is compared with ``threshold``: by default the rows this check named."""
        return report.count(self.name)

    def failure(self, report: Any) -> str | None:
        """One phrase when the measure is past the threshold, else None."""
        value = self.measure(report)
        limit = getattr(report.checks, self.threshold) if self.threshold else None
        if value is None or limit is None or value <= limit:
            return None
        return f"{value} {self.name.replace('_', ' ')} > {self.threshold}={limit}"

    # -- hooks (a check defines those it needs) -----------------------------------------------
    prepare: Any = None  # prepare(ctx): once, in the main process, before any row is read
    validate: Any = None
    observe: Any = None
    finish: Any = None
    second_pass: Any = None
    across: Any = None
