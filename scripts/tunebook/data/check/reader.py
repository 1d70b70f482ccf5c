"""Reading rows: JSON Lines by byte ranges (any range that starts at a line start can be read on
its own, so a file is read by several processes at once), JSON array files whole.

Every problem names the line (1-based; for a ``.json`` array file, the array index). What the
reader says no to is malformed (exit 2): the codes are declared by ``checks.readable`` (and
``too-long`` for rows over ``MAX_ROW_BYTES``, by ``checks.lengths``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunebook.data import formats

MAX_ROW_BYTES = 1 << 20  # one row of 1 MiB is past any sequence_len; not worth parsing
MAX_DEPTH = 64  # JSON nesting; a chat row needs 3 levels
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.strip() strips

BAD = object()  # "could not parse" (a row may well be JSON null)


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


def parse(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def parse_value(text: str) -> tuple[Any, tuple[str, str] | None]:
    """One JSON value, or ``(BAD, (code, message))``."""
    try:
        obj = parse(text)
    except RecursionError:
        return BAD, ("too-deep", f"JSON nested deeper than Python can parse; a row needs "
                     f"at most {MAX_DEPTH} levels")
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
        return BAD, ("bad-json", f"{e.msg} at column {e.colno}{hint}")
    except ValueError as e:
        return BAD, ("bad-json", str(e))
    # Nesting needs a bracket per level: with few brackets the walk is not needed.
    if (text.count("[") + text.count("{") > MAX_DEPTH
            and _depth(obj, MAX_DEPTH) > MAX_DEPTH):
        return BAD, ("too-deep", f"JSON nested more than {MAX_DEPTH} levels; a row needs 3")
    return obj, None


class Lines:
    """The rows of one byte range of a JSON Lines file, read.

    ``entries``: ``(local line, offset, length, obj)`` per non-blank line, ``obj`` is ``BAD``
    when the line could not be read; ``problems``: ``(local line, code, message)``;
    ``too_long``: ``(local line, bytes)``; ``newlines``: the range's line count. A local line
    is 0 for the range's first line.
    """

    def __init__(self, data: bytes, start: int) -> None:
        self.entries: list[tuple[int, int, int, Any]] = []
        self.problems: list[tuple[int, str, str]] = []
        self.too_long: list[tuple[int, int]] = []
        self.newlines = data.count(b"\n")
        pos = start
        for k, raw in enumerate(data.split(b"\n")):
            offset, pos = pos, pos + len(raw) + 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw.strip():
                continue
            self.entries.append((k, offset, len(raw), self._read(k, raw)))

    def _read(self, k: int, raw: bytes) -> Any:
        if len(raw) > MAX_ROW_BYTES:
            self.too_long.append((k, len(raw)))
            self.problems.append((k, "too-long", f"row of {len(raw):,} bytes (over "
                                  f"{MAX_ROW_BYTES:,}); far past any sequence_len, Axolotl "
                                  "would drop it"))
            return BAD
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            byte = raw[e.start : e.start + 1].hex()
            self.problems.append((k, "not-utf8", f"byte 0x{byte} at column {e.start + 1} is not "
                                  "UTF-8 (Latin-1 or Windows-1252?); re-encode the file as "
                                  "UTF-8"))
            return BAD
        if "\x00" in text:
            self.problems.append((k, "nul-byte", f"NUL byte at column {text.index(chr(0)) + 1}; "
                                  "the file is binary or corrupted"))
            return BAD
        obj, problem = parse_value(text)
        if problem:
            self.problems.append((k, *problem))
        return obj


def first_byte(path: Path) -> bytes:
    """The first non-whitespace byte of the file, b"" when there is none."""
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            rest = block.lstrip(_WHITESPACE)
            if rest:
                return rest[:1]
    return b""


def first_line(path: Path) -> tuple[bytes, int]:
    """The first non-blank line (without its line break) and the file offset after it."""
    with path.open("rb") as f:
        while True:
            line = f.readline()
            if not line:
                return b"", f.tell()
            if line.strip():
                return line.rstrip(b"\n").removesuffix(b"\r"), f.tell()


def rest_is_blank(path: Path, offset: int) -> bool:
    with path.open("rb") as f:
        f.seek(offset)
        while block := f.read(1 << 20):
            if block.strip():
                return False
    return True


def detect_format(path: Path) -> str | None:
    """The format of the first readable row whose keys say one (what a file without
    ``data.format`` is checked as)."""
    with path.open("rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n").removesuffix(b"\r")
            if not raw.strip() or len(raw) > MAX_ROW_BYTES:
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if "\x00" in text:
                continue
            obj, problem = parse_value(text)
            if problem is None and formats.detect(obj):
                return formats.detect(obj)
    return None


class ArrayFile:
    """A file that starts with ``[``: a JSON array of rows, read whole. ``is_array`` is False
    when it should be read as JSON Lines after all (a ``.jsonl`` whose first row merely is an
    array); ``problems``: ``(line, code, message)``; ``items``: the rows."""

    def __init__(self, path: Path) -> None:
        self.problems: list[tuple[int, str, str]] = []
        self.items: list[Any] = []
        self.is_array = self._read(path)

    def _read(self, path: Path) -> bool:
        if path.suffix == ".jsonl":
            # Only a file that is one JSON value can be an array; when its first line parses on
            # its own, that is the case exactly when nothing but blanks follows (so a big JSON
            # Lines file whose first row is an array is never read whole).
            line, after = first_line(path)
            try:
                alone = parse(line.decode("utf-8"))
            except (ValueError, RecursionError):
                alone = BAD
            if alone is not BAD:
                if isinstance(alone, list) and rest_is_blank(path, after):
                    self._in_jsonl()
                    return True
                return False
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            if path.suffix == ".jsonl":
                return False
            line = data[: e.start].count(b"\n") + 1
            self.problems.append((line, "not-utf8", f"byte 0x{data[e.start:e.start + 1].hex()} "
                                  "is not UTF-8; re-encode the file as UTF-8"))
            return True
        if path.suffix == ".jsonl":
            try:
                whole = parse(text)
            except (ValueError, RecursionError):
                return False
            if isinstance(whole, list):
                self._in_jsonl()
                return True
            return False
        if "\x00" in text:
            self.problems.append((text[: text.index("\x00")].count("\n") + 1, "nul-byte",
                                  "NUL byte in the file"))
            return True
        obj, problem = parse_value(text)
        if problem:
            self.problems.append((1, *problem))
            return True
        if not isinstance(obj, list):
            self.problems.append((1, "not-object", "expected a JSON array of rows"))
            return True
        self.items = obj
        return True

    def _in_jsonl(self) -> None:
        self.problems.append((1, "json-array-in-jsonl", "the file is one JSON array, not JSON "
                              "Lines; write one object per line, or name it .json (HF datasets "
                              "mis-reads arrays in .jsonl)"))
