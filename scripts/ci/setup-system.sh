#!/usr/bin/env bash
# `make setup-system`: the Debian packages the test suite needs beyond the Python stack:
# - chromium: the report's real-browser screenshot test;
# - slurm-wlm and munge: a real single-node Slurm cluster for the requeue test (slurm-up.sh);
# - the ShellCheck package: the linter of the rendered sbatch script and of our shell scripts.
# Idempotent: installs only what is missing (nothing to do -> no apt-get at all). Needs root
# (or sudo) and Debian/Ubuntu apt; `make setup` (the Python venv) needs neither.
set -euo pipefail

PACKAGES=(chromium slurm-wlm munge shellcheck)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: ${PACKAGES[*]} already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "setup-system: no apt-get here; install ${missing[*]} with this system's package manager" >&2
  exit 2
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "setup-system: installing ${missing[*]} needs root; run it as root or install sudo" >&2
    exit 2
  fi
  SUDO=(sudo)
fi
echo "setup-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
# The slurm-wlm packages start no daemon here (no systemd in a container; slurm-up.sh does it).
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
