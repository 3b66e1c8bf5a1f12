#!/usr/bin/env bash
# Stop what infra/local/up.sh started (recorded PIDs only): infra/local/down.sh [all|ray|mlflow]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/services.sh" down "${1:-all}"
