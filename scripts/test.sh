#!/usr/bin/env bash
# Runs opsmedic's checks on a fresh Debian machine: sets up what is missing (system packages,
# a virtual env, the package with its test extra), then ruff, mypy, the import-linter layer
# contracts, playbook validation, the rules eval (pass rate >= 90%, no harmful decision) and
# pytest. Extra arguments go to
# pytest, e.g. `scripts/test.sh -k detector`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${OPSMEDIC_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages the tests need, installed only when missing.
packages=()
command -v "$PYTHON" >/dev/null || packages+=(python3)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
command -v systemd-analyze >/dev/null || packages+=(systemd)
command -v prometheus >/dev/null && command -v promtool >/dev/null || packages+=(prometheus)
if [ ${#packages[@]} -gt 0 ]; then
    echo "installing system packages: ${packages[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "opsmedic needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V))" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== ruff";     "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check .
echo "== mypy";     "$VENV/bin/mypy"
echo "== layers";   "$VENV/bin/lint-imports" --no-cache
echo "== validate"; "$VENV/bin/opsmedic" validate playbooks/
echo "== eval";     "$VENV/bin/opsmedic" eval tests/scenarios --agent rules \
                        --min-pass-rate 0.9 --max-harmful 0
echo "== pytest";   "$VENV/bin/pytest" "$@"
