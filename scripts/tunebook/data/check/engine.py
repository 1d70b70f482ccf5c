"""The streaming engine: reads files in byte ranges, runs every registered check, and builds the
report, in memory that does not grow with the rows' text.

One file is read once, in ranges of ``pool.CHUNK_BYTES`` that start at line starts. Each range
is read, parsed, validated and observed by a worker process (one per core, when the file is at
least ``pool.POOL_MIN_BYTES``; in this process otherwise), which sends back only small things: per
row its line, offset, length and validity, the problems found, and each check's partial result
(64-bit hashes, band keys, counts, findings). Results are merged in file order, so the report
does not depend on the number of workers. Then, in this process, every check's ``finish`` runs
per file, ``second_pass`` per file, and ``across`` over all files (see ``registry``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tunebook import paths
from tunebook.data import formats, neardup
from tunebook.data.check import pool, reader, registry
from tunebook.data.check.problems import Spill
from tunebook.data.check.report import FileReport, Report
from tunebook.data.check.store import RowTable
from tunebook.errors import UserError
from tunebook.schema import DataChecks


@dataclass(frozen=True)
class Context:
    """What the checks need to know about the recipe (picklable; the tokenizer stays here)."""

    thresholds: DataChecks = field(default_factory=DataChecks)
    fmt: str | None = None  # data.format, or the format detected for the file
    labels: tuple[str, ...] | None = None
    answer_schema: Path | None = None
    seq_len: int | None = None
    tokenizer: Any = field(default=None, compare=False)

    def for_workers(self) -> Context:
        return replace(self, tokenizer=None)


class Chunk:
    """The valid rows of one range, with the texts several checks share, computed once."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    @cached_property
    def texts(self) -> list[str]:
        """What makes each row what it is, for duplicates and leaks (``formats.row_text``)."""
        return [formats.row_text(r) for r in self.rows]

    @cached_property
    def normalised(self) -> list[str]:
        return [neardup.normalise(t) for t in self.texts]


@dataclass
class RangeResult:
    """What a worker sends back for one range (or an array file)."""

    newlines: int
    lines: np.ndarray  # local line per row (0 = the range's first line)
    offsets: np.ndarray
    lengths: np.ndarray
    ok: np.ndarray
    read_problems: list[tuple[int, str, str]]
    row_problems: list[tuple[int, str, str]]
    too_long: list[tuple[int, int]]
    partials: dict[str, Any]


def _scan(entries: list[tuple[int, int, int, Any]], read: reader.Lines | None,
          ctx: Context) -> RangeResult:
    n = len(entries)
    ok = np.zeros(n, dtype=bool)
    row_problems: list[tuple[int, str, str]] = []
    valid: list[Any] = []
    validators = [c.validate for c in registry.hooks("validate")]
    for k, (line, _, _, obj) in enumerate(entries):
        if obj is reader.BAD:
            continue
        for validate in validators:
            found = validate(obj, ctx)
            if found:
                row_problems.extend((line, code, msg) for code, msg in found)
                break
        else:
            ok[k] = True
            valid.append(obj)
    chunk = Chunk(valid)
    partials = {c.name: c.observe(chunk, ctx) for c in registry.hooks("observe")}
    return RangeResult(
        newlines=read.newlines if read else 0,
        lines=np.fromiter((e[0] for e in entries), dtype=np.int64, count=n),
        offsets=np.fromiter((e[1] for e in entries), dtype=np.int64, count=n),
        lengths=np.fromiter((e[2] for e in entries), dtype=np.int64, count=n),
        ok=ok, read_problems=read.problems if read else [], row_problems=row_problems,
        too_long=read.too_long if read else [], partials=partials)


def scan_range(task: tuple[Path, int, int, Context]) -> RangeResult:
    """Read, validate and observe the rows of one byte range (runs in a worker)."""
    path, start, end, ctx = task
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    lines = reader.Lines(data, start)
    del data
    return _scan(lines.entries, lines, ctx)


