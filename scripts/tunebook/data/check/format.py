"""Format: every row is a valid row of the file's format (schema, roles, turn order, no empty
turns, chosen != rejected); the rules live in ``tunebook.data.formats``."""

from __future__ import annotations

from typing import Any

from tunebook.data import formats
from tunebook.data.check.base import MALFORMED, Check


class Format(Check):
    name = "format"
    codes = ("not-object", "unknown-format", "mixed-formats", "schema", "bad-role",
             "system-not-first", "not-alternating", "last-not-assistant", "last-not-user",
             "empty-assistant", "empty-user", "identical-pair")
    severity = MALFORMED
    reports = "rows that break their format's schema or turn rules"
    drops = True
    counted = False

    def validate(self, row: Any, ctx: Any) -> list[tuple[str, str]]:
        return formats.check_row(ctx.fmt or "chat", row)
