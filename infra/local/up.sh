#!/usr/bin/env bash
# Start the loopback Ray head (token auth on) and MLflow server: infra/local/up.sh [all|ray|mlflow]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/services.sh" up "${1:-all}"
