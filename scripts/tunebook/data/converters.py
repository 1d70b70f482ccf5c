"""Convert other people's dataset layouts to tunebook's chat format (``{"messages": [...]}``).

Sources (``tunebook convert --from``):

- ``sharegpt``: rows ``{"conversations": [{"from": "system|human|gpt", "value": "..."}]}``,
  as a JSON array or JSON Lines. ``human`` -> user, ``gpt`` -> assistant.
- ``alpaca``: rows ``{"instruction", "input" (optional), "output", "system" (optional)}`` as a
  JSON array (the Stanford Alpaca file) or JSON Lines. The user turn is the instruction, then a
  blank line and the input when the input is not empty.
- ``openai``: OpenAI chat fine-tuning JSONL ``{"messages": [{"role", "content", "name"?,
  "weight"?}]}``. ``name`` is dropped; ``weight`` is kept; tool/function turns are refused
  (tunebook's chat format has no tool role).
- ``csv``: one conversation per row, a header naming the columns (case-insensitive):
  ``system`` (optional), ``user`` (aliases ``prompt``, ``instruction``, ``question``,
  ``input``), ``assistant`` (aliases ``response``, ``completion``, ``output``, ``answer``).

The input file is only read. Every bad row is named as ``file:line`` (JSON arrays: the array
index) in one ``UserError``; nothing is written unless the whole file converts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError, did_you_mean

SOURCES = ("sharegpt", "alpaca", "openai", "csv")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant"}
CSV_COLUMNS = {
    "system": ("system",),
    "user": ("user", "prompt", "instruction", "question", "input"),
    "assistant": ("assistant", "response", "completion", "output", "answer"),
}
MAX_PROBLEMS = 10


class _Problems:
    """Collects ``file:line: message`` problems and raises them as one UserError."""

    def __init__(self, path: Path):
        self.name = paths.rel(path)
        self.items: list[str] = []
        self.total = 0

    def add(self, line: int, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(f"{self.name}:{line}: {message}")

    def raise_if_any(self, source: str) -> None:
        if not self.items:
            return
        more = f"\n… and {self.total - len(self.items)} more" if self.total > len(self.items) \
            else ""
        raise UserError(f"cannot convert {self.name} from {source}: {self.total} bad rows\n"
                        + "\n".join(self.items) + more)


def _records(path: Path, problems: _Problems) -> Iterator[tuple[int, Any]]:
    """(line or array index, parsed value) of a JSON array or JSON Lines file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{paths.rel(path)}: cannot read it ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        byte = data[e.start : e.start + 1].hex()
        raise UserError(f"{paths.rel(path)}:{line}: not UTF-8 (byte 0x{byte}); re-encode the "
                        "file as UTF-8") from None
    if not text.strip():
        raise UserError(f"{paths.rel(path)}: the file is empty")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            line = getattr(e, "lineno", 1)
            raise UserError(f"{paths.rel(path)}:{line}: not valid JSON "
                            f"({getattr(e, 'msg', 'nested too deep')})") from None
        if not isinstance(items, list):
            raise UserError(f"{paths.rel(path)}: expected a JSON array of rows")
        yield from enumerate(items)
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            problems.add(n, f"not valid JSON ({getattr(e, 'msg', 'nested too deep')})")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def from_sharegpt(path: Path) -> list[dict]:
    return [row for _line, row in _numbered("sharegpt", path)]


def _sharegpt(path: Path, problems: _Problems) -> Iterator[tuple[int, dict]]:
    for line, row in _records(path, problems):
        conv = row.get("conversations") if isinstance(row, dict) else None
        if not isinstance(conv, list) or not conv:
            keys = sorted(row)[:5] if isinstance(row, dict) else type(row).__name__
            problems.add(line, f"expected a non-empty 'conversations' list, got {keys}")
            continue
        msgs, bad = [], False
        for k, turn in enumerate(conv):
            who = turn.get("from") if isinstance(turn, dict) else None
            value = turn.get("value") if isinstance(turn, dict) else None
            if who not in SHAREGPT_ROLES:
                problems.add(line, f"conversations/{k}: 'from' is {who!r}; expected one of "
                             f"{', '.join(SHAREGPT_ROLES)}{did_you_mean(str(who), SHAREGPT_ROLES)}")
                bad = True
                break
            if not isinstance(value, str):
                problems.add(line, f"conversations/{k}: 'value' must be a string")
                bad = True
                break
            msgs.append({"role": SHAREGPT_ROLES[who], "content": value})
        if not bad:
            yield line, {"messages": msgs}


def to_sharegpt(rows: list[dict]) -> list[dict]:
    """The inverse of ``from_sharegpt`` (for round-trip tests and for exporting)."""
    back = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"conversations": [{"from": back[m["role"]], "value": m["content"]}
                               for m in r["messages"]]} for r in rows]


def from_alpaca(path: Path) -> list[dict]:
    return [row for _line, row in _numbered("alpaca", path)]


def _alpaca(path: Path, problems: _Problems) -> Iterator[tuple[int, dict]]:
    for line, row in _records(path, problems):
        if not isinstance(row, dict):
            problems.add(line, f"expected an object, got {type(row).__name__}")
            continue
        missing = [k for k in ("instruction", "output") if not _text(row.get(k))]
        if missing:
            problems.add(line, f"'{missing[0]}' is missing or empty; Alpaca rows need "
                         "instruction and output")
            continue
        inp = row.get("input") or ""
        if not isinstance(inp, str):
            problems.add(line, "'input' must be a string")
            continue
        user = row["instruction"] + (f"\n\n{inp}" if inp.strip() else "")
        msgs = [{"role": "system", "content": row["system"]}] if _text(row.get("system")) else []
        msgs += [{"role": "user", "content": user},
                 {"role": "assistant", "content": row["output"]}]
        yield line, {"messages": msgs}


