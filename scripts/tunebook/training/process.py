"""The parent's side of the training process: start it, tee its output, forward interrupts.

The child runs in its own session so a Ctrl-C reaches it once, as SIGINT (Axolotl then saves its
state), and it dies with its parent even on SIGKILL (``PR_SET_PDEATHSIG``). Its whole output goes
to ``train.log``; only metric lines and errors are echoed.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from collections import deque
from pathlib import Path
from typing import Any

from tunebook import paths

LOG_FILE = "train.log"
TAIL_LINES = 30


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """If ``tunebook train`` is killed (even with SIGKILL), its Axolotl child dies too."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _echo(line: str) -> bool:
    """Lines worth showing live: logged metrics and errors; the whole log is in train.log."""
    return ("'loss'" in line or "'eval_loss'" in line or "'train_runtime'" in line
            or "Error" in line)


def execute(cmd: list[str], env: dict[str, str], log_path: Path, *,
            echo: bool = True) -> tuple[int, bool]:
    """Run ``cmd``, teeing its output into ``log_path``; Ctrl-C/SIGTERM are forwarded once as
    SIGINT so Axolotl saves its state. Returns (exit code, whether we were interrupted)."""
    interrupted = False
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=paths.ROOT, start_new_session=True,
                                preexec_fn=_die_with_parent, text=True, errors="replace",
                                bufsize=1)

        def forward(signum: int, _frame: Any) -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if echo and _echo(line):
                    print("  " + line.strip()[:160], flush=True)
            code = proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return code, interrupted


def log_tail(log_path: Path, n: int = TAIL_LINES) -> str:
    if not log_path.is_file():
        return ""
    with log_path.open(encoding="utf-8", errors="replace") as f:
        return "".join(deque(f, maxlen=n))
