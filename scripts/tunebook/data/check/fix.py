"""``--fix``: a cleaned copy of a checked file, written from the source rows by byte offset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tunebook import paths
from tunebook.data.check import registry
from tunebook.data.check.report import Report
from tunebook.errors import UserError


def droppable() -> frozenset[str]:
    """The codes whose rows ``--fix`` removes (the checks that declare ``drops``)."""
    return frozenset(code for c in registry.REGISTRY if c.drops for code in c.codes)


def write_fixed(report: Report, source: Path, out: Path,
                echo: Callable[[str], None] = print) -> int:
    """Write a cleaned copy of ``source`` without malformed rows, empty turns, exact and near
    duplicates; never touches ``source``. Returns the number of rows dropped."""
    if out.resolve() == source.resolve():
        raise UserError(f"--fix {out}: that is the input file; tunebook never edits data in "
                        "place, name a new file")
    rep = report.files[0]
    drops = droppable()
    drop: dict[int, str] = {}
    for p in rep.iter_problems():
        if p.code in drops and p.line is not None:
            drop.setdefault(p.line, p.code)
    rows = rep.rows
    for line, ok in zip(rows.line.tolist(), rows.ok.tolist(), strict=True):
        if not ok:
            drop.setdefault(line, "malformed")
    kept = [i for i, line in enumerate(rows.line.tolist()) if line not in drop]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as f:
        for raw in rows.raw_bytes(kept):
            f.write(raw + b"\n")
    tmp.replace(out)
    for line, code in sorted(drop.items()):
        echo(f"{rep.path}:{line}: dropped ({code})")
    echo(f"wrote {paths.rel(out)}: kept {len(kept)} of {len(rows)} rows, dropped "
         f"{len(drop)}; {rep.path} is unchanged")
    return len(drop)
