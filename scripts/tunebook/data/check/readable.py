"""Readable: the file is UTF-8 JSON, one object per line (or a ``.json`` array of them).

The reader (``checks.reader``) finds these problems as it reads; this unit declares them.
"""

from __future__ import annotations

from tunebook.data.check.base import MALFORMED, Check


class Readable(Check):
    name = "readable"
    codes = ("empty-file", "not-utf8", "nul-byte", "bad-json", "too-deep", "json-array-in-jsonl")
    severity = MALFORMED
    reports = "rows that cannot be read: not UTF-8, NUL bytes, not JSON, nested too deep"
    drops = True
    counted = False
