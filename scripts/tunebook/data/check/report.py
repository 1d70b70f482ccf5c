"""What the data checks found: per-file reports and the report with its verdict, derived from
the registry. Problems and per-row details are kept in ``problems.Spill`` lists (bounded memory).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tunebook.data import neardup
from tunebook.data.check import registry
from tunebook.data.check.problems import Problem, Spill
from tunebook.data.check.store import RowTable
from tunebook.schema import DataChecks


def detail_names() -> list[str]:
    """The per-row details a file report keeps: the counted checks, but leaks (which belong
    to the report, not to one file)."""
    return [c.name for c in registry.REGISTRY if c.counted and c.across is None]


@dataclass
class FileReport:
    path: str
    role: str = "data"  # train / val / test / data
    format: str | None = None
    rows: RowTable = field(default_factory=RowTable)
    stages: dict[str, Spill] = field(default_factory=dict)  # problems, by the stage that found them
    details: dict[str, Spill] = field(default_factory=dict)
    labels: dict[str, int] | None = None
    imbalance: float | None = None
    tokens: dict[str, int] | None = None  # p50 / p95 / max
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    stage: str = "read"  # where add() files a problem

    def __post_init__(self) -> None:
        for stage in ("read", "rows"):  # in this order, whichever finds a problem first
            self.stages.setdefault(stage, Spill())
        for name in detail_names():
            self.details.setdefault(name, Spill())

    def add(self, line: int | None, code: str, message: str) -> None:
        self.stages.setdefault(self.stage, Spill()).append(Problem(self.path, line, code,
                                                                   message))

    def iter_problems(self) -> Iterator[Problem]:
        for problems in self.stages.values():
            yield from problems

    @property
    def problems(self) -> list[Problem]:
        return list(self.iter_problems())

    def valid(self) -> list:
        return self.rows.valid()

    # The per-row details, by name (the public lists of earlier versions).
    @property
    def exact_duplicates(self) -> Spill:
        return self.details["exact_duplicates"]

    @property
    def near_duplicates(self) -> Spill:
        return self.details["near_duplicates"]

    @property
    def pii(self) -> Spill:
        return self.details["pii"]

    @property
    def too_long(self) -> Spill:
        return self.details["too_long"]


@dataclass
class Report:
    files: list[FileReport]
    checks: DataChecks
    leaks: Spill = field(default_factory=Spill)
    leak_problems: Spill = field(default_factory=Spill)
    tokenizer: str | None = None
    seq_len: int | None = None
    recipe: str | None = None

    # -- verdict ------------------------------------------------------------------------------
    def iter_problems(self) -> Iterator[Problem]:
        for f in self.files:
            yield from f.iter_problems()
        yield from self.leak_problems

    def problems(self) -> list[Problem]:
        return list(self.iter_problems())

    def malformed(self) -> list[Problem]:
        bad = registry.codes(registry.MALFORMED)
        return [p for p in self.iter_problems() if p.code in bad]

    def count(self, what: str) -> int:
        if what == "leaks":
            return len(self.leaks)
        return sum(len(f.details[what]) for f in self.files)

    def failures(self) -> list[str]:
        """The thresholds this data breaks, one phrase each, in registry order."""
        return [phrase for c in registry.REGISTRY if c.severity == registry.GATED
                if (phrase := c.failure(self))]

    def too_long_count(self) -> int:
        return self.count("too_long")

    @property
    def exit_code(self) -> int:
        bad = registry.codes(registry.MALFORMED)
        if any(p.code in bad for p in self.iter_problems()):
            return 2
        return 1 if self.failures() else 0

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    # -- output -------------------------------------------------------------------------------
    def rows(self) -> int:
        return sum(len(f.rows) for f in self.files)

    def format(self) -> str | None:
        fmts = {f.format for f in self.files if f.format}
        return fmts.pop() if len(fmts) == 1 else None

    def lines(self) -> list[str]:
        """Every problem as ``path:line: code: message``, at most max_errors_per_code each."""
        cap = self.checks.max_errors_per_code
        shown: Counter[str] = Counter()
        out = []
        for p in self.iter_problems():
            shown[p.code] += 1
            if shown[p.code] <= cap:
                out.append(str(p))
        for code, n in shown.items():
            if n > cap:
                out.append(f"{code}: … and {n - cap} more (data.checks.max_errors_per_code="
                           f"{cap}; --json report.json lists them all)")
        return out

    def summary(self) -> str:
        what = self.recipe and f"recipe {self.recipe}" or ", ".join(f.path for f in self.files)
        files = "; ".join(f"{f.role} {len(f.rows)}" for f in self.files) if self.recipe else \
            f"{self.rows()} rows"
        parts = [f"data-check {what}: {files} ({self.format() or 'unknown'} format)."]
        bad = registry.codes(registry.MALFORMED)
        codes = Counter(p.code for p in self.iter_problems() if p.code in bad)
        if codes:
            parts.append("MALFORMED: " + ", ".join(f"{n} {c}" for c, n in codes.most_common())
                         + " -- fix the rows named above (or write a cleaned copy with --fix).")
        fails = self.failures()
        counts = (f"{self.count('exact_duplicates')} exact and {self.count('near_duplicates')} "
                  f"near duplicates (>= {self.checks.near_duplicate_threshold}), "
                  f"{self.count('leaks')} leaks, {self.count('pii')} rows with personal data, ")
        if self.tokenizer:
            worst = max((f.tokens["max"] for f in self.files if f.tokens), default=0)
            counts += (f"{self.too_long_count()} rows over sequence_len {self.seq_len} "
                       f"(longest {worst} tokens, {self.tokenizer})")
        else:
            counts += f"{self.too_long_count()} rows too long (token lengths not checked: no " \
                      "recipe tokenizer)"
        imb = [f"{f.role} {f.imbalance}" for f in self.files if f.imbalance is not None]
        if imb:
            counts += f", label imbalance {', '.join(imb)}"
        parts.append(counts[0].upper() + counts[1:] + ".")
        if fails:
            parts.append("FAILED: " + "; ".join(fails) + " (thresholds in data.checks.*).")
        elif not codes:
            parts.append("PASSED.")
        for f in self.files:
            parts += f.notes
        return " ".join(parts)

    def thresholds(self) -> dict[str, Any]:
        """The data.checks keys the registered checks read (in the schema's order), plus what
        the report was checked against."""
        used = {k for c in registry.REGISTRY for k in (c.threshold, *c.params) if k}
        values = self.checks.model_dump()
        return {**{k: values[k] for k in DataChecks.model_fields if k in used},
                "sequence_len": self.seq_len, "shingle": f"char {neardup.SHINGLE}-gram",
                "num_perm": neardup.NUM_PERM}

    def to_dict(self) -> dict[str, Any]:
        counted = [c.name for c in registry.REGISTRY
                   if c.severity == registry.GATED and c.counted]
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "recipe": self.recipe,
            "rows": self.rows(),
            "format": self.format(),
            "errors": [p.to_dict() for p in self.iter_problems()],
            **{name: self.count(name) for name in counted},
            "failures": self.failures(),
            "thresholds": self.thresholds(),
            "tokenizer": self.tokenizer,
            "files": [{
                "path": f.path, "role": f.role, "format": f.format, "rows": len(f.rows),
                "valid_rows": f.rows.valid_count(), "labels": f.labels,
                "label_imbalance": None if f.imbalance in (None, math.inf) else f.imbalance,
                "tokens": f.tokens, **{name: list(f.details[name]) for name in detail_names()},
                "notes": f.notes, "timings": f.timings,
            } for f in self.files],
            "leak_rows": list(self.leaks),
        }
