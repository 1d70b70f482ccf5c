"""Where the rows of a checked file are, not what they say: a few numbers per row.

A ``RowTable`` keeps, per non-blank line, its line number, byte offset and length (without the
line's ``\n`` and one ``\r`` before it) in the file and
whether it is valid: 25 bytes a row, so a million rows cost 25 MB. Anything that needs a row's
text again (``--fix``, near-duplicate confirmation, splits) re-reads it by offset. A ``.json``
array file has no line offsets; its rows are kept as text (``raws``), as they were read whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_BLOCK = 8 << 20  # bytes read at a time when walking rows in file order


@dataclass
class Row:
    line: int
    raw: str  # the line as read (for --fix), or the element re-serialised (JSON arrays)
    obj: Any = None
    ok: bool = True  # parsed and valid for the format


class RowTable(Sequence):
    """Line, offset, length and validity of every row of one file, in file order."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.raws: list[str] | None = None  # JSON array files: the rows' text
        self._parts: list[tuple[np.ndarray, ...]] = []
        self.line = np.zeros(0, dtype=np.int64)
        self.offset = np.zeros(0, dtype=np.int64)
        self.length = np.zeros(0, dtype=np.int64)
        self.ok = np.zeros(0, dtype=bool)

    # -- building -----------------------------------------------------------------------------
    def extend(self, line: np.ndarray, offset: np.ndarray, length: np.ndarray,
               ok: np.ndarray) -> None:
        self._parts.append((line, offset, length, ok))

    def seal(self) -> RowTable:
        if self._parts:
            cols = list(zip(*self._parts, strict=True))
            self.line, self.offset, self.length, self.ok = (
                np.concatenate([self.line, *c]) for c in
                ((x.astype(np.int64) for x in cols[0]), (x.astype(np.int64) for x in cols[1]),
                 (x.astype(np.int64) for x in cols[2]), cols[3]))
            self._parts = []
        return self

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.line)

    def __getitem__(self, i: int) -> Row:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]  # type: ignore[return-value]
        if i < 0:
            i += len(self)
        raw = self.raw_bytes([i])
        return _row(int(self.line[i]), next(raw), bool(self.ok[i]), self.raws is not None)

    def __iter__(self) -> Iterator[Row]:
        for i, raw in zip(range(len(self)), self.raw_bytes(range(len(self))), strict=True):
            yield _row(int(self.line[i]), raw, bool(self.ok[i]), self.raws is not None)

    def valid_count(self) -> int:
        return int(self.ok.sum())

    def valid_index(self) -> np.ndarray:
        """Row indices of the valid rows, in file order."""
        return np.flatnonzero(self.ok)

    def valid(self) -> list[Row]:
        return [r for r in self if r.ok]

    def raw_bytes(self, indices: Iterable[int]) -> Iterator[bytes]:
        """The raw bytes of rows ``indices`` (any order; ascending is fastest). File rows are
        read a block at a time: one read covers every next requested row that ends within
        ``_BLOCK`` bytes, so dense reads are sequential and sparse ones read only their rows.
        Array rows come from memory."""
        if self.raws is not None:
            for i in indices:
                yield self.raws[i].encode("utf-8")
            return
        assert self.path is not None
        idx = np.fromiter(indices, dtype=np.int64)
        if not len(idx):
            return
        starts, ends = self.offset[idx], self.offset[idx] + self.length[idx]
        ascending = bool(np.all(idx[1:] >= idx[:-1]))
        with self.path.open("rb") as f:
            lo = hi = 0
            block = b""
            for p in range(len(idx)):
                off, end = int(starts[p]), int(ends[p])
                if not (lo <= off and end <= hi):
                    last = int(np.searchsorted(ends, off + _BLOCK, side="right")) - 1 \
                        if ascending else p
                    lo, hi = off, max(end, int(ends[max(last, p)]))
                    f.seek(lo)
                    block = f.read(hi - lo)
                yield block[off - lo : end - lo]


def _row(line: int, raw: bytes, ok: bool, from_array: bool) -> Row:
    text = raw.decode("utf-8", "replace")
    try:
        obj = json.loads(text) if ok or from_array else json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        obj = None
    return Row(line=line, raw=text, obj=obj, ok=ok)
