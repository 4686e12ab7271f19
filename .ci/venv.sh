#!/usr/bin/env bash
# Creates the virtual environment of the README's quick start (default: .venv) with python3.
#
# Debian and Ubuntu refuse `pip install` into the system Python (externally-managed-environment)
# and ship `python3 -m venv` without ensurepip until the package python3-venv is installed: this
# script checks that python3 is >= 3.11, installs python3-venv with apt-get when the venv cannot
# be created (as root, or with sudo), and creates the environment. Nothing else is installed.
#
# Usage: bash .ci/venv.sh [DIRECTORY]      then: . DIRECTORY/bin/activate
set -euo pipefail
dir="${1:-.venv}"

command -v python3 >/dev/null || { echo "venv: python3 is required (>= 3.11)" >&2; exit 1; }
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "venv: mimocorb2 needs Python >= 3.11, but python3 is $(python3 -V 2>&1)" >&2
    exit 1
fi
if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "venv: $dir exists"
    exit 0
fi
if ! python3 -m venv "$dir" 2>/dev/null; then
    rm -rf "$dir"
    command -v apt-get >/dev/null || {
        echo "venv: 'python3 -m venv' fails; install your distribution's venv package" >&2
        exit 1
    }
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "venv: run as root (or install sudo)" >&2; exit 1; }
        SUDO=(sudo)
    fi
    version=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    echo "venv: installing python3-venv (python${version}-venv) with apt-get"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends python3-venv "python${version}-venv"
    python3 -m venv "$dir"
fi
echo "venv: created $dir (activate it with: . $dir/bin/activate)"
