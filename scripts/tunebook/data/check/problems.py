"""Problems and the bounded lists that hold them.

A ``Spill`` list holds up to ``SPILL_AT`` items in memory and moves the rest to an anonymous
temporary file (deleted when the list goes), so a million broken rows cost disk, not RAM.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

SPILL_AT = 100_000  # items of one list kept in memory; the rest go to a temporary file


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


class Spill:
    """An append-only list that keeps its first ``SPILL_AT`` items in memory and pickles the
    rest, in batches, to an anonymous temporary file. Iterates in append order."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._head: list[Any] = []
        self._batch: list[Any] = []
        self._file: Any = None
        self._n = 0
        self.extend(items)

    def append(self, item: Any) -> None:
        self._n += 1
        if len(self._head) < SPILL_AT:
            self._head.append(item)
            return
        self._batch.append(item)
        if len(self._batch) >= 10_000:
            self._flush()

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.append(item)

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the list
        self._file.seek(0, 2)
        pickle.dump(self._batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._batch = []

    def __iter__(self) -> Iterator[Any]:
        yield from self._head
        if self._file is not None:
            self._flush()
            end = self._file.seek(0, 2)
            pos = 0
            while pos < end:
                self._file.seek(pos)
                batch = pickle.load(self._file)
                pos = self._file.tell()
                yield from batch
        yield from list(self._batch)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, int) and 0 <= i < len(self._head):
            return self._head[i]
        return list(self)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Spill | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other,
                                                                          strict=True))
        return NotImplemented

    def __repr__(self) -> str:
        return f"Spill({len(self)} items)"

    def __getstate__(self) -> dict:
        return {"items": list(self)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["items"])
