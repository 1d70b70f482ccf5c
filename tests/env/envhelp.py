"""Offline stand-ins for the package index: tiny real wheels in a find-links folder.

uv and pip install them like any wheel (METADATA, WHEEL, RECORD, optional scripts), so the
lock and setup tooling runs for real with no network: UV_OFFLINE/UV_NO_INDEX/UV_FIND_LINKS
and PIP_NO_INDEX/PIP_FIND_LINKS point both installers at the folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_SCRIPTS = ROOT / "scripts" / "env"


def find_uv() -> Path:
    """The uv make setup used: on PATH, or bootstrapped into .cache/bootstrap (uv.sh)."""
    done = subprocess.run([str(ENV_SCRIPTS / "uv.sh")], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip().splitlines()[-1])


UV = find_uv()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_wheel(dest: Path, name: str, version: str, requires: tuple[str, ...] = (),
               scripts: dict[str, str] | None = None) -> Path:
    """Write `name`-`version` as a pure-Python wheel into `dest`; return its path."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             + "".join(f"Requires-Dist: {r}\n" for r in requires)),
        f"{info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: tunebook-tests\n"
                          "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    for script, text in (scripts or {}).items():
        files[f"{dist}-{version}.data/scripts/{script}"] = text
    record = []
    for arc, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{arc},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            info_ = zipfile.ZipInfo(arc)
            info_.external_attr = (0o100755 if "/scripts/" in arc else 0o100644) << 16
            z.writestr(info_, text)
    return path


def fake_index(dest: Path) -> Path:
    """The index the fake project resolves against: torch 2.13.0 needs triton 3.7.1 (as the
    real CUDA wheel does) while triton 3.9.0 also exists (for other torch releases); a
    gpu-extra package; a `uv` whose script runs the real uv (so the bootstrap path can be
    exercised offline)."""
    make_wheel(dest, "torch", "2.13.0", ("triton==3.7.1",))
    make_wheel(dest, "torch", "2.12.0", ("triton==3.9.0",))
    make_wheel(dest, "torch", "2.14.0", ("triton==3.9.0",))
    make_wheel(dest, "triton", "3.7.1")
    make_wheel(dest, "triton", "3.9.0")
    make_wheel(dest, "deepspeed", "0.18.9", ("hjson",))
    make_wheel(dest, "hjson", "3.1.0")
    make_wheel(dest, "sacrebleu", "2.6.0")
    make_wheel(dest, "uv", "0.13.9", scripts={"uv": f'#!/bin/sh\nexec "{UV}" "$@"\n'})
    return dest


# The fake project builds with an in-tree PEP 660 backend (no setuptools wheel offline):
# its editable wheel is a .pth file and the dist-info, as setuptools' would be.
BACKEND = '''\
import base64, hashlib, os, zipfile

NAME, VERSION = "fakeproj", "0.1.0"


def _build(wheel_directory):
    info = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.pth": os.getcwd() + "\\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    def digest(text):
        raw = hashlib.sha256(text.encode()).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    record = [f"{a},sha256={digest(t)},{len(t.encode())}" for a, t in files.items()]
    files[f"{info}/RECORD"] = "\\n".join(record + [f"{info}/RECORD,,"]) + "\\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory)
'''

PYPROJECT = """\
[build-system]
requires = []
build-backend = "fake_backend"
backend-path = ["."]

[project]
name = "fakeproj"
version = "0.1.0"
requires-python = ">=3.11,<3.12"
dependencies = ["torch==2.13.0"]

[project.optional-dependencies]
dev = ["hjson"]
gpu = ["deepspeed"]
"""


def fake_project(tmp: Path) -> Path:
    """A project laid out like this one (Makefile, scripts/env/) over the fake index."""
    proj = tmp / "proj"
    (proj / "scripts").mkdir(parents=True)
    shutil.copytree(ENV_SCRIPTS, proj / "scripts" / "env",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Makefile", proj / "Makefile")
    (proj / "pyproject.toml").write_text(PYPROJECT)
    (proj / "fake_backend.py").write_text(BACKEND)
    fake_index(tmp / "wheels")
    return proj


def offline_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment that keeps uv and pip on the fake index and off every network."""
    # Not the outer make's variables either (make test runs this): MAKELEVEL would turn
    # "make:" into "make[1]:" and MAKEFLAGS would hand over its jobserver.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "PIP_")) and k not in
           {"PYTHONDONTWRITEBYTECODE", "MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    env.update({
        "UV": str(UV), "UV_OFFLINE": "1", "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": str(tmp / "wheels"), "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp / "wheels"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHON": sys.executable,
    })
    env.update(extra)
    return env
