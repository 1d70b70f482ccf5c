"""Labels: with ``data.labels`` (classification), every answer is one of them."""

from __future__ import annotations

from typing import Any

from tunebook.data import formats
from tunebook.data.check.base import MALFORMED, Check
from tunebook.errors import did_you_mean


class UnknownLabel(Check):
    name = "unknown_label"
    codes = ("unknown-label",)
    severity = MALFORMED
    reports = "answers that are not one of data.labels"
    drops = True
    counted = False

    def validate(self, row: Any, ctx: Any) -> list[tuple[str, str]]:
        if ctx.labels is None:
            return []
        ans = (formats.answer(row) or "").strip()
        if ans in ctx.labels:
            return []
        return [("unknown-label", f"answer {ans[:40]!r} is not one of {', '.join(ctx.labels)}"
                 f"{did_you_mean(ans, list(ctx.labels))} (data.labels)")]
