"""The data gate: no GPU time is spent on data that has not been checked.

Two kinds of problem, two exit codes (the CLI's: 2 invalid input, 1 a check said no):

- **2, malformed**: the file cannot be read as its format -- not UTF-8, NUL bytes, a line that
  is not JSON, a JSON array in a ``.jsonl``, rows that break the format's schema or turn rules,
  empty assistant turns (Axolotl drops them silently), identical chosen/rejected, an answer
  outside ``data.labels`` or ``data.answer_schema``.
- **1, a threshold said no**: the rows parse but there are duplicates, near-duplicates, leaks
  between train/val/test, label imbalance, personal data or rows longer than
  ``axolotl.sequence_len`` (which Axolotl would drop), beyond ``data.checks.*``.

Every problem names ``<path>:<line>`` (1-based; for a ``.json`` array file, the array index).
``check_recipe(config)`` is what ``tunebook train`` calls before launching Axolotl.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.data import formats, neardup, pii, tokens
from tunebook.errors import UserError

MAX_ROW_BYTES = 1 << 20  # one row of 1 MiB is past any sequence_len; not worth parsing
MAX_DEPTH = 64  # JSON nesting; a chat row needs 3 levels

# Codes that mean "this is not a valid file of the format": exit 2.
MALFORMED = frozenset({
    "empty-file", "not-utf8", "nul-byte", "bad-json", "too-deep", "not-object",
    "json-array-in-jsonl", "unknown-format", "mixed-formats", "schema", "bad-role",
    "system-not-first", "not-alternating", "last-not-assistant", "last-not-user",
    "empty-assistant", "empty-user", "identical-pair", "unknown-label", "bad-answer",
})
# Codes a threshold in data.checks decides: exit 1.
GATED = frozenset({"exact-duplicate", "near-duplicate", "leak", "label-imbalance", "too-long",
                   "pii"})
DROPPABLE = MALFORMED | {"exact-duplicate", "near-duplicate"}  # what --fix removes


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None  # None: the whole file
    code: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "code": self.code, "message": self.message}


@dataclass
class Row:
    line: int
    raw: str  # the line as read (for --fix), or the element re-serialised (JSON arrays)
    obj: Any = None
    ok: bool = True  # parsed and valid for the format


@dataclass
class Checks:
    """The thresholds in force (``data.checks`` of the recipe, or the schema's defaults)."""

    near_duplicate_threshold: float = 0.8
    max_exact_duplicates: int = 0
    max_near_duplicates: int = 0
    max_leaks: int = 0
    max_label_imbalance: float = 1.5
    max_too_long: int = 0
    max_pii: int = 0
    max_errors_per_code: int = 10

    @classmethod
    def from_config(cls, config: dict | None) -> Checks:
        from tunebook.schema import DataChecks

        raw = ((config or {}).get("data") or {}).get("checks") or {}
        try:
            checked = DataChecks(**raw)
        except Exception as e:  # pydantic.ValidationError: one line, naming the key
            raise UserError(f"data.checks: {str(e).splitlines()[0]}; see tunebook/schema.py "
                            "DataChecks for the keys") from None
        return cls(**checked.model_dump())


@dataclass
class FileReport:
    path: str
    role: str = "data"  # train / val / test / data
    format: str | None = None
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    exact_duplicates: list[dict] = field(default_factory=list)
    near_duplicates: list[dict] = field(default_factory=list)
    pii: list[dict] = field(default_factory=list)
    too_long: list[dict] = field(default_factory=list)
    labels: dict[str, int] | None = None
    imbalance: float | None = None
    tokens: dict[str, int] | None = None  # p50 / p95 / max
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def add(self, line: int | None, code: str, message: str) -> None:
        self.problems.append(Problem(self.path, line, code, message))

    def valid(self) -> list[Row]:
        return [r for r in self.rows if r.ok]


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed value (a scalar is 0), stopping once past ``limit``."""
    depth, level = 0, [value]
    while True:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return depth
        depth += 1
        if depth > limit:
            return depth
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


_BAD = object()  # "could not parse" (a row may well be JSON null)


def _parse_value(rep: FileReport, line: int, text: str) -> Any:
    """One JSON value, or ``_BAD`` after recording why not."""
    try:
        obj = _parse(text)
    except RecursionError:
        rep.add(line, "too-deep", f"JSON nested deeper than Python can parse; a row needs "
                f"at most {MAX_DEPTH} levels")
        return _BAD
    except json.JSONDecodeError as e:
        hint = ""
        if e.msg.startswith("Expecting property name") or e.msg.startswith("Expecting value"):
            tail = text[: e.pos].rstrip()
            if tail.endswith(","):
                hint = "; remove the trailing comma"
        if e.msg.startswith("Unterminated string") or (e.pos >= len(text.rstrip()) and not hint):
            hint = "; the line looks truncated"
        if e.msg == "Extra data":
            hint = "; one JSON object per line"
        rep.add(line, "bad-json", f"{e.msg} at column {e.colno}{hint}")
        return _BAD
    except ValueError as e:
        rep.add(line, "bad-json", str(e))
        return _BAD
    if _depth(obj, MAX_DEPTH) > MAX_DEPTH:
        rep.add(line, "too-deep", f"JSON nested more than {MAX_DEPTH} levels; a row needs 3")
        return _BAD
    return obj


def read(path: Path, rep: FileReport) -> None:
    """Fill ``rep.rows`` from a JSONL file (or a ``.json`` array), recording read problems."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{rep.path}: no such file; check the path (data.* in the task, or "
                        "DATA=...)") from None
    except (IsADirectoryError, PermissionError) as e:
        raise UserError(f"{rep.path}: cannot read it ({e.strerror}); expected a JSONL file") \
            from None
    if not data.strip():
        rep.add(None, "empty-file", "the file is empty; expected one JSON object per line")
        return
    if data.lstrip()[:1] == b"[" and _read_array(path, data, rep):
        return
    for n, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            continue
        row = Row(line=n, raw="", ok=False)
        rep.rows.append(row)
        if len(raw) > MAX_ROW_BYTES:
            rep.too_long.append({"line": n, "bytes": len(raw)})
            rep.add(n, "too-long", f"row of {len(raw):,} bytes (over {MAX_ROW_BYTES:,}); "
                    "far past any sequence_len, Axolotl would drop it")
            row.raw = raw.decode("utf-8", "replace")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            byte = raw[e.start : e.start + 1].hex()
            rep.add(n, "not-utf8", f"byte 0x{byte} at column {e.start + 1} is not UTF-8 (Latin-1 "
                    "or Windows-1252?); re-encode the file as UTF-8")
            row.raw = raw.decode("utf-8", "replace")
            continue
        row.raw = text
        if "\x00" in text:
            rep.add(n, "nul-byte", f"NUL byte at column {text.index(chr(0)) + 1}; the file "
                    "is binary or corrupted")
            continue
        obj = _parse_value(rep, n, text)
        if obj is _BAD:
            continue
        row.obj = obj
        row.ok = True


