"""Worker processes: one per core, started from a clean server process (``forkserver``), never
as a fork of a process that may hold threads; and an ordered map over them with a bounded queue,
so results come back in task order whatever the number of workers."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

CHUNK_BYTES = 8 << 20  # one worker task: ~10k rows of a typical SFT set
POOL_MIN_BYTES = 32 << 20  # smaller files are checked in this process (no start-up cost)
_INFLIGHT = 2  # tasks queued per worker


def workers() -> int:
    return len(os.sched_getaffinity(0))


def make_pool(initializer: Callable | None = None, initargs: tuple = ()) -> Executor | None:
    """A process pool of one worker per core (None on one core). Workers start from a clean
    server process (``forkserver``), never as a fork of a process that may hold threads."""
    n = workers()
    if n < 2:
        return None
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(["tunebook.data.checks"])
    return ProcessPoolExecutor(max_workers=n, mp_context=mp, initializer=initializer,
                               initargs=initargs)


def ordered_map(pool: Executor | None, fn: Callable, tasks: Iterable[Any]) -> Iterator[Any]:
    """``map(fn, tasks)`` in order, on ``pool`` when there is one, with a bounded queue."""
    if pool is None:
        yield from map(fn, tasks)
        return
    pending: deque = deque()
    limit = _INFLIGHT * workers()
    for task in tasks:
        pending.append(pool.submit(fn, task))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class Pools:
    """The worker pool of one check run, started only when a file is big enough."""

    def __init__(self) -> None:
        self._pool: Executor | None = None
        self._started = False

    def get(self, size: int) -> Executor | None:
        if size < POOL_MIN_BYTES:
            return None
        if not self._started:
            self._pool, self._started = make_pool(), True
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
