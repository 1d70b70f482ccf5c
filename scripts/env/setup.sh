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
# Bytecode: Python writes it itself the first time a module is imported, so by default setup
# leaves it to Python (uv's default too; compiling all ~47,000 files of the venv takes minutes
# on 2 cores). Where PYTHONDONTWRITEBYTECODE is set nothing would ever be cached and every
# process would compile torch and transformers again, so there setup compiles it all now.
bytecode=() why=""
if [[ -n "${PYTHONDONTWRITEBYTECODE:-}" ]]; then
  bytecode=(--compile-bytecode) why=", compiling bytecode (PYTHONDONTWRITEBYTECODE is set)"
fi
if uv=$(scripts/env/uv.sh); then
  echo "setup: uv ($("$uv" --version)) installs $lock into $venv, hash-checked$why"
  install() { "$uv" pip install -q --python "$venv/bin/python" --require-hashes "${bytecode[@]}" \
                "$@" -r "$lock" 2>&1; }
  if ! out=$(install); then
    # A venv an older setup filled (pip, torch from the CPU index as 2.13.0+cpu): uv takes the
    # installed distribution as satisfying the pin but has no hash to trust it by.
    grep -q "no trusted hash was provided" <<<"$out" || { echo "$out" >&2; exit 1; }
    echo "setup: $venv holds distributions installed outside this lock (${out##*for: });" \
         "reinstalling every pinned distribution from the lock"
    out=$(install --reinstall) || { echo "$out" >&2; exit 1; }
  fi
  [[ -z "$out" ]] || echo "$out" >&2
  "$uv" pip install -q --python "$venv/bin/python" --no-deps --no-build-isolation -e .
  installer=uv
else
  echo "setup: plain pip ($("$venv/bin/python" -m pip --version | cut -d' ' -f1-2)) installs" \
       "$lock into $venv, hash-checked, compiling bytecode (uv could not be had)"
  # --no-deps: the lock is the whole resolved set; pip's hash-checking mode would otherwise
  # refuse each dependency's own range (fsspec>=2023.12.0 from adlfs) as "not pinned with ==".
  "$venv/bin/python" -m pip install -q --require-hashes --no-deps -r "$lock"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  installer=pip
fi
echo "setup: done with $installer in $((SECONDS - start)) s"
