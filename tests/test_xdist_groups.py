"""`make test` runs the suite with `pytest -n 2 --dist loadgroup`: tests marked with one
`xdist_group` (the demo, the training runs, the env set-up) share files such as the repository's
runs/ and must run on one worker, one after another. pytest-xdist has silently stopped grouping
before (pytest 9.2's structured node ids, pytest-xdist issue #1386); this runs the installed
pair on a small suite and checks that a group stays on one worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED = '''
import os
import pytest

pytestmark = pytest.mark.xdist_group("shared")


@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    with open(os.environ["WORKERS_FILE"], "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
'''

LOOSE = '''
import time
import pytest


@pytest.mark.parametrize("i", range(6))
def test_loose(i):
    time.sleep(0.05)
'''


def test_an_xdist_group_runs_on_one_worker(tmp_path: Path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_loose.py").write_text(LOOSE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    workers_file = tmp_path / "workers"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                           "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'tmp'}",
                           f"--rootdir={tmp_path}", "-c", str(tmp_path / "pytest.ini"),
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "WORKERS_FILE": str(workers_file)}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    workers = workers_file.read_text().split()
    assert len(workers) == 6
    assert len(set(workers)) == 1, f"one xdist_group ran on workers {sorted(set(workers))}"
