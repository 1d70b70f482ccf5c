#!/usr/bin/env bash
# Print the path of a uv to use, installing it when absent. Order: $UV if set (UV=none means
# "do not use uv"), then a uv on PATH, then the pinned, hash-checked uv from
# requirements-bootstrap.lock installed by pip into .cache/bootstrap (a small venv of its own,
# so .venv is never needed to build .venv). Exit 1, saying why on stderr, when none can be had.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -n "${UV:-}" ]]; then
  [[ "$UV" == none ]] && { echo "uv: UV=none, not using uv" >&2; exit 1; }
  command -v "$UV" && exit 0
  echo "uv: UV=$UV is not an executable" >&2
  exit 1
fi
command -v uv && exit 0
boot=.cache/bootstrap
if [[ ! -x "$boot/bin/uv" ]]; then
  echo "uv: not on PATH; installing the pinned uv into $boot (from requirements-bootstrap.lock)" >&2
  if ! { "${PYTHON:-python3.11}" -m venv "$boot" \
         && "$boot/bin/pip" install -q --require-hashes -r requirements-bootstrap.lock; } >&2
  then
    echo "uv: could not install uv into $boot" >&2
    rm -rf "$boot"
    exit 1
  fi
fi
echo "$PWD/$boot/bin/uv"
