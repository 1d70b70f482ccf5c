"""The environment locks: what each holds, how it is written and how it is checked.

Every lock is resolved by uv for the platform the recipes train on: Linux x86_64
(manylinux_2_28) and the Python of pyproject's ``requires-python``, against the package index's
standard ``torch`` wheel, which is a CUDA build. A CPU-only machine installs the same lock
(the README's Environment section says why), so a lock frozen on one kind of machine cannot
break another.

    python3.11 scripts/env/locks.py compile   # make lock-env: (re)write every lock
    python3.11 scripts/env/locks.py check     # make lock-check-env: exit 1 naming what is wrong

``check`` proves, for each lock, that (1) its pins resolve together for that platform (uv's
own explanation of a conflict is printed, e.g. "torch==2.13.0 depends on triton==3.7.1 and
you require triton==3.9.0") and (2) it is what ``compile`` writes from pyproject.toml today
(same names and versions), so an edit of pyproject.toml without ``make lock-env`` is caught.
``--lock FILE`` checks only (1) for the named files. uv comes from scripts/env/uv.sh; every
uv setting of the environment applies (UV_INDEX_URL, UV_FIND_LINKS, UV_NO_INDEX, ...).
Exit codes: 0 all good, 1 a lock is wrong, 2 bad input (a missing file, no uv).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = "x86_64-manylinux_2_28"  # Linux x86_64, the platform of torch's CUDA wheels
PLATFORM_WORDS = "Linux x86_64 (manylinux_2_28)"


@dataclass(frozen=True)
class Lock:
    path: str
    extras: tuple[str, ...]
    constraint: str | None = None  # another lock whose pins this one must keep
    why: str = ""


LOCKS = (
    Lock("requirements.lock", ("dev",), None,
         "make setup on every machine: the dependencies and the dev tools"),
    Lock("requirements-gpu.lock", ("dev", "gpu"), "requirements.lock",
         "make setup-gpu (and make setup where nvidia-smi finds a GPU): the same pins "
         "plus the gpu extra"),
)
# uv alone: what scripts/env/uv.sh installs with pip when no uv is on PATH. No platform: pip
# installs it on whatever machine builds the venv. Its pin moves only when this file's does
# (uv keeps the versions of an existing output file), e.g. after deleting it.
BOOTSTRAP = Lock("requirements-bootstrap.lock", (), None, "uv for scripts/env/uv.sh")
HEADER = "make lock-env"


class BadInput(Exception):
    """A missing file or tool: exit 2 with one message."""


def python_version(root: Path) -> str:
    """The minor version pyproject's requires-python starts at ('>=3.11,<3.12' -> '3.11')."""
    pyproject = root / "pyproject.toml"
    try:
        spec = tomllib.loads(pyproject.read_text())["project"]["requires-python"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{pyproject}: cannot read project.requires-python ({e})") from e
    m = re.search(r">=\s*(\d+\.\d+)", spec)
    if not m:
        raise BadInput(f"{pyproject}: requires-python {spec!r} has no '>=X.Y' lower bound")
    return m.group(1)


def find_uv() -> str:
    done = subprocess.run([str(Path(__file__).with_name("uv.sh"))], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise BadInput(f"no uv: {done.stderr.strip() or 'scripts/env/uv.sh printed nothing'}")
    return done.stdout.strip().splitlines()[-1]


def pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of every `name==version` line of a requirements file."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def _uv(uv: str, args: list[str], cwd: Path,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([uv, *args], cwd=cwd, capture_output=True, text=True, input=stdin)


def compile_lock(uv: str, root: Path, lock: Lock, out: Path, constraint: Path | None) -> None:
    """Resolve `lock` from root's pyproject.toml into `out`; pins already in `out` are kept
    where they still fit (uv prefers the versions of an existing output file)."""
    common = ["--generate-hashes", "--quiet", "--custom-compile-command", HEADER, "-o", str(out)]
    if constraint is not None:
        common += ["-c", str(constraint)]
    if lock is BOOTSTRAP:
        done = _uv(uv, ["pip", "compile", "-", *common], root, stdin="uv\n")
    else:
        extras = [a for e in lock.extras for a in ("--extra", e)]
        done = _uv(uv, ["pip", "compile", "pyproject.toml", *extras, "--python-version",
                        python_version(root), "--python-platform", PLATFORM, *common], root)
    if done.returncode != 0:
        raise LockError(f"{lock.path}: uv pip compile failed:\n{done.stderr.strip()}")


class LockError(Exception):
    """A lock is wrong: exit 1."""


def compile_all(uv: str, root: Path, into: Path | None = None) -> list[Path]:
    """Write every lock under `into` (default: root itself) and return their paths."""
    into = into or root
    written = []
    for lock in (*LOCKS, BOOTSTRAP):
        out = into / lock.path
        constraint = into / lock.constraint if lock.constraint else None
        compile_lock(uv, root, lock, out, constraint)
        written.append(out)
    return written


def _show(path: Path, root: Path) -> str:
    """A path as the user should read it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _cause(stderr: str) -> str:
    """uv's explanation, without its 'Using Python ... environment' chatter."""
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("Using Python")]
    return "\n".join("    " + ln for ln in lines)


def resolves(uv: str, root: Path, lock: Path, python: str) -> str | None:
    """None when every pin of `lock` installs together on the platform, else why not."""
    with tempfile.TemporaryDirectory(prefix="lock-check-") as tmp:
        made = _uv(uv, ["venv", "--quiet", "--python", sys.executable, tmp + "/venv"], root)
        if made.returncode != 0:
            raise BadInput(f"uv venv failed: {made.stderr.strip()}")
        done = _uv(uv, ["pip", "install", "--dry-run", "--python", tmp + "/venv/bin/python",
                        "--python-platform", PLATFORM, "--python-version", python,
                        "--require-hashes", "-r", str(lock)], root)
    if done.returncode == 0:
        return None
    return (f"{_show(lock, root)}: does not resolve for {PLATFORM_WORDS}, Python {python}:\n"
            f"{_cause(done.stderr)}")


def staleness(uv: str, root: Path) -> list[str]:
    """What differs between the committed locks and what `compile` writes from pyproject."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="lock-fresh-") as tmp:
        for lock in (*LOCKS, BOOTSTRAP):
            shutil.copy(root / lock.path, Path(tmp) / lock.path)  # its pins are preferred
        try:
            compile_all(uv, root, into=Path(tmp))
        except LockError as e:
            return [f"pyproject.toml no longer resolves: {e}"]
        for lock in (*LOCKS, BOOTSTRAP):
            old, new = pins(root / lock.path), pins(Path(tmp) / lock.path)
            diff = ([f"+ {n}=={new[n]}" for n in sorted(new.keys() - old.keys())]
                    + [f"- {n}=={old[n]}" for n in sorted(old.keys() - new.keys())]
                    + [f"  {n} {old[n]} -> {new[n]}" for n in sorted(old.keys() & new.keys())
                       if old[n] != new[n]])
            if diff:
                problems.append(f"{lock.path}: stale against pyproject.toml "
                                f"(run `make lock-env`):\n" + "\n".join("    " + d for d in diff))
    return problems


def check(uv: str, root: Path, only: list[Path] | None) -> list[str]:
    python = python_version(root)
    paths = only or [root / lock.path for lock in LOCKS]
    for path in paths:
        if not path.is_file():
            raise BadInput(f"{_show(path, root)}: no such lock file "
                           f"(make lock-env writes the locks)")
    problems = [p for p in (resolves(uv, root, path, python) for path in paths) if p]
    if only is None:
        problems += staleness(uv, root)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["compile", "check"])
    ap.add_argument("--root", type=Path, default=ROOT, help="the project (default: this one)")
    ap.add_argument("--lock", type=Path, action="append",
                    help="check only that this lock resolves (repeatable)")
    a = ap.parse_args(argv)
    root = a.root.resolve()
    try:
        uv = find_uv()
        if a.command == "compile":
            for path in compile_all(uv, root):
                print(f"wrote {path.relative_to(root)} ({len(pins(path))} pins)")
            return 0
        problems = check(uv, root, a.lock)
    except BadInput as e:
        print(f"lock-check-env: {e}", file=sys.stderr)
        return 2
    except LockError as e:
        print(f"lock-env: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    names = ", ".join(_show(p, root) for p in (a.lock or [root / lock.path for lock in LOCKS]))
    print(f"lock-check-env: {names} resolve for {PLATFORM_WORDS}, Python "
          f"{python_version(root)}{'' if a.lock else ', and match pyproject.toml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
