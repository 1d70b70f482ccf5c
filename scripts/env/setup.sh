#!/usr/bin/env bash
# make setup / make setup-gpu: build the venv from one lock, every file hash-checked.
# uv installs it when uv can be had (scripts/env/uv.sh: on PATH, or bootstrapped from
# requirements-bootstrap.lock); otherwise plain pip does. The first line printed says which.
# Usage: scripts/env/setup.sh LOCK   Environment: PYTHON (python3.11), VENV (.venv),
# UV (a uv to use; none = plain pip), INSTALLER=pip (same as UV=none).
set -euo pipefail
cd "$(dirname "$0")/../.."
lock=${1:?usage: scripts/env/setup.sh LOCK}
venv=${VENV:-.venv}
[[ -f "$lock" ]] || { echo "setup: $lock not found; run 'make lock-env' to write it" >&2; exit 2; }
[[ "${INSTALLER:-uv}" == pip ]] && export UV=none
start=$SECONDS
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python3.11}" -m venv "$venv"
if uv=$(scripts/env/uv.sh); then
  echo "setup: uv ($("$uv" --version)) installs $lock into $venv, hash-checked"
  # --compile-bytecode: what pip does by default; without it every process would compile
  # torch and transformers again wherever PYTHONDONTWRITEBYTECODE is set.
  "$uv" pip install -q --python "$venv/bin/python" --require-hashes --compile-bytecode -r "$lock"
  "$uv" pip install -q --python "$venv/bin/python" --no-deps --no-build-isolation -e .
  installer=uv
else
  echo "setup: plain pip ($("$venv/bin/python" -m pip --version | cut -d' ' -f1-2)) installs" \
       "$lock into $venv, hash-checked (uv could not be had)"
  "$venv/bin/python" -m pip install -q --require-hashes -r "$lock"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  installer=pip
fi
echo "setup: done with $installer in $((SECONDS - start)) s"