def _read_array(path: Path, data: bytes, rep: FileReport) -> bool:
    """Read a file that starts with ``[``; False when it should be read as JSON Lines after
    all (a ``.jsonl`` whose first row merely is an array)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if path.suffix == ".jsonl":
            return False
        line = data[: e.start].count(b"\n") + 1
        rep.add(line, "not-utf8", f"byte 0x{data[e.start:e.start + 1].hex()} is not UTF-8; "
                "re-encode the file as UTF-8")
        return True
    if path.suffix == ".jsonl":
        try:
            whole = _parse(text)
        except (ValueError, RecursionError):
            return False
        if isinstance(whole, list):
            rep.add(1, "json-array-in-jsonl", "the file is one JSON array, not JSON Lines; "
                    "write one object per line, or name it .json (HF datasets mis-reads "
                    "arrays in .jsonl)")
            return True
        return False
    if "\x00" in text:
        rep.add(text[: text.index("\x00")].count("\n") + 1, "nul-byte", "NUL byte in the file")
        return True
    obj = _parse_value(rep, 1, text)
    if obj is _BAD:
        return True
    if not isinstance(obj, list):
        rep.add(1, "not-object", "expected a JSON array of rows")
        return True
    for i, item in enumerate(obj):
        rep.rows.append(Row(line=i, raw=json.dumps(item, ensure_ascii=False), obj=item))
    return True


# --------------------------------------------------------------------------------------------
# per-file checks
# --------------------------------------------------------------------------------------------
def _check_rows(rep: FileReport, fmt: str | None, labels: Sequence[str] | None,
                answer_validator: Any) -> None:
    if fmt is None:
        for r in rep.rows:
            if r.ok and formats.detect(r.obj):
                fmt = formats.detect(r.obj)
                break
    rep.format = fmt
    for r in rep.rows:
        if not r.ok:
            continue
        problems = formats.check_row(fmt or "chat", r.obj)
        if not problems and labels is not None:
            ans = (formats.answer(r.obj) or "").strip()
            if ans not in labels:
                from tunebook.errors import did_you_mean

                problems.append(("unknown-label", f"answer {ans[:40]!r} is not one of "
                                 f"{', '.join(labels)}{did_you_mean(ans, labels)} (data.labels)"))
        if not problems and answer_validator is not None:
            problems += _answer_problems(formats.answer(r.obj) or "", answer_validator)
        for code, msg in problems:
            rep.add(r.line, code, msg)
        r.ok = not problems


def _answer_problems(ans: str, validator: Any) -> list[tuple[str, str]]:
    try:
        value = _parse(ans)
    except (ValueError, RecursionError):
        return [("bad-answer", "the answer is not JSON; data.answer_schema expects one object")]
    from jsonschema.exceptions import best_match

    err = best_match(validator.iter_errors(value))
    if err is None:
        return []
    where = "/".join(str(p) for p in err.absolute_path) or "answer"
    return [("bad-answer", f"{where}: {err.message[:150]} (data.answer_schema)")]


def _duplicates(rep: FileReport, index: neardup.Index, texts: list[str], rows: list[Row],
                threshold: float) -> None:
    first: dict[str, int] = {}
    exact: set[int] = set()
    for k, t in enumerate(texts):
        j = first.setdefault(neardup.exact_key(t), k)
        if j != k:
            exact.add(k)
            rep.exact_duplicates.append({"line": rows[k].line, "of_line": rows[j].line})
            rep.add(rows[k].line, "exact-duplicate", f"same text as line {rows[j].line} "
                    "(after case and whitespace normalisation)")
    if len(texts) < 2:
        return
    found = neardup.clusters(index, threshold, skip=exact)
    best: dict[int, float] = {}
    for i, j, jac in found.pairs:
        best[i] = max(best.get(i, 0.0), jac)
        best[j] = max(best.get(j, 0.0), jac)
    for k in found.duplicates():
        root = found.root[k]
        jac = best.get(k, threshold)
        rep.near_duplicates.append({"line": rows[k].line, "of_line": rows[root].line,
                                    "similarity": round(jac, 3)})
        rep.add(rows[k].line, "near-duplicate", f"{jac:.2f} similar to line {rows[root].line} "
                f"(char 5-gram Jaccard >= {threshold})")


def _pii(rep: FileReport, texts: list[str], rows: list[Row]) -> None:
    for t, r in zip(texts, rows, strict=True):
        found = pii.scan(t)
        if found:
            kinds = ", ".join(f"{f.entity} {f.masked}" for f in found[:3])
            rep.pii.append({"line": r.line, "entities": [
                {"entity": f.entity, "masked": f.masked} for f in found]})
            rep.add(r.line, "pii", f"personal data: {kinds}"
                    + (f" and {len(found) - 3} more" if len(found) > 3 else ""))


def _labels(rep: FileReport, rows: list[Row], labels: Sequence[str]) -> None:
    counts = Counter((formats.answer(r.obj) or "").strip() for r in rows)
    rep.labels = {label: counts.get(label, 0) for label in labels}
    present = [c for c in rep.labels.values()]
    if present:
        lo, hi = min(present), max(present)
        rep.imbalance = math.inf if lo == 0 else round(hi / lo, 3)


EXACT_LENGTH_ROWS = 20_000  # up to this many rows every row is tokenized
LENGTH_SAMPLE = 2_000  # rows tokenized for the percentiles of a bigger file
_BYTE_SLACK = 4  # tokens <= UTF-8 bytes + 1 for byte-level BPE and SentencePiece; margin


def token_lengths(tokenizer: Any, rows: Sequence[Any], seq_len: int | None = None
                  ) -> tuple[dict[int, int], int]:
    """Tokens per row as Axolotl counts them (chat template applied): ``{row index: n}``.

    Up to ``EXACT_LENGTH_ROWS`` rows, every row. Above that, only the rows that *could* exceed
    ``seq_len`` -- a token is at least one UTF-8 byte for byte-level BPE and SentencePiece
    tokenizers (plus one for SentencePiece's leading space), so a rendered row of at most
    ``seq_len - 4`` bytes cannot be too long -- and an evenly spaced sample for percentiles.
    The too-long verdict is exact either way; only the percentiles are sampled.
    """
    texts, merged = tokens.render_texts(tokenizer, [formats.messages(r) for r in rows])
    if len(texts) <= EXACT_LENGTH_ROWS or not seq_len:
        idx = list(range(len(texts)))
    else:
        step = max(1, len(texts) // LENGTH_SAMPLE)
        sample = set(range(0, len(texts), step))
        idx = [i for i, t in enumerate(texts)
               if i in sample or len(t) * 4 + _BYTE_SLACK > seq_len
               and len(t.encode("utf-8")) + _BYTE_SLACK > seq_len]
    counts = tokens.count(tokenizer, [texts[i] for i in idx])
    return dict(zip(idx, counts, strict=True)), merged


def _lengths(rep: FileReport, rows: list[Row], tokenizer: Any, seq_len: int) -> None:
    if not rows:
        return
    lengths, merged = token_lengths(tokenizer, [r.obj for r in rows], seq_len)
    if merged:
        rep.notes.append(f"{merged} rows rendered with the system message merged into the "
                         "first user turn (the chat template rejects a system role)")
    exact = len(lengths) == len(rows)
    if exact:
        ordered = sorted(lengths.values())
    else:
        step = max(1, len(rows) // LENGTH_SAMPLE)
        ordered = sorted(lengths[i] for i in range(0, len(rows), step))
    rep.tokens = {"p50": ordered[len(ordered) // 2],
                  "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
                  "max": max(lengths.values()), "counted": len(lengths),
                  "sampled_percentiles": not exact}
    for i, n in sorted(lengths.items()):
        if n > seq_len:
            rep.too_long.append({"line": rows[i].line, "tokens": n})
            rep.add(rows[i].line, "too-long", f"{n} tokens > axolotl.sequence_len {seq_len}; "
                    "Axolotl drops it (excess_length_strategy: drop)")


@dataclass
class _FileWork:
    rep: FileReport
    rows: list[Row]
    texts: list[str]
    index: neardup.Index
    keys: list[str]


def check_file(path: Path | str, *, role: str = "data", fmt: str | None = None,
               checks: Checks | None = None, labels: Sequence[str] | None = None,
               answer_schema: Path | None = None, tokenizer: Any = None,
               seq_len: int | None = None) -> FileReport:
    """All per-file checks of one file (no cross-split leaks: see ``check_files``)."""
    return _check_file(Path(path), role, fmt, checks or Checks(), labels, answer_schema,
                       tokenizer, seq_len).rep


def _check_file(path: Path, role: str, fmt: str | None, checks: Checks,
                labels: Sequence[str] | None, answer_schema: Path | None, tokenizer: Any,
                seq_len: int | None) -> _FileWork:
    import time

    rep = FileReport(path=paths.rel(path), role=role)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        rep.timings[stage] = round(now - clock, 3)
        clock = now

    read(path, rep)
    lap("read")
    validator = None
    if answer_schema is not None:
        from jsonschema import Draft202012Validator

        try:
            validator = Draft202012Validator(json.loads(answer_schema.read_text("utf-8")))
        except (OSError, ValueError) as e:
            raise UserError(f"{paths.rel(answer_schema)}: cannot load data.answer_schema "
                            f"({e})") from None
    _check_rows(rep, fmt, labels, validator)
    lap("format")
    rows = rep.valid()
    texts = [formats.row_text(r.obj) for r in rows]
    index = neardup.Index.build(texts)
    _duplicates(rep, index, texts, rows, checks.near_duplicate_threshold)
    lap("duplicates")
    _pii(rep, [formats.all_text(r.obj) for r in rows], rows)
    lap("pii")
    if labels:
        _labels(rep, rows, labels)
        if rep.imbalance is not None and rep.imbalance > checks.max_label_imbalance:
            counts = ", ".join(f"{k} {v}" for k, v in rep.labels.items())
            rep.add(None, "label-imbalance", f"largest/smallest class {rep.imbalance} > "
                    f"data.checks.max_label_imbalance {checks.max_label_imbalance} ({counts})")
    if tokenizer is not None and seq_len:
        _lengths(rep, rows, tokenizer, seq_len)
        lap("lengths")
    keys = [neardup.exact_key(t) for t in texts]
    return _FileWork(rep, rows, texts, index, keys)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
@dataclass
class Report:
    files: list[FileReport]
    checks: Checks
    leaks: list[dict] = field(default_factory=list)
    leak_problems: list[Problem] = field(default_factory=list)
    tokenizer: str | None = None
    seq_len: int | None = None
    recipe: str | None = None

    # -- verdict ------------------------------------------------------------------------------
    def problems(self) -> list[Problem]:
        return [p for f in self.files for p in f.problems] + self.leak_problems

    def malformed(self) -> list[Problem]:
        return [p for p in self.problems() if p.code in MALFORMED]

    def count(self, what: str) -> int:
        if what == "leaks":
            return len(self.leaks)
        return sum(len(getattr(f, what)) for f in self.files)

    def failures(self) -> list[str]:
        """The thresholds this data breaks, one phrase each."""
        c = self.checks
        out = []
        for what, limit, key in (
            ("exact_duplicates", c.max_exact_duplicates, "max_exact_duplicates"),
            ("near_duplicates", c.max_near_duplicates, "max_near_duplicates"),
            ("leaks", c.max_leaks, "max_leaks"),
            ("pii", c.max_pii, "max_pii"),
            ("too_long", c.max_too_long, "max_too_long"),
        ):
            n = self.count(what) if what != "too_long" else self.too_long_count()
            if n > limit:
                out.append(f"{n} {what.replace('_', ' ')} > {key}={limit}")
        worst = max((f.imbalance for f in self.files if f.imbalance is not None), default=None)
        if worst is not None and worst > c.max_label_imbalance:
            out.append(f"label imbalance {worst} > max_label_imbalance={c.max_label_imbalance}")
        return out

    def too_long_count(self) -> int:
        return self.count("too_long")

    @property
    def exit_code(self) -> int:
        if self.malformed():
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
        problems = self.problems()
        for p in problems:
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
        bad = self.malformed()
        if bad:
            codes = Counter(p.code for p in bad)
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
        elif not bad:
            parts.append("PASSED.")
        for f in self.files:
            parts += f.notes
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        c = self.checks
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "recipe": self.recipe,
            "rows": self.rows(),
            "format": self.format(),
            "errors": [p.to_dict() for p in self.problems()],
            "exact_duplicates": self.count("exact_duplicates"),
            "near_duplicates": self.count("near_duplicates"),
            "leaks": self.count("leaks"),
            "pii": self.count("pii"),
            "too_long": self.too_long_count(),
            "failures": self.failures(),
            "thresholds": {
                "near_duplicate_threshold": c.near_duplicate_threshold,
                "max_exact_duplicates": c.max_exact_duplicates,
                "max_near_duplicates": c.max_near_duplicates,
                "max_leaks": c.max_leaks,
                "max_label_imbalance": c.max_label_imbalance,
                "max_too_long": c.max_too_long,
                "max_pii": c.max_pii,
                "sequence_len": self.seq_len,
                "shingle": f"char {neardup.SHINGLE}-gram",
                "num_perm": neardup.NUM_PERM,
            },
            "tokenizer": self.tokenizer,
            "files": [{
                "path": f.path, "role": f.role, "format": f.format, "rows": len(f.rows),
                "valid_rows": len(f.valid()), "labels": f.labels,
                "label_imbalance": None if f.imbalance in (None, math.inf) else f.imbalance,
                "tokens": f.tokens, "exact_duplicates": f.exact_duplicates,
                "near_duplicates": f.near_duplicates, "pii": f.pii, "too_long": f.too_long,
                "notes": f.notes, "timings": f.timings,
            } for f in self.files],
            "leak_rows": self.leaks,
        }


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------
def _leaks(works: list[_FileWork], threshold: float) -> tuple[list[dict], list[Problem]]:
    """Rows of a later split that (near-)duplicate a row of an earlier one."""
    leaks: list[dict] = []
    problems: list[Problem] = []
    for qi, q in enumerate(works):
        leaked: set[int] = set()
        for t in works[:qi]:
            by_key = {}
            for k, key in enumerate(t.keys):
                by_key.setdefault(key, k)
            rows_left = []
            for k, key in enumerate(q.keys):
                if k in leaked:
                    continue
                if key in by_key:
                    j = by_key[key]
                    leaked.add(k)
                    leaks.append({"path": q.rep.path, "line": q.rows[k].line, "of_path":
                                  t.rep.path, "of_line": t.rows[j].line, "similarity": 1.0})
                    problems.append(Problem(q.rep.path, q.rows[k].line, "leak",
                                            f"the same text as {t.rep.path}:{t.rows[j].line}"))
                else:
                    rows_left.append(k)
            if not rows_left or not t.rows:
                continue
            for k, j, jac in neardup.cross_matches(q.index, t.index, threshold, rows_left):
                leaked.add(k)
                leaks.append({"path": q.rep.path, "line": q.rows[k].line, "of_path": t.rep.path,
                              "of_line": t.rows[j].line, "similarity": round(jac, 3)})
                problems.append(Problem(q.rep.path, q.rows[k].line, "leak",
                                        f"{jac:.2f} similar to {t.rep.path}:{t.rows[j].line}"))
    problems.sort(key=lambda p: (p.path, p.line or 0))
    return leaks, problems


def _tokenizer_name(tokenizer: Any) -> str:
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return paths.rel(name) if Path(name).is_absolute() else name  # a local twin: repo-relative


def check_files(files: Iterable[tuple[str, Path]], config: dict | None = None, *,
                tokenizer: Any = None, name: str | None = None) -> Report:
    """Check ``(role, path)`` files with the recipe ``config``'s thresholds, labels and format
    (``None`` config: defaults and the auto-detected format). Token lengths are checked against
    ``axolotl.sequence_len`` when the caller passes the recipe's ``tokenizer``; ``name`` is the
    recipe the report speaks of."""
    checks = Checks.from_config(config)
    data = (config or {}).get("data") or {}
    fmt = data.get("format") if config else None
    labels = data.get("labels")
    schema = data.get("answer_schema")
    answer_schema = paths.ROOT / schema if schema else None
    seq_len = ((config or {}).get("axolotl") or {}).get("sequence_len") if config else None
    works = [_check_file(Path(p), role, fmt, checks, labels, answer_schema, tokenizer, seq_len)
             for role, p in files]
    leaks, leak_problems = _leaks(works, checks.near_duplicate_threshold) if len(works) > 1 \
        else ([], [])
    return Report(files=[w.rep for w in works], checks=checks, leaks=leaks,
                  leak_problems=leak_problems,
                  tokenizer=_tokenizer_name(tokenizer) if tokenizer is not None and seq_len
                  else None, seq_len=seq_len, recipe=name)


def check_recipe(config: dict, tokenizer: Any = None, *, name: str | None = None) -> Report:
    """The gate ``tunebook train`` runs before launching: train/val/test of the composed
    recipe, each checked, plus leaks from train into val and test and from val into test."""
    data = config.get("data") or {}
    missing = [k for k in ("train", "val", "test") if not data.get(k)]
    if missing:
        raise UserError(f"data.{missing[0]} is not set; the task must name its train, val and "
                        "test files")
    return check_files([(k, paths.ROOT / data[k]) for k in ("train", "val", "test")], config,
                       tokenizer=tokenizer, name=name)


def check_path(path: Path | str, config: dict | None = None, tokenizer: Any = None) -> Report:
    """The gate over any one file; with a recipe ``config``, its thresholds (and, given its
    tokenizer, its sequence length)."""
    return check_files([("data", Path(path))], config, tokenizer=tokenizer)


def write_fixed(report: Report, source: Path, out: Path,
                echo: Callable[[str], None] = print) -> int:
    """Write a cleaned copy of ``source`` without malformed rows, empty turns, exact and near
    duplicates; never touches ``source``. Returns the number of rows dropped."""
    if out.resolve() == source.resolve():
        raise UserError(f"--fix {out}: that is the input file; tunebook never edits data in "
                        "place, name a new file")
    rep = report.files[0]
    drop: dict[int, str] = {}
    for p in rep.problems:
        if p.code in DROPPABLE and p.line is not None:
            drop.setdefault(p.line, p.code)
    for r in rep.rows:
        if not r.ok:
            drop.setdefault(r.line, "malformed")
    kept = [r for r in rep.rows if r.line not in drop]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in kept:
            f.write(r.raw + "\n")
    tmp.replace(out)
    for line, code in sorted(drop.items()):
        echo(f"{rep.path}:{line}: dropped ({code})")
    echo(f"wrote {paths.rel(out)}: kept {len(kept)} of {len(rep.rows)} rows, dropped "
         f"{len(drop)}; {rep.path} is unchanged")
    return len(drop)
