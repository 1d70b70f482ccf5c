"""make setup / make setup-gpu (Makefile + scripts/env/setup.sh + uv.sh), offline.

The real Makefile and scripts build a real venv for a fake project from locks that
scripts/env/locks.py writes over a find-links folder of tiny wheels (envhelp).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from envhelp import fake_project, make_wheel, offline_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "env"))
import locks  # noqa: E402

pytestmark = pytest.mark.xdist_group("env-setup")


def make(proj: Path, env: dict[str, str], *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *targets], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    proj = fake_project(tmp_path)
    env = offline_env(tmp_path)
    done = subprocess.run([sys.executable, "scripts/env/locks.py", "compile", "--root", "."],
                          cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return proj, env


def installed(proj: Path) -> dict[str, str]:
    out = subprocess.run([str(proj / ".venv/bin/python"), "-m", "pip", "list",
                          "--format=freeze"], capture_output=True, text=True, check=True)
    return dict(line.lower().split("==") for line in out.stdout.split())


def test_setup_installs_the_lock_with_uv_and_a_second_run_is_a_no_op(project):
    proj, env = project
    first = make(proj, env, "setup")
    assert first.returncode == 0, first.stderr
    assert re.search(r"setup: uv \(uv [0-9.]+.*\) installs requirements.lock into .venv, "
                     r"hash-checked", first.stdout), first.stdout
    assert "setup: done with uv in" in first.stdout
    got = installed(proj)
    assert got["torch"] == "2.13.0" and got["triton"] == "3.7.1"
    assert "deepspeed" not in got  # no GPU here: the gpu extra is not installed
    again = make(proj, env, "setup")
    assert again.returncode == 0
    assert again.stdout.strip() == "make: Nothing to be done for 'setup'."


def pycs(proj: Path, package: str) -> list[Path]:
    site = next((proj / ".venv/lib").glob("python3*/site-packages"))
    return list((site / package).rglob("*.pyc"))


def test_bytecode_is_left_to_python_unless_it_may_not_write_any(project):
    proj, env = project
    lazy = make(proj, env, "setup")
    assert lazy.returncode == 0 and "compiling bytecode" not in lazy.stdout
    assert pycs(proj, "torch") == []
    shutil.rmtree(proj / ".venv")
    eager = make(proj, {**env, "PYTHONDONTWRITEBYTECODE": "1"}, "setup")
    assert eager.returncode == 0, eager.stderr
    assert "compiling bytecode (PYTHONDONTWRITEBYTECODE is set)" in eager.stdout
    assert [p.name for p in pycs(proj, "torch")] == ["__init__.cpython-311.pyc"]


def test_setup_gpu_adds_the_gpu_extra_then_setup_stays_a_no_op(project):
    proj, env = project
    assert make(proj, env, "setup").returncode == 0
    gpu = make(proj, env, "setup-gpu")
    assert gpu.returncode == 0, gpu.stderr
    assert "installs requirements-gpu.lock" in gpu.stdout
    assert installed(proj)["deepspeed"] == "0.18.9"
    assert make(proj, env, "setup").stdout.strip() == "make: Nothing to be done for 'setup'."
    assert make(proj, env, "setup-gpu").stdout.strip() == (
        "make: Nothing to be done for 'setup-gpu'.")


def test_a_changed_lock_reinstalls(project):
    proj, env = project
    assert make(proj, env, "setup").returncode == 0
    lock = proj / "requirements.lock"
    lock.write_text(lock.read_text() + "\n")
    assert "installs requirements.lock" in make(proj, env, "setup").stdout


def test_a_venv_filled_outside_the_lock_is_reinstalled_from_it(project, tmp_path):
    """An older setup's venv (pip, torch 2.13.0+cpu from another index): uv takes the local
    version as satisfying torch==2.13.0 but has no hash for it; setup reinstalls from the lock."""
    proj, env = project
    subprocess.run([sys.executable, "-m", "venv", str(proj / ".venv")], check=True)
    cpu = make_wheel(tmp_path / "cpu-index", "torch", "2.13.0+cpu")
    subprocess.run([str(proj / ".venv/bin/python"), "-m", "pip", "install", "-q", "--no-deps",
                    str(cpu)], check=True, capture_output=True)
    assert installed(proj)["torch"] == "2.13.0+cpu"
    done = make(proj, env, "setup")
    assert done.returncode == 0, done.stderr
    assert ("setup: .venv holds distributions installed outside this lock (`torch`); "
            "reinstalling every pinned distribution from the lock") in done.stdout, done.stdout
    got = installed(proj)
    assert got["torch"] == "2.13.0" and got["triton"] == "3.7.1"


def test_plain_pip_fallback_says_so_and_checks_hashes(project):
    proj, env = project
    done = make(proj, {**env, "INSTALLER": "pip"}, "setup")
    assert done.returncode == 0, done.stderr
    assert re.search(r"setup: plain pip \(pip [0-9.]+\) installs requirements.lock into .venv, "
                     r"hash-checked, compiling bytecode \(uv could not be had\)", done.stdout), \
        done.stdout
    assert "setup: done with pip in" in done.stdout
    assert installed(proj)["triton"] == "3.7.1"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_file_whose_hash_is_not_in_the_lock_is_refused(project, installer):
    proj, env = project
    lock = proj / "requirements.lock"
    text = lock.read_text()
    block = re.search(r"triton==3\.7\.1 \\\n\s+--hash=sha256:([0-9a-f]{64})", text)
    lock.write_text(text.replace(block.group(1), "0" * 64))
    done = make(proj, {**env, "INSTALLER": installer}, "setup")
    assert done.returncode != 0
    assert "triton" in done.stderr and "hash" in done.stderr.lower(), done.stderr
    assert not (proj / ".venv/.tunebook-installed").exists()


def test_uv_absent_is_bootstrapped_from_its_hash_pinned_lock(project):
    """No uv on PATH and UV unset: uv.sh installs the pinned uv with pip into
    .cache/bootstrap, and that uv builds the venv."""
    proj, env = project
    path = "/usr/bin:/bin"
    assert shutil.which("uv", path=path) is None, "this test needs a PATH without uv"
    env = {k: v for k, v in env.items() if k != "UV"} | {"PATH": path}
    done = make(proj, env, "setup")
    assert done.returncode == 0, done.stderr
    assert ("uv: not on PATH; installing the pinned uv into .cache/bootstrap "
            "(from requirements-bootstrap.lock)") in done.stderr
    assert "setup: uv (" in done.stdout and "setup: done with uv" in done.stdout
    boot = subprocess.run([str(proj / ".cache/bootstrap/bin/python"), "-m", "pip", "list",
                           "--format=freeze"], capture_output=True, text=True, check=True)
    assert f"uv=={locks.pins(proj / 'requirements-bootstrap.lock')['uv']}" in boot.stdout


def test_uv_that_cannot_be_installed_falls_back_to_plain_pip(project, tmp_path):
    proj, env = project
    for wheel in (tmp_path / "wheels").glob("uv-*.whl"):
        wheel.unlink()  # the bootstrap lock's uv is nowhere to be had
    env = {k: v for k, v in env.items() if k != "UV"} | {"PATH": "/usr/bin:/bin"}
    done = make(proj, env, "setup")
    assert done.returncode == 0, done.stderr
    assert "uv: could not install uv into .cache/bootstrap" in done.stderr
    assert "setup: plain pip (" in done.stdout and "setup: done with pip" in done.stdout
    assert installed(proj)["torch"] == "2.13.0"


def test_setup_adds_the_gpu_extra_where_nvidia_smi_lists_a_gpu(project, tmp_path):
    proj, env = project
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    smi = bin_ / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    done = make(proj, env | {"PATH": f"{bin_}:{env['PATH']}"}, "setup")
    assert done.returncode == 0, done.stderr
    assert "installs requirements-gpu.lock" in done.stdout
    assert installed(proj)["deepspeed"] == "0.18.9"


def test_a_missing_lock_is_bad_input(project):
    proj, env = project
    (proj / "requirements.lock").unlink()
    done = subprocess.run(["scripts/env/setup.sh", "requirements.lock"], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("setup: requirements.lock not found; "
                                   "run 'make lock-env' to write it")
