# shellcheck shell=bash
# Sourced by test.sh, crash.sh, differential.sh and client-suites.sh: makes sure a virtualenv
# exists and holds pinned requirements, installing only what is missing.
#
#   ensure_python_env ROOT     # $ROOT/.venv with tests/python/requirements.txt; sets VENV_PYTHON
#   ensure_venv DIR REQUIREMENTS IMPORTS   # any virtualenv; prints nothing on success
#
# IMPORTS is a Python import statement run in the virtualenv afterwards, as a check.

ensure_venv() {
    local venv=$1 requirements=$2 imports=$3
    local python=${PYTHON:-python3}
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "python3 is missing; installing it (Debian package)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q python3 python3-venv >/dev/null
    fi
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$venv"
        if ! "$python" -m venv "$venv" 2>/dev/null; then
            echo "'$python -m venv' failed; installing python3-venv (Debian package)"
            rm -rf "$venv"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q >/dev/null
            apt-get install -y -q python3-venv >/dev/null
            "$python" -m venv "$venv"
        fi
    fi
    # Reinstall only when the requirements file changed since the last install.
    local stamp="$venv/.requirements.sha256"
    local want
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
        echo "$want" >"$stamp"
    fi
    "$venv/bin/python" -c "$imports"
}

ensure_python_env() {
    local root=$1
    ensure_venv "$root/.venv" "$root/tests/python/requirements.txt" 'import pika, kombu, pytest, pytest_timeout'
    # shellcheck disable=SC2034 # read by the scripts that source this file
    VENV_PYTHON="$root/.venv/bin/python"
}
