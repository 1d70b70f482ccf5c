"""Label balance: with ``data.labels``, the largest class over the smallest, per file, at most
``data.checks.max_label_imbalance``."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from tunebook.data import formats
from tunebook.data.check.base import GATED, Check


class LabelImbalance(Check):
    name = "label_imbalance"
    codes = ("label-imbalance",)
    severity = GATED
    threshold = "max_label_imbalance"
    reports = "files whose largest class is more than max_label_imbalance times the smallest"
    counted = False

    def observe(self, chunk: Any, ctx: Any) -> Counter | None:
        if not ctx.labels:
            return None
        return Counter((formats.answer(r) or "").strip() for r in chunk.rows)

    def finish(self, work: Any, partials: list, ctx: Any) -> None:
        if not ctx.labels:
            return
        counts: Counter[str] = Counter()
        for _, part in partials:
            counts.update(part)
        rep = work.report
        rep.labels = {label: counts.get(label, 0) for label in ctx.labels}
        present = list(rep.labels.values())
        if present:
            lo, hi = min(present), max(present)
            rep.imbalance = math.inf if lo == 0 else round(hi / lo, 3)
        limit = ctx.thresholds.max_label_imbalance
        if rep.imbalance is not None and rep.imbalance > limit:
            mix = ", ".join(f"{k} {v}" for k, v in rep.labels.items())
            rep.add(None, "label-imbalance", f"largest/smallest class {rep.imbalance} > "
                    f"data.checks.max_label_imbalance {limit} ({mix})")

    def measure(self, report: Any) -> float | None:
        return max((f.imbalance for f in report.files if f.imbalance is not None), default=None)

    def failure(self, report: Any) -> str | None:
        worst, limit = self.measure(report), report.checks.max_label_imbalance
        if worst is None or worst <= limit:
            return None
        return f"label imbalance {worst} > max_label_imbalance={limit}"
