"""make lock-env / make lock-check-env (scripts/env/locks.py), offline.

The tool runs for real (real uv, real resolution) against a fake project whose find-links
folder mimics the index where it matters: torch 2.13.0 needs triton 3.7.1. The check of the
committed locks against the real index is `make lock-check-env` itself, which CI runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from envhelp import ROOT, fake_project, offline_env

sys.path.insert(0, str(ROOT / "scripts" / "env"))
import locks  # noqa: E402


def run_locks(proj: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(proj / "scripts/env/locks.py"), *args,
                           "--root", str(proj)],
                          capture_output=True, text=True, env=offline_env(tmp), timeout=300)


@pytest.fixture
def locked(tmp_path: Path) -> tuple[Path, Path]:
    """The fake project with its locks compiled."""
    proj = fake_project(tmp_path)
    done = run_locks(proj, tmp_path, "compile")
    assert done.returncode == 0, done.stderr
    return proj, tmp_path


def test_compile_writes_hashed_locks_for_each_extra(locked):
    proj, _ = locked
    base = locks.pins(proj / "requirements.lock")
    gpu = locks.pins(proj / "requirements-gpu.lock")
    assert base == {"torch": "2.13.0", "triton": "3.7.1", "hjson": "3.1.0"}
    assert gpu == {**base, "deepspeed": "0.18.9"}
    assert locks.pins(proj / "requirements-bootstrap.lock") == {"uv": "0.13.9"}
    text = (proj / "requirements.lock").read_text()
    assert text.count("--hash=sha256:") == 3
    assert "make lock-env" in text


def test_check_passes_on_fresh_consistent_locks(locked):
    proj, tmp = locked
    done = run_locks(proj, tmp, "check")
    assert done.returncode == 0, done.stderr
    assert "resolve for Linux x86_64" in done.stdout and "match pyproject.toml" in done.stdout


def test_check_names_the_conflict_of_an_inconsistent_pin(locked):
    """The bug this check exists for: a lock frozen beside a CPU torch pins triton 3.9.0,
    which the index's torch 2.13.0 cannot install with."""
    proj, tmp = locked
    lock = proj / "requirements.lock"
    lock.write_text(lock.read_text().replace("triton==3.7.1", "triton==3.9.0"))
    done = run_locks(proj, tmp, "check")
    assert done.returncode == 1
    err = done.stderr
    assert "requirements.lock: does not resolve for Linux x86_64" in err
    assert re.search(r"torch==2\.13\.0 depends on triton\S*==3\.7\.1", err), err
    assert "triton==3.9.0" in err
    assert "Traceback" not in err


def test_check_catches_a_lock_left_stale_by_a_pyproject_edit(locked):
    proj, tmp = locked
    pyproject = proj / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('["torch==2.13.0"]',
                                                       '["torch==2.13.0", "sacrebleu"]'))
    done = run_locks(proj, tmp, "check")
    assert done.returncode == 1
    assert "requirements.lock: stale against pyproject.toml (run `make lock-env`)" in done.stderr
    assert "+ sacrebleu==2.6.0" in done.stderr
    assert "requirements-gpu.lock: stale" in done.stderr


def test_check_refuses_a_lock_without_hashes(locked):
    proj, tmp = locked
    bare = proj / "bare.lock"
    bare.write_text("torch==2.13.0\ntriton==3.7.1\n")
    done = run_locks(proj, tmp, "check", "--lock", str(bare))
    assert done.returncode == 1
    assert "bare.lock: does not resolve" in done.stderr and "hash" in done.stderr


def test_missing_lock_is_bad_input(locked):
    proj, tmp = locked
    done = run_locks(proj, tmp, "check", "--lock", str(proj / "nope.lock"))
    assert done.returncode == 2
    assert done.stderr.strip() == ("lock-check-env: nope.lock: no such lock file "
                                   "(make lock-env writes the locks)")


# The committed locks themselves (static: the real-index check is make lock-check-env).

def test_committed_locks_carry_the_index_cuda_torch_stack():
    base = locks.pins(ROOT / "requirements.lock")
    assert base["torch"] == "2.13.0"  # no +cpu local tag: the index's CUDA wheel
    assert any(n.startswith("nvidia-cudnn") for n in base), "CUDA libraries missing"
    text = (ROOT / "requirements.lock").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if "==" in block.split("\n")[0]:
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_gpu_lock_is_the_base_lock_plus_the_gpu_extra():
    base = locks.pins(ROOT / "requirements.lock")
    gpu = locks.pins(ROOT / "requirements-gpu.lock")
    assert {n: gpu.get(n) for n in base} == base
    assert "deepspeed" in gpu and "deepspeed" not in base


def test_bootstrap_lock_pins_uv_alone_with_hashes():
    text = (ROOT / "requirements-bootstrap.lock").read_text()
    assert list(locks.pins(ROOT / "requirements-bootstrap.lock")) == ["uv"]
    assert "--hash=sha256:" in text
    assert "uv" not in locks.pins(ROOT / "requirements.lock")  # pip must manage without it
