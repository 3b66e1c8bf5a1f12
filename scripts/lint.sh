#!/usr/bin/env bash
# Set up (if needed) and lint: ruff's rules and its formatting, as configured in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
