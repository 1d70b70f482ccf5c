"""One writer per run directory: a lock held for as long as a process writes the run.

Training, resume, evaluation and merge write a run's ``manifest.json``, ``output/`` and ``eval/``;
two of them at once overwrite each other. Each takes ``hold(run_dir, action)`` first; a second
writer is refused at once (``RunBusy``, exit 2) with the holder's pid, host and what to do.

Decision: the lock is ``filelock.FileLock`` (``fcntl.flock`` on ``<run>/run.lock``), from the
well-kept ``filelock`` package, plus a holder record beside it (``<run>/run.lock.json``: action,
pid, host, boot id, start time, Slurm job) whose modification time is a heartbeat.

- Same host: the kernel releases a flock when its process dies (killed, crashed, even SIGKILL)
  and a reboot forgets it, so a lock we can take means the last holder is gone; a holder record
  left behind says who it was, and the new writer takes over with a note.
- Other hosts: ``flock`` is host-local on some shared file systems (Lustre ``localflock``, NFS
  mounted ``local_lock=flock``) and coherent on others (NFS with byte-range locks, GPFS). So a
  record written by another host counts as live while its heartbeat is fresh: the holder
  touches it every ``HEARTBEAT_S`` seconds and another host takes it over only after
  ``STALE_AFTER_S`` seconds without one (room for NFS attribute caching, ~60 s, and clock skew).
  A Slurm requeue is the exception: a new attempt of the same job (same ``SLURM_JOB_ID``, another
  ``SLURM_RESTART_COUNT``) takes over at once, since Slurm ended the previous attempt.
- Multi-node training (``tunebook.training.distributed``): node 0 holds the lock; the other
  nodes run the same ``tunebook train`` as followers of node 0's job (same rendezvous id), take
  no lock and write neither the manifest nor ``train.log``. The files they do write (checkpoint
  shards of their ranks) are written by torch.distributed ranks of that one job, in collective
  checkpoint saves, so the run still has one writer: the job.
- A file system without ``flock`` (``ENOSYS``): ``filelock`` falls back to its soft lock (an
  exclusive marker file naming pid and host; a contender on the same host removes it once that
  process is gone, a marker another host left stays until someone deletes ``run.lock``).

Re-entrant within one process (``demo`` trains, then evaluates, then merges the same run).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import filelock

from tunebook import paths
from tunebook.errors import UserError

LOCK_FILE = "run.lock"
HOLDER_FILE = "run.lock.json"
HEARTBEAT_S = 20.0  # the holder touches HOLDER_FILE this often
STALE_AFTER_S = 120.0  # another host takes over a record this long without a heartbeat

_HELD: dict[Path, int] = {}  # runs this process holds -> nesting depth


class RunBusy(UserError):
    """Another process is writing the run (exit 2: nothing was done, the input was fine but
    conflicts with a live writer)."""


@dataclass(frozen=True)
class Holder:
    action: str
    pid: int
    host: str
    boot_id: str
    since: str
    slurm_job: str = ""  # "<SLURM_JOB_ID>.<SLURM_RESTART_COUNT>" inside a Slurm job

    def describe(self) -> str:
        return f"`tunebook {self.action}` (pid {self.pid} on host {self.host}, since {self.since})"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _slurm_job() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}.{os.environ.get('SLURM_RESTART_COUNT', '0')}" if job else ""


def this_process(action: str) -> Holder:
    return Holder(action=action, pid=os.getpid(), host=socket.gethostname(), boot_id=_boot_id(),
                  since=time.strftime("%Y-%m-%d %H:%M:%S"), slurm_job=_slurm_job())


def read_holder(run_dir: Path) -> tuple[Holder | None, float]:
    """The holder record of ``run_dir`` and the seconds since its last heartbeat."""
    file = run_dir / HOLDER_FILE
    try:
        age = time.time() - file.stat().st_mtime
        data = json.loads(file.read_text(encoding="utf-8"))
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__ if k in data}), age
    except (OSError, ValueError, TypeError):
        return None, 0.0


def gone(previous: Holder, age: float, me: Holder) -> str | None:
    """Why ``previous`` (whose record we found while we could take the flock) no longer writes
    the run, or ``None`` when it may still be alive on another host."""
    if previous.host == me.host:
        if previous.boot_id and me.boot_id and previous.boot_id != me.boot_id:
            return f"host {me.host} rebooted since"
        return "its process ended without releasing it (killed or crashed)"
    job, _, attempt = previous.slurm_job.partition(".")
    my_job, _, my_attempt = me.slurm_job.partition(".")
    if job and job == my_job and attempt != my_attempt:
        return f"Slurm requeued job {job}: its earlier attempt has ended"
    if age >= STALE_AFTER_S:
        return f"no heartbeat from host {previous.host} for {age:.0f} s"
    return None


def _refusal(run_dir: Path, holder: Holder | None, age: float, hint: str) -> RunBusy:
    if holder is None:  # the flock is held, its record not written yet (or removed by hand)
        who, stop, other = "another tunebook process", "stop it", ""
    else:
        who = holder.describe()
        stop = f"stop it (Ctrl-C in its terminal, or `kill {holder.pid}` on {holder.host})"
        other = "" if holder.host == socket.gethostname() else (
            f", last heartbeat {age:.0f} s ago; if host {holder.host} is down, retry once its "
            f"heartbeat is {STALE_AFTER_S:.0f} s old")
    return RunBusy(f"{paths.rel(run_dir)}/ is being written by {who}{other}; one writer per "
                   f"run: wait for it to finish, or {stop} and run this again"
                   f"{'; ' + hint if hint else ''}")


def _write_holder(run_dir: Path, holder: Holder) -> None:
    tmp = run_dir / f".{HOLDER_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(holder), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / HOLDER_FILE)


class _Heartbeat(threading.Thread):
    """Touches the holder record every ``HEARTBEAT_S`` seconds until stopped."""

    def __init__(self, file: Path) -> None:
        super().__init__(name="tunebook-run-lock-heartbeat", daemon=True)
        self.file = file
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.file)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


@contextlib.contextmanager
def hold(run_dir: Path, action: str, *, hint: str = "",
         log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold ``run_dir`` for writing while the block runs; refuse (``RunBusy``) if another process
    writes it, take it over with a note if its last holder is gone. ``hint`` ends a refusal
    (e.g. how to pick another run)."""
    key = Path(run_dir).resolve()
    if key in _HELD:  # this process already holds it
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    me = this_process(action)
    lock = filelock.FileLock(str(key / LOCK_FILE), thread_local=False)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        holder, age = read_holder(key)
        raise _refusal(key, holder, age, hint) from None
    except OSError as e:  # a read-only or vanished run directory
        raise UserError(f"{paths.rel(key)}/: cannot take its writer lock ({LOCK_FILE}: "
                        f"{e.strerror}); `tunebook {action}` writes into the run directory, "
                        "so it must exist and be writable") from None
    try:
        previous, age = read_holder(key)
        if previous is not None:
            why = gone(previous, age, me)
            if why is None:
                raise _refusal(key, previous, age, hint)
            log(f"note: {paths.rel(key)}/ was held by {previous.describe()}, which is gone "
                f"({why}); {me.describe()} takes it over")
        _write_holder(key, me)
    except BaseException:
        lock.release()
        raise
    beat = _Heartbeat(key / HOLDER_FILE)
    beat.start()
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        beat.stop()
        with contextlib.suppress(OSError):
            (key / HOLDER_FILE).unlink()  # a clean release leaves no record to take over
        lock.release()


F = TypeVar("F", bound=Callable[..., Any])


def writes_run(action: str) -> Callable[[F], F]:
    """Decorate a function whose first argument is a ``RunDir``: it runs holding that run."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(run: Any, *args: Any, **kwargs: Any) -> Any:
            with hold(run.path, action):
                return fn(run, *args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate
