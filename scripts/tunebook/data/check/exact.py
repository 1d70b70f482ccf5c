"""Exact duplicates: rows whose text (``formats.row_text``: the system prompt left out), after
NFKC, lower case and whitespace collapsing, repeats an earlier row's.

One 64-bit BLAKE2b hash per row is all that is kept. Two different texts share a hash with
probability 2^-64 per pair: for a million rows, the chance of one false duplicate anywhere is
about 3 in 100 million.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from tunebook.data.check.base import GATED, Check


def hashes(normalised: list[str]) -> np.ndarray:
    """The 64-bit key of each normalised text."""
    digests = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest()
                       for t in normalised)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def first_occurrence(keys: np.ndarray) -> np.ndarray:
    """For each row, the first row with the same key (itself when it is the first)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(starts) - 1
    first = np.empty(n, dtype=np.int64)
    first[order] = order[starts][group]
    return first


class ExactDuplicates(Check):
    name = "exact_duplicates"
    codes = ("exact-duplicate",)
    severity = GATED
    threshold = "max_exact_duplicates"
    reports = "rows with the same text as an earlier row (after case and whitespace " \
              "normalisation)"
    drops = True

    def observe(self, chunk: Any, ctx: Any) -> np.ndarray:
        return hashes(chunk.normalised)

    def finish(self, work: Any, partials: list, ctx: Any) -> None:
        keys = (np.concatenate([p for _, p in partials]) if partials
                else np.zeros(0, dtype=np.uint64))
        first = first_occurrence(keys)
        work.columns["exact_key"], work.columns["exact_first"] = keys, first
        lines = work.valid_lines()
        rep = work.report
        for k in np.flatnonzero(first != np.arange(len(keys))).tolist():
            line, of = int(lines[k]), int(lines[first[k]])
            rep.details[self.name].append({"line": line, "of_line": of})
            rep.add(line, "exact-duplicate", f"same text as line {of} (after case and "
                    "whitespace normalisation)")
