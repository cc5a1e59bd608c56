#!/usr/bin/env bash
# Build VENV for `make test-oldest`: the Python named WANT (python3.10, the lowest supported)
# with the lowest declared versions (FLOORS) and pip and setuptools from LOCK. Without that
# Python it says so, loudly, and uses $PYTHON (default python3) instead.
set -euo pipefail
want=$1 venv=$2 floors=$3 lock=$4
version=${want#python}  # python3.10 -> 3.10

answers() {  # the interpreter runs, and is the version its name says
    "$@" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$version')" 2>/dev/null
}

if answers "$want"; then
    python=("$want")
elif command -v pyenv >/dev/null && answers env "PYENV_VERSION=$version" "$want"; then
    # pyenv's shim runs only the versions selected: select this one for the command.
    python=(env "PYENV_VERSION=$version" "$want")
else
    python=("${PYTHON:-python3}")
    notice="test-oldest: $want not found: Python $version is NOT tested; the lowest declared
test-oldest: versions are tested on $("${python[@]}" --version) instead."
fi

# Rebuilt when the interpreter or what it installs changes.
key="$("${python[@]}" -c 'import sys; print(sys.version.split()[0])')"
key="$key $(cat pyproject.toml "$floors" "$lock" | cksum)"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$key" ]; then
    rm -rf "$venv"
    "${python[@]}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -c "$lock" pip setuptools
    "$venv/bin/python" -m pip install -q --no-build-isolation -c "$floors" -e '.[all,dev]'
    echo "$key" >"$venv/.installed"
fi
echo "test-oldest: Python ${key%% *} with the versions of $floors"
# Said now and again after the tests (make test-oldest prints NOTICE at the end).
if [ -n "${notice:-}" ]; then
    printf '%s\n' "$notice" >"$venv/NOTICE"
    printf '%s\n%s\n%s\n' "$(printf '#%.0s' {1..70})" "$notice" "$(printf '#%.0s' {1..70})" >&2
else
    rm -f "$venv/NOTICE"
fi