def ranges(path: Path, size: int, chunk: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``chunk`` bytes, each starting at a line start."""
    bounds = [0]
    with path.open("rb") as f:
        pos = chunk
        while pos < size:
            f.seek(pos - 1)
            nxt = pos - 1 + len(f.readline())
            if nxt >= size:
                break
            if nxt > bounds[-1]:
                bounds.append(nxt)
            pos = max(nxt, pos) + chunk
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


# --------------------------------------------------------------------------------------------
# one file
# --------------------------------------------------------------------------------------------
@dataclass
class FileWork:
    """A file being checked: its report, its context and the per-row columns the checks
    keep between stages (``exact_key``, ``band_keys``, ...; one small number per row)."""

    report: FileReport
    ctx: Context
    size: int = 0
    partials: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        assert self.report.rows.path is not None
        return self.report.rows.path

    def valid_rows(self) -> np.ndarray:
        """Row index of every valid row (the checks count valid rows 0, 1, ...)."""
        if "valid_index" not in self.columns:
            self.columns["valid_index"] = self.report.rows.valid_index()
        return self.columns["valid_index"]

    def valid_lines(self) -> np.ndarray:
        return self.report.rows.line[self.valid_rows()]

    def texts(self, valid_ids: Sequence[int]) -> list[str]:
        """``formats.row_text`` of valid rows (ascending ids), re-read from the file."""
        rows = self.valid_rows()[np.asarray(valid_ids, dtype=np.int64)]
        return [formats.row_text(reader.parse(raw.decode("utf-8")))
                for raw in self.report.rows.raw_bytes(rows.tolist())]


def _merge(work: FileWork, result: RangeResult, line_base: int, valid_base: int) -> int:
    rep = work.report
    rep.rows.extend(result.lines + line_base, result.offsets, result.lengths, result.ok)
    rep.stage = "read"
    for k, code, msg in result.read_problems:
        rep.add(k + line_base, code, msg)
    for k, n in result.too_long:
        rep.details["too_long"].append({"line": k + line_base, "bytes": n})
    rep.stage = "rows"
    for k, code, msg in result.row_problems:
        rep.add(k + line_base, code, msg)
    for name, partial in result.partials.items():
        work.partials.setdefault(name, []).append((valid_base, partial))
    return int(result.ok.sum())


def read_file(work: FileWork, pools: pool.Pools) -> None:
    """The streamed stage: every row read, validated and observed."""
    path, rep = work.path, work.report
    rep.format = work.ctx.fmt
    try:
        work.size = path.stat().st_size
        first = reader.first_byte(path)
    except FileNotFoundError:
        raise UserError(f"{rep.path}: no such file; check the path (data.* in the task, or "
                        "DATA=...)") from None
    except (IsADirectoryError, PermissionError) as e:
        raise UserError(f"{rep.path}: cannot read it ({e.strerror}); expected a JSONL file") \
            from None
    if not first:
        rep.add(None, "empty-file", "the file is empty; expected one JSON object per line")
        return
    if first == b"[":
        array = reader.ArrayFile(path)
        if array.is_array:
            for line, code, msg in array.problems:
                rep.add(line, code, msg)
            _read_array(work, array.items)
            return
    fmt = work.ctx.fmt or reader.detect_format(path)
    rep.format = fmt
    work.ctx = replace(work.ctx, fmt=fmt)
    task_ctx = work.ctx.for_workers()
    tasks = ((path, a, b, task_ctx) for a, b in ranges(path, work.size, pool.CHUNK_BYTES))
    line_base, valid_base = 1, 0
    for result in pool.ordered_map(pools.get(work.size), scan_range, tasks):
        valid_base += _merge(work, result, line_base, valid_base)
        line_base += result.newlines


def _read_array(work: FileWork, items: list[Any]) -> None:
    fmt = work.ctx.fmt or next((formats.detect(o) for o in items if formats.detect(o)), None)
    work.report.format = fmt
    work.ctx = replace(work.ctx, fmt=fmt)
    work.report.rows.raws = [json.dumps(item, ensure_ascii=False) for item in items]
    entries = [(i, 0, 0, item) for i, item in enumerate(items)]
    _merge(work, _scan(entries, None, work.ctx.for_workers()), 0, 0)


def check_file(path: Path, role: str, ctx: Context, pools: pool.Pools) -> FileWork:
    rep = FileReport(path=paths.rel(path), role=role, rows=RowTable(path))
    work = FileWork(rep, ctx)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        rep.timings[stage] = round(now - clock, 3)
        clock = now

    read_file(work, pools)
    rep.rows.seal()
    lap("read")
    for check in registry.hooks("finish"):
        rep.stage = check.name
        check.finish(work, work.partials.get(check.name, []), work.ctx)
        lap(check.name)
    work.partials.clear()
    for check in registry.hooks("second_pass"):
        rep.stage = check.name
        if check.second_pass(work, work.ctx, pools):
            lap(check.name)
    return work


# --------------------------------------------------------------------------------------------
# the entry points
# --------------------------------------------------------------------------------------------
def thresholds(config: dict | None) -> DataChecks:
    """The recipe's ``data.checks`` (the schema's defaults without a recipe)."""
    raw = ((config or {}).get("data") or {}).get("checks") or {}
    if isinstance(raw, DataChecks):
        return raw
    try:
        return DataChecks(**raw)
    except Exception as e:  # pydantic.ValidationError: one line, naming the key
        raise UserError(f"data.checks: {str(e).splitlines()[0]}; see tunebook/schema.py "
                        "DataChecks for the keys") from None


def context(config: dict | None, tokenizer: Any = None) -> Context:
    data = (config or {}).get("data") or {}
    schema = data.get("answer_schema")
    seq_len = ((config or {}).get("axolotl") or {}).get("sequence_len") if config else None
    labels = data.get("labels")
    return Context(thresholds=thresholds(config), fmt=data.get("format") if config else None,
                   labels=tuple(labels) if labels is not None else None,
                   answer_schema=paths.ROOT / schema if schema else None, seq_len=seq_len,
                   tokenizer=tokenizer)


def _tokenizer_name(tokenizer: Any) -> str:
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return paths.rel(name) if Path(name).is_absolute() else name  # a local twin: repo-relative


def run(files: Iterable[tuple[str, Path]], config: dict | None, tokenizer: Any,
        name: str | None) -> tuple[Report, list[FileWork]]:
    ctx = context(config, tokenizer)
    for check in registry.hooks("prepare"):
        check.prepare(ctx)
    pools = pool.Pools()
    try:
        works = [check_file(Path(p), role, ctx, pools) for role, p in files]
    finally:
        pools.close()
    report = Report(files=[w.report for w in works], checks=ctx.thresholds, leaks=Spill(),
                    leak_problems=Spill(),
                    tokenizer=_tokenizer_name(tokenizer) if tokenizer is not None and
                    ctx.seq_len else None, seq_len=ctx.seq_len, recipe=name)
    if len(works) > 1:
        for check in registry.hooks("across"):
            check.across(works, ctx, report)
    return report, works