def from_openai(path: Path) -> list[dict]:
    return [row for _line, row in _numbered("openai", path)]


def _openai(path: Path, problems: _Problems) -> Iterator[tuple[int, dict]]:
    for line, row in _records(path, problems):
        msgs = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(msgs, list) or not msgs:
            problems.add(line, "expected a non-empty 'messages' list (OpenAI chat format)")
            continue
        clean, bad = [], False
        for k, m in enumerate(msgs):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ("system", "user", "assistant"):
                problems.add(line, f"messages/{k}: role {role!r} is not system, user or "
                             "assistant (tool and function turns are not supported)")
                bad = True
                break
            if not isinstance(m.get("content"), str):
                problems.add(line, f"messages/{k}: 'content' must be a string (function_call "
                             "and multi-part content are not supported)")
                bad = True
                break
            msg = {"role": role, "content": m["content"]}
            if "weight" in m:
                msg["weight"] = m["weight"]
            clean.append(msg)
        if not bad:
            yield line, {"messages": clean}


def from_csv(path: Path) -> list[dict]:
    return [row for _line, row in _numbered("csv", path)]


def _csv(path: Path, problems: _Problems, text_column: str | None = None,
         label_column: str | None = None) -> Iterator[tuple[int, dict]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise UserError(f"{paths.rel(path)}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{paths.rel(path)}: not UTF-8; re-encode the CSV as UTF-8") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        raise UserError(f"{paths.rel(path)}:1: no header row; expected columns user and "
                        "assistant (optional system)")
    names = {role: aliases for role, aliases in CSV_COLUMNS.items()}
    if text_column or label_column:  # the classification layout: text,label (or named columns)
        names = {"user": (text_column or "text",), "assistant": (label_column or "label",)}
        names["system"] = ()
    cols: dict[str, str] = {}
    for role, aliases in names.items():
        for name in aliases:
            if name.lower() in header:
                cols[role] = (reader.fieldnames or [])[header.index(name.lower())]
                break
    for role in ("user", "assistant"):
        if role not in cols and (text_column or label_column):
            column = (text_column or "text") if role == "user" else (label_column or "label")
            raise UserError(f"{paths.rel(path)}:1: no {column!r} column; the header is: "
                            f"{', '.join(reader.fieldnames or [])} (name the columns with "
                            "TEXT= and LABEL=)")
        if role not in cols:
            raise UserError(f"{paths.rel(path)}:1: no '{role}' column (header: "
                            f"{', '.join(reader.fieldnames or [])}); accepted names: "
                            f"{', '.join(CSV_COLUMNS[role])}")
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                problems.add(line, f"{len(row[None])} more cells than header columns")
                continue
            user, assistant = row.get(cols["user"]), row.get(cols["assistant"])
            if not _text(user) or not _text(assistant):
                which = "user" if not _text(user) else "assistant"
                problems.add(line, f"empty {which} cell (column {cols[which]!r})")
                continue
            msgs = []
            if "system" in cols and _text(row.get(cols["system"])):
                msgs.append({"role": "system", "content": row[cols["system"]]})
            msgs += [{"role": "user", "content": user},
                     {"role": "assistant", "content": assistant.strip()
                      if text_column or label_column else assistant}]
            yield line, {"messages": msgs}
    except csv.Error as e:
        raise UserError(f"{paths.rel(path)}:{reader.line_num}: bad CSV ({e})") from None


CONVERTERS = {"sharegpt": from_sharegpt, "alpaca": from_alpaca, "openai": from_openai,
              "csv": from_csv}
_READERS = {"sharegpt": _sharegpt, "alpaca": _alpaca, "openai": _openai, "csv": _csv}


def _numbered(source: str, path: Path, **columns: str | None) -> list[tuple[int, dict]]:
    problems = _Problems(path)
    rows = list(_READERS[source](path, problems, **columns))
    problems.raise_if_any(source)
    return rows


def read_rows(source: str, path: Path, *, text_column: str | None = None,
              label_column: str | None = None) -> list[tuple[int, dict]]:
    """``(line, chat row)`` of every row of ``path`` (``line``: the row's line in the file, or
    its index in a JSON array), converted from ``source``; one ``UserError`` naming every bad
    row. A CSV with ``text_column``/``label_column`` is read as classification rows (the text
    asks, the label answers)."""
    if source not in _READERS:
        raise UserError(f"FROM={source!r}: expected one of {', '.join(SOURCES)}"
                        f"{did_you_mean(source, SOURCES)}")
    columns = {"text_column": text_column, "label_column": label_column} if source == "csv" \
        else {}
    return _numbered(source, path, **columns)


def convert(source: str, path: Path, out: Path) -> int:
    """Convert ``path`` to chat JSONL at ``out``; returns the number of rows written."""
    if source not in CONVERTERS:
        raise UserError(f"--from {source!r}: expected one of {', '.join(SOURCES)}"
                        f"{did_you_mean(source, SOURCES)}")
    if not path.is_file():
        raise UserError(f"--data {path}: no such file")
    if out.resolve() == path.resolve():
        raise UserError(f"--out {out}: that is the input file; name a new file (tunebook never "
                        "edits data in place)")
    rows = CONVERTERS[source](path)
    if not rows:
        raise UserError(f"{paths.rel(path)}: no rows to convert")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return len(rows)
