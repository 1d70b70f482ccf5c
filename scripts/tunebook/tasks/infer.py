"""What a practitioner's data file is: its layout, its rows and the kind of task they make.

Pure functions over rows; ``tunebook.tasks.create`` runs them and says what it inferred and why.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.data import converters, formats
from tunebook.errors import UserError

# A reply set is a label set when it is small and every reply is short.
MAX_LABELS = 50
MAX_LABEL_SHARE = 0.2  # distinct replies / rows
MAX_LABEL_WORDS = 5
MAX_LABEL_CHARS = 50
# CSV columns of the classification layout, when TEXT= / LABEL= do not name them.
TEXT_COLUMN, LABEL_COLUMN = "text", "label"


@dataclass
class Rows:
    """The rows of a data file in tunebook's format, with the line each came from."""

    path: Path
    source: str  # sharegpt | alpaca | openai | csv | chat | preference
    format: str  # chat | preference
    lines: list[int]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)  # what was inferred, for the user

    def where(self, index: int) -> str:
        """``file:line`` of row ``index`` in the user's file."""
        return f"{paths.rel(self.path)}:{self.lines[index]}"


def _first_record(path: Path) -> Any:
    """The first row of a JSON Lines file or JSON array, without reading the whole file."""
    try:
        with path.open(encoding="utf-8-sig") as f:
            head = f.read(1 << 16)
    except UnicodeDecodeError:
        raise UserError(f"{paths.rel(path)}: not UTF-8; re-encode the file as UTF-8") from None
    stripped = head.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise UserError(f"{paths.rel(path)}:{e.lineno}: not valid JSON ({e.msg})") from None
        return items[0] if isinstance(items, list) and items else None
    for line in head.splitlines():
        if line.strip():
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def detect_source(path: Path) -> tuple[str, str]:
    """(source, why) from the file name and the keys of its first row."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv", f"{path.name} is a CSV file"
    first = _first_record(path)
    if not isinstance(first, dict):
        raise UserError(f"{paths.rel(path)}:1: cannot tell the layout: the first row is not a "
                        "JSON object; pass FROM=sharegpt|alpaca|openai|csv")
    keys = set(first)
    if "conversations" in keys:
        return "sharegpt", "its rows have 'conversations' (ShareGPT)"
    if "messages" in keys:
        return "chat", "its rows have 'messages' (OpenAI chat, tunebook's chat format)"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "preference", "its rows have 'prompt', 'chosen' and 'rejected' (preference pairs)"
    if {"instruction", "output"} <= keys:
        return "alpaca", "its rows have 'instruction' and 'output' (Alpaca)"
    raise UserError(f"{paths.rel(path)}:1: cannot tell the layout from the keys "
                    f"{formats.describe_keys(first)}; pass FROM=sharegpt|alpaca|openai|csv")


def csv_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise UserError(f"{paths.rel(path)}: not UTF-8; re-encode the CSV as UTF-8") from None


def read(path: Path, source: str | None = None, *, text_column: str | None = None,
         label_column: str | None = None) -> Rows:
    """The file's rows in tunebook's chat (or preference) format, each with its line."""
    if not path.is_file():
        raise UserError(f"DATA={path}: no such file; pass the path of your data file "
                        "(.jsonl, .json or .csv)")
    notes = []
    if source is None:
        source, why = detect_source(path)
        notes.append(f"layout: {source} ({why})")
    if source == "csv":
        header = [h.strip().lower() for h in csv_header(path)]
        if text_column or label_column or {TEXT_COLUMN, LABEL_COLUMN} <= set(header):
            text_column, label_column = text_column or TEXT_COLUMN, label_column or LABEL_COLUMN
            notes.append(f"CSV columns: {text_column!r} asks, {label_column!r} answers")
        numbered = converters.read_rows("csv", path, text_column=text_column,
                                        label_column=label_column)
    elif source in ("chat", "preference"):
        numbered = _native(path, source)
    else:
        numbered = converters.read_rows("openai" if source == "chat" else source, path)
    if not numbered:
        raise UserError(f"{paths.rel(path)}: no rows")
    fmt = "preference" if source == "preference" else "chat"
    return Rows(path=path, source=source, format=fmt, lines=[n for n, _ in numbered],
                rows=[r for _, r in numbered], notes=notes)


def _native(path: Path, source: str) -> list[tuple[int, dict]]:
    """Rows already in tunebook's chat or preference format (checked by the data gate next)."""
    if source == "chat":
        return converters.read_rows("openai", path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"{paths.rel(path)}:{n}: not valid JSON ({e.msg}); one object per "
                            "line") from None
    return out


