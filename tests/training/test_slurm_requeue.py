"""A real Slurm cluster runs the rendered ``tunebook sbatch`` script, requeues it, and the
requeued job resumes the same run from its checkpoint.

Real parts only: Debian's slurm-wlm and munge on this machine (``scripts/ci/slurm-up.sh``; the
session fixture starts them when no cluster answers and stops what it started), the real
``sbatch``/``scontrol``, and inside the job the real ``tunebook train`` and Axolotl on the
embedded CPU recipe, cut to a few steps. Skipped only where ``sbatch`` is absent, except in CI
(``CI`` set), where that fails: ``.ci/run`` installs Slurm with ``make setup-system``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from trainhelp import RECIPE, env_for, manifest, scratch_repo, tb

from clihelp import ROOT
from tunebook.training.checkpoints import last_complete_checkpoint

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_UP = ROOT / "scripts" / "ci" / "slurm-up.sh"
# The embedded CPU recipe cut to 24 steps, validated and checkpointed every 4 (and never stopped
# early): long enough to requeue the job after its first checkpoint, short enough for CI.
STEPS = 24
OVERRIDES = (f"+axolotl.max_steps={STEPS} axolotl.eval_steps=4 axolotl.save_steps=4 "
             "axolotl.early_stopping_patience=100 axolotl.logging_steps=1")
WAIT_S = 600  # per phase; a phase ends as soon as its condition holds


def _answers() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    return "is UP" in ping.stdout and nodes.stdout.strip() in ("idle", "mixed", "allocated")


@pytest.fixture(scope="session")
def slurm_cluster():
    if shutil.which("sbatch") is None:
        if os.environ.get("CI"):  # .ci/run installs Slurm: never a silent skip there
            pytest.fail("CI without sbatch: `make setup-system` did not install slurm-wlm")
        pytest.skip("Slurm is not installed (no sbatch): `make setup-system` installs it")
    if _answers():
        yield
        return
    up = subprocess.run([str(SLURM_UP)], capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield
    finally:
        subprocess.run([str(SLURM_UP), "down"], capture_output=True, text=True, timeout=120)


def _job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                         text=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def _logs(root: Path, job_id: str, tail: int | None = 4000) -> str:
    """The job's stdout and stderr (both attempts append to them); the last ``tail`` chars of
    each for a failure message."""
    logs = root / "runs" / RECIPE / "slurm-logs"
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-(tail or 0):]}"
                     for p in sorted(logs.glob(f"*-{job_id}.*")))


def _wait(predicate, what: str, root: Path, job_id: str, *, ended_ok: bool = False) -> None:
    t0 = time.time()
    while time.time() - t0 < WAIT_S:
        if predicate():
            return
        state = _job(job_id).get("JobState", "")
        if not ended_ok and state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                      "NODE_FAIL", "OUT_OF_MEMORY"):
            raise AssertionError(f"job {job_id} ended ({state}) before {what}\n"
                                 f"{_logs(root, job_id)}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}; job "
                         f"{_job(job_id)}\n{_logs(root, job_id)}")


def test_a_requeued_sbatch_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    root = scratch_repo(tmp_path / "repo")
    script = root / "runs" / "job.sh"
    rendered = tb(root, "sbatch", "--overrides", OVERRIDES, "--out", str(script))
    assert rendered.code == 0, rendered.text
    assert "CPU only" in rendered.out
    assert "--gpus-per-node=" not in script.read_text()  # a CPU job asks for no GPU gres

    submit = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True,
                            text=True, env=env_for(root), cwd=root)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    run = root / "runs" / RECIPE / f"slurm-{job_id}"
    try:
        _wait(lambda: last_complete_checkpoint(run / "output") is not None,
              "the first complete checkpoint", root, job_id)
        at_requeue = last_complete_checkpoint(run / "output")
        assert at_requeue is not None
        first_step = int(at_requeue.name.split("-")[1])
        assert first_step < STEPS, "the run finished before it could be requeued"
        requeue = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
        assert requeue.returncode == 0, requeue.stderr
        # Slurm holds a requeued job ~120 s (reason BeginTime); make it eligible now.
        _wait(lambda: _job(job_id).get("JobState") == "PENDING", "the job to be requeued",
              root, job_id, ended_ok=True)
        update = subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                                capture_output=True, text=True)
        assert update.returncode == 0, update.stderr
        _wait(lambda: _job(job_id).get("JobState") in ("COMPLETED", "FAILED"),
              "the requeued job to finish", root, job_id, ended_ok=True)
        job = _job(job_id)
        assert job["JobState"] == "COMPLETED", f"{job}\n{_logs(root, job_id)}"
        assert job["Restarts"] == "1" and job["ExitCode"] == "0:0", job
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)

    log = _logs(root, job_id, tail=None)
    assert f"attempt 2 of job {job_id}: resuming" in log, log
    m = manifest(run)
    assert m["status"] == "completed", m
    assert m["resumes"] == 1 and m["previous_status"] != "completed", m
    resumed = Path(m["resumed_from"])
    assert resumed.parent == run / "output", m["resumed_from"]
    resumed_step = int(resumed.name.split("-")[1])
    assert resumed_step >= first_step  # the checkpoint that existed at requeue, or a later one
    assert m["metrics"]["steps"] == STEPS > resumed_step  # continued past it to the end
    final = last_complete_checkpoint(run / "output")
    assert final is not None and final.name == f"checkpoint-{STEPS}"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    mlflow_runs = [r for e in client.search_experiments() for r in
                   client.search_runs([e.experiment_id])]
    assert [r.info.run_id for r in mlflow_runs] == [m["mlflow_run_id"]]  # one run, resumed
    assert mlflow_runs[0].info.status == "FINISHED"
    steps = [p.step for p in client.get_metric_history(m["mlflow_run_id"], "loss")]
    assert min(steps) <= first_step and max(steps) > resumed_step, steps  # both attempts
