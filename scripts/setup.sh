#!/usr/bin/env bash
# Create .venv and install groprompt with its pinned dependencies (CPU torch kept by constraints.txt).
# Idempotent: re-running is a no-op unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "Python 3.11 is required" >&2; exit 1; }
stamp=.venv/.groprompt-installed
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
echo "$wanted" > "$stamp"
echo "groprompt installed in .venv"
