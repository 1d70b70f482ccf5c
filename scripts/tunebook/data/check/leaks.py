"""Leaks: rows of a later split (val, test) that repeat or near-duplicate a row of an earlier one
(train, then val), by the exact keys and band keys the duplicate checks kept; near matches are
confirmed with the exact Jaccard of the rows re-read from both files."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunebook.data import neardup
from tunebook.data.check.base import GATED, Check
from tunebook.data.check.problems import Problem, Spill


def cross_matches(q: Any, t: Any, threshold: float,
                  rows: np.ndarray) -> list[tuple[int, int, float]]:
    """(q row, t row, jaccard) for q ``rows`` that near-duplicate a t row, the most similar t
    row for each (the first of equals)."""
    q_keys, t_keys = q.columns["band_keys"], t.columns["band_keys"]
    if len(q_keys) == 0 or len(t_keys) == 0:
        return []
    pairs = neardup.cross_pairs(q_keys, rows, t_keys)
    best: dict[int, tuple[int, float]] = {}
    jacs = neardup.pair_jaccards(pairs, q.texts, t.texts)
    for (i, j), jac in zip(pairs.tolist(), jacs, strict=True):
        if jac >= threshold and (i not in best or jac > best[i][1]):
            best[i] = (j, jac)
    return [(i, j, jac) for i, (j, jac) in sorted(best.items())]


class Leaks(Check):
    name = "leaks"
    codes = ("leak",)
    severity = GATED
    threshold = "max_leaks"
    reports = "rows of val/test that (near-)duplicate a row of an earlier split"

    def measure(self, report: Any) -> int:
        return len(report.leaks)

    def across(self, works: list, ctx: Any, report: Any) -> None:
        threshold = ctx.thresholds.near_duplicate_threshold
        leaks: list[dict] = []
        problems: list[Problem] = []
        for qi, q in enumerate(works):
            q_keys = q.columns["exact_key"]
            q_lines = q.valid_lines()
            leaked = np.zeros(len(q_keys), dtype=bool)
            for t in works[:qi]:
                t_keys, t_lines = t.columns["exact_key"], t.valid_lines()
                qp, tp = q.report.path, t.report.path
                uniq, first = np.unique(t_keys, return_index=True)
                pos = np.minimum(np.searchsorted(uniq, q_keys), max(len(uniq) - 1, 0))
                hit = ((uniq[pos] == q_keys) if len(uniq) else
                       np.zeros(len(q_keys), dtype=bool)) & ~leaked
                for k in np.flatnonzero(hit).tolist():
                    j = int(first[pos[k]])
                    line, of = int(q_lines[k]), int(t_lines[j])
                    leaks.append({"path": qp, "line": line, "of_path": tp, "of_line": of,
                                  "similarity": 1.0})
                    problems.append(Problem(qp, line, "leak", f"the same text as {tp}:{of}"))
                leaked |= hit
                rows_left = np.flatnonzero(~leaked)
                if not len(rows_left) or not len(t_keys):
                    continue
                for k, j, jac in cross_matches(q, t, threshold, rows_left):
                    leaked[k] = True
                    line, of = int(q_lines[k]), int(t_lines[j])
                    leaks.append({"path": qp, "line": line, "of_path": tp, "of_line": of,
                                  "similarity": round(jac, 3)})
                    problems.append(Problem(qp, line, "leak",
                                            f"{jac:.2f} similar to {tp}:{of}"))
        problems.sort(key=lambda p: (p.path, p.line or 0))
        report.leaks = Spill(leaks)
        report.leak_problems = Spill(problems)
