"""One writer per run (``tunebook.runlock``), without training (tier 1).

Live holders are real processes holding the real lock; holders that are gone are real processes
killed with SIGKILL, or holder records as another host (or this host before a reboot, or an
earlier attempt of a Slurm job) leaves them. The end-to-end case (a training run, a concurrent
``RESUME=last``, SIGKILL, resume) is in ``test_training_runs.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainhelp import RECIPE, manifest, scratch_repo, tb

from tunebook import runlock
from tunebook.errors import UserError
from tunebook.rundir import RunDir
from tunebook.training import launch

HOLD = """
import sys, time
from pathlib import Path
from tunebook import runlock
from tunebook.errors import UserError
with runlock.hold(Path(sys.argv[1]), "train"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(run_dir: Path) -> subprocess.Popen:
    """Another process that holds ``run_dir`` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _record(run_dir: Path, age_s: float = 0.0, **fields) -> None:
    holder = {"action": "train", "pid": 4242, "host": "gpu-node-7", "boot_id": "boot-a",
              "since": "2026-01-01 00:00:00", "slurm_job": "", **fields}
    file = run_dir / runlock.HOLDER_FILE
    file.write_text(json.dumps(holder), encoding="utf-8")
    then = time.time() - age_s
    os.utime(file, (then, then))


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(runlock.RunBusy) as info, runlock.hold(tmp_path, "eval"):
            pass
        msg = str(info.value)
        assert info.value.exit_code == 2
        assert f"`tunebook train` (pid {proc.pid} on host {socket.gethostname()}" in msg
        assert f"`kill {proc.pid}`" in msg and "one writer per run" in msg
    finally:
        _kill(proc)


def test_a_killed_holder_is_taken_over_with_a_note(tmp_path):
    proc = _holder(tmp_path)
    _kill(proc)
    notes: list[str] = []
    with runlock.hold(tmp_path, "train --resume", log=notes.append):
        held, _age = runlock.read_holder(tmp_path)
        assert held is not None and held.pid == os.getpid() and held.action == "train --resume"
    assert len(notes) == 1 and f"pid {proc.pid}" in notes[0]
    assert "killed or crashed" in notes[0] and "takes it over" in notes[0]
    assert not (tmp_path / runlock.HOLDER_FILE).exists()  # a clean release leaves no record
    with runlock.hold(tmp_path, "eval", log=notes.append):
        pass
    assert len(notes) == 1  # nothing to take over after a clean release


def test_a_holder_on_this_host_before_a_reboot_is_gone(tmp_path):
    _record(tmp_path, host=socket.gethostname(), boot_id="a-boot-before-this-one")
    notes: list[str] = []
    with runlock.hold(tmp_path, "train", log=notes.append):
        pass
    assert "rebooted since" in notes[0]


def test_a_live_holder_on_another_host_is_refused_until_its_heartbeat_is_stale(tmp_path):
    _record(tmp_path, age_s=5)
    with pytest.raises(runlock.RunBusy) as info, runlock.hold(tmp_path, "train"):
        pass
    assert "pid 4242 on host gpu-node-7" in str(info.value)
    assert "last heartbeat 5 s ago" in str(info.value)
    assert f"heartbeat is {runlock.STALE_AFTER_S:.0f} s old" in str(info.value)
    _record(tmp_path, age_s=runlock.STALE_AFTER_S + 1)
    notes: list[str] = []
    with runlock.hold(tmp_path, "train", log=notes.append):
        pass
    assert "no heartbeat from host gpu-node-7" in notes[0]


def test_a_requeued_slurm_job_takes_over_its_earlier_attempt(tmp_path, monkeypatch):
    _record(tmp_path, age_s=5, slurm_job="9001.0")
    monkeypatch.setenv("SLURM_JOB_ID", "9001")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    notes: list[str] = []
    with runlock.hold(tmp_path, "train --resume", log=notes.append):
        assert runlock.read_holder(tmp_path)[0].slurm_job == "9001.1"
    assert "Slurm requeued job 9001" in notes[0]
    monkeypatch.setenv("SLURM_JOB_ID", "9002")  # another job: the heartbeat decides
    _record(tmp_path, age_s=5, slurm_job="9001.0")
    with pytest.raises(runlock.RunBusy), runlock.hold(tmp_path, "train"):
        pass


def test_the_holder_refreshes_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.05)
    with runlock.hold(tmp_path, "train"):
        file = tmp_path / runlock.HOLDER_FILE
        os.utime(file, (time.time() - 100, time.time() - 100))
        time.sleep(0.5)
        assert runlock.read_holder(tmp_path)[1] < 5


def test_a_run_directory_that_cannot_be_locked_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("", encoding="utf-8")  # not a directory: cannot hold
    with pytest.raises(UserError) as info, runlock.hold(tmp_path / "a-file" / "run", "eval"):
        pass
    assert "cannot take its writer lock" in str(info.value) and info.value.exit_code == 2


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with runlock.hold(tmp_path, "demo"), runlock.hold(tmp_path, "eval"):
        assert runlock.read_holder(tmp_path)[0].action == "demo"
    assert not (tmp_path / runlock.HOLDER_FILE).exists()


# -- through the CLI ---------------------------------------------------------------------------

@pytest.fixture
def interrupted_run(tmp_path) -> tuple[Path, Path]:
    root = scratch_repo(tmp_path / "repo")
    run = root / "runs" / RECIPE / "20260101-000000-abcd"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": "interrupted", "overrides": []}),
                                       encoding="utf-8")
    return root, run


def test_resume_last_of_a_live_run_is_refused_and_writes_nothing(interrupted_run):
    root, run = interrupted_run
    proc = _holder(run)
    try:
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        r = tb(root, "train", "--resume", "last")
        assert r.code == 2 and "Traceback" not in r.text, r.text
        assert f"pid {proc.pid}" in r.err and "RESUME=<run dir>" in r.err
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
        assert manifest(run)["status"] == "interrupted"
    finally:
        _kill(proc)


def test_merge_of_a_run_another_process_writes_is_refused(interrupted_run):
    root, run = interrupted_run
    proc = _holder(run)
    try:
        r = tb(root, "merge", "--run", str(run))
        assert r.code == 2 and "Traceback" not in r.text, r.text
        assert "is being written by `tunebook train`" in r.err
    finally:
        _kill(proc)


def test_a_follower_node_writes_neither_the_manifest_nor_train_log(tmp_path):
    """Multi-node: node 0 records the run; node 1 runs its command and keeps its own log."""
    run = RunDir(path=tmp_path, recipe=RECIPE, run_id=tmp_path.name)
    run.axolotl_yaml.write_text("base_model: /nonexistent-base\n", encoding="utf-8")
    run.manifest_path.write_text('{"status": "running"}\n', encoding="utf-8")
    before = run.manifest_path.read_bytes()
    result = launch.run_launch(run, {}, [sys.executable, "-c", "print('rank 8 here')"],
                               echo=False, node_rank=1)
    assert result["status"] == "completed"
    assert run.manifest_path.read_bytes() == before
    assert not (tmp_path / "train.log").exists()
    assert "rank 8 here" in (tmp_path / "train.node1.log").read_text(encoding="utf-8")
