#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: a local Ray and MLflow on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python pipelines/demo.py "$@"
