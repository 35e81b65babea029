#!/usr/bin/env bash
# Creates the virtual environment. On a bare Debian, python3-venv may be missing: install it.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! command -v "$python" >/dev/null 2>&1 || ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
        python=python3
    fi
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "fleetwise needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2; exit 1; }
"$python" -m venv "$venv"