# ---------------------------------------------------------------------------------- the kind

def replies(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The answer each row teaches (for a preference pair: the chosen reply)."""
    return [(formats.answer(r) or "").strip() for r in rows]


def as_json_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Kind:
    kind: str
    why: str
    labels: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None


def infer_kind(rows: Rows, kind: str | None = None) -> Kind:
    """The task kind of ``rows`` (or the one asked for, checked against the data)."""
    answers = replies(rows.rows)
    counts = Counter(answers)
    n = len(answers)
    if rows.format == "preference" or kind == "preference":
        if rows.format != "preference":
            raise UserError(f"KIND=preference needs preference pairs (rows with prompt, chosen "
                            f"and rejected); {paths.rel(rows.path)} has {rows.source} rows")
        return Kind("preference", f"{n} preference pairs (prompt, chosen, rejected)")
    short = all(0 < len(a) <= MAX_LABEL_CHARS and len(a.split()) <= MAX_LABEL_WORDS
                for a in answers)
    few = len(counts) <= min(MAX_LABELS, max(2, int(n * MAX_LABEL_SHARE)))
    objects = [as_json_object(a) for a in answers]
    if kind is None:
        if short and few:
            kind = "classification"
        elif all(o is not None for o in objects):
            kind = "extraction"
        else:
            kind = "generation"
        inferred = True
    else:
        inferred = False
    if kind == "classification":
        if len(counts) < 2:
            raise UserError(f"KIND=classification: every reply is {answers[0]!r}; a "
                            "classification task needs at least two labels")
        labels = tuple(sorted(counts, key=lambda x: (-counts[x], x)))
        mix = ", ".join(f"{x} {counts[x]}" for x in labels[:8]) + (
            f", ... ({len(labels)} labels)" if len(labels) > 8 else "")
        why = (f"{len(labels)} distinct short replies over {n} rows ({mix})" if inferred
               else f"asked for (KIND=classification): {len(labels)} labels ({mix})")
        return Kind("classification", why, labels=labels)
    if kind == "extraction":
        bad = next((i for i, o in enumerate(objects) if o is None), None)
        if bad is not None:
            raise UserError(f"{rows.where(bad)}: KIND=extraction needs every reply to be one "
                            f"JSON object; this one is {answers[bad][:60]!r}")
        schema = infer_schema([o for o in objects if o is not None])
        fields = ", ".join(schema["properties"])
        why = (f"every reply is a JSON object ({n} rows; fields: {fields})" if inferred
               else f"asked for (KIND=extraction); fields: {fields}")
        return Kind("extraction", why, schema=schema)
    if kind != "generation":
        from tunebook.errors import did_you_mean
        from tunebook.evaluation.kinds import KINDS

        raise UserError(f"KIND={kind!r}: expected one of {', '.join(KINDS)}"
                        f"{did_you_mean(kind, KINDS)}")
    why = (f"free-text replies ({len(counts)} distinct over {n} rows, not a small label set "
           "and not all JSON)" if inferred else "asked for (KIND=generation)")
    return Kind("generation", why)


def infer_schema(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) every object satisfies: genson's merge of their shapes,
    fields present in all of them required, no other top-level fields allowed."""
    from genson import SchemaBuilder

    builder = SchemaBuilder(schema_uri="https://json-schema.org/draft/2020-12/schema")
    for obj in objects:
        builder.add_object(obj)
    schema = builder.to_schema()
    schema["additionalProperties"] = False
    schema.setdefault("properties", {})
    return schema
