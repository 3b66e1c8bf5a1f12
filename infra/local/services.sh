#!/usr/bin/env bash
# Loopback Ray head (token authentication on) and MLflow tracking server for groprompt.
#
#   infra/local/services.sh up     [all|ray|mlflow]   start (idempotent: a running service is left alone)
#   infra/local/services.sh down   [all|ray|mlflow]   stop only the processes this script started
#   infra/local/services.sh status [all|ray|mlflow]   exit 0 when every named service is up
#   infra/local/services.sh env                       print the client environment (source it)
#
# Everything binds to 127.0.0.1. State (PIDs, logs, ports, the Ray token, the MLflow store) lives in
# $GROPROMPT_SERVICES_DIR (default: work/services under the repository root). Settings (environment):
#   GROPROMPT_VENV                  virtual environment holding ray and mlflow (default: <repo>/.venv)
#   GROPROMPT_RAY_PORT              GCS port of the head (default: a free port)
#   GROPROMPT_RAY_DASHBOARD_PORT    dashboard / job API port (default 8265; 0 = a free port)
#   GROPROMPT_RAY_NUM_CPUS          logical CPUs of the head (default: the machine's cores)
#   GROPROMPT_RAY_TOKEN_FILE        token file (default: $GROPROMPT_SERVICES_DIR/ray/auth_token, made 0600)
#   GROPROMPT_MLFLOW_PORT           tracking server port (default 5000; 0 = a free port)
#   GROPROMPT_MLFLOW_BACKEND_URI    backend store (default sqlite:///$GROPROMPT_SERVICES_DIR/mlflow.db;
#                                   e.g. postgresql://user:pass@127.0.0.1:5432/mlflow, driver psycopg2 needed)
#   GROPROMPT_MLFLOW_ARTIFACTS      artifact destination (default $GROPROMPT_SERVICES_DIR/mlartifacts), a folder or a
#                                   bucket URI (s3://bucket/prefix; the server reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#                                   and, for an S3-compatible store, MLFLOW_S3_ENDPOINT_URL from this environment);
#                                   clients upload through the server (--serve-artifacts) and need no credentials
#   GROPROMPT_WAIT_S                seconds to wait for a service to become ready (default 90)
#
# Stopping: `ray stop` would stop every Ray on this machine (other users' and tests' too), and `pkill mlflow`
# every MLflow, so neither is used. Each service runs in its own session/process group (setsid) with the
# Ray head in `ray start --block` mode; `down` checks that the recorded PID is still the process it started
# (command line), sends SIGTERM to it and its process group, then SIGKILL to whatever of the recorded
# process tree (Ray workers live in their own process groups) is left after a grace period.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${GROPROMPT_SERVICES_DIR:-$REPO_ROOT/work/services}"
VENV="${GROPROMPT_VENV:-$REPO_ROOT/.venv}"
WAIT_S="${GROPROMPT_WAIT_S:-90}"
HOST=127.0.0.1

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[services] $*"; }

find_tool() {  # the venv's tool, else one on PATH
    if [[ -x "$VENV/bin/$1" ]]; then echo "$VENV/bin/$1"; return; fi
    command -v "$1" || die "$1 not found (set GROPROMPT_VENV to the virtual environment holding it)"
}

setup() {
    PYTHON="$(find_tool python)"
    mkdir -p "$STATE_DIR/ray" "$STATE_DIR/mlflow"
    STATE_DIR="$(cd "$STATE_DIR" && pwd)"
    RAY_PID_FILE="$STATE_DIR/ray/head.pid"
    RAY_INFO_FILE="$STATE_DIR/ray/head.env"
    RAY_LOG="$STATE_DIR/ray/head.log"
    TOKEN_FILE="${GROPROMPT_RAY_TOKEN_FILE:-$STATE_DIR/ray/auth_token}"
    MLFLOW_PID_FILE="$STATE_DIR/mlflow/server.pid"
    MLFLOW_INFO_FILE="$STATE_DIR/mlflow/server.env"
    MLFLOW_LOG="$STATE_DIR/mlflow/server.log"
    ENV_FILE="$STATE_DIR/env.sh"
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_in_use() {
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

pick_port() {  # pick_port VALUE DEFAULT: "" -> DEFAULT, 0/auto -> a free port
    local value="${1:-$2}"
    if [[ "$value" == 0 || "$value" == auto ]]; then free_port; else echo "$value"; fi
}

# http_status URL [TOKEN_FILE]: the HTTP status code (000 when nothing answers)
http_status() {
    "$PYTHON" - "$@" <<'EOF'
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    request.add_header("Authorization", "Bearer " + open(sys.argv[2]).read().strip())
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code)
except Exception:
    print("000")
EOF
}

# alive PID_FILE PATTERN: the recorded PID runs and its command line still contains PATTERN
alive() {
    local pid_file="$1" pattern="$2" pid
    [[ -f "$pid_file" ]] || return 1
    pid="$(cat "$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

descendants() {  # PIDs of the whole process tree under $1 (not $1 itself)
    local parent="$1" child
    for child in $(ps -o pid= --ppid "$parent" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

running() {  # the PID exists and is not a zombie (an exited child nobody has reaped yet)
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

any_alive() { local pid; for pid in "$@"; do running "$pid" && return 0; done; return 1; }

# stop_tree NAME PID: SIGTERM the leader, after 5 s its process group and tree too, SIGKILL what is left after 30 s
stop_tree() {
    local name="$1" pid="$2" tree waited=0
    tree="$pid $(descendants "$pid" | tr '\n' ' ')"
    say "stopping $name (PID $pid, process group $pid, $(wc -w <<<"$tree") processes)"
    kill -TERM "$pid" 2>/dev/null || true
    while any_alive $tree && (( waited < 30 )); do
        sleep 1; waited=$((waited + 1))
        if (( waited == 5 )); then
            kill -TERM -- "-$pid" 2>/dev/null || true
            # shellcheck disable=SC2086
            kill -TERM $tree 2>/dev/null || true
        fi
    done
    if any_alive $tree; then
        say "$name: still running after ${waited}s, sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
        # shellcheck disable=SC2086
        kill -KILL $tree 2>/dev/null || true
        waited=0
        while any_alive $tree && (( waited < 10 )); do sleep 1; waited=$((waited + 1)); done
    fi
    if any_alive $tree; then
        local left="" p; for p in $tree; do running "$p" && left+=" $p"; done
        die "$name: could not stop PIDs:$left"
    fi
    say "$name stopped"
}

write_env_file() {
    {
        echo "# groprompt local services: source this file (written by infra/local/services.sh)"
        if alive "$RAY_PID_FILE" "ray start"; then
            # shellcheck disable=SC1090
            source "$RAY_INFO_FILE"
            echo "export RAY_API_SERVER_ADDRESS=http://$HOST:$RAY_DASHBOARD_PORT   # ray job submit/status/logs"
            echo "export RAY_ADDRESS=$HOST:$RAY_PORT   # drivers run here join the head"
            echo "export RAY_AUTH_MODE=token"
            echo "export RAY_AUTH_TOKEN_PATH=$TOKEN_FILE"
        fi
        if alive "$MLFLOW_PID_FILE" "mlflow server"; then
            # shellcheck disable=SC1090
            source "$MLFLOW_INFO_FILE"
            echo "export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT"
        fi
    } >"$ENV_FILE"
}

ray_up() {
    if alive "$RAY_PID_FILE" "ray start"; then
        # shellcheck disable=SC1090
        source "$RAY_INFO_FILE"
        say "Ray head already running (PID $(cat "$RAY_PID_FILE"), dashboard http://$HOST:$RAY_DASHBOARD_PORT)"
        return 0
    fi
    rm -f "$RAY_PID_FILE"
    local ray_bin; ray_bin="$(find_tool ray)"
    if [[ ! -s "$TOKEN_FILE" ]]; then
        mkdir -p "$(dirname "$TOKEN_FILE")"
        (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32), end="")' >"$TOKEN_FILE")
        say "generated a Ray auth token in $TOKEN_FILE"
    fi
    chmod 600 "$TOKEN_FILE"
    RAY_PORT="$(pick_port "${GROPROMPT_RAY_PORT:-}" 0)"
    RAY_DASHBOARD_PORT="$(pick_port "${GROPROMPT_RAY_DASHBOARD_PORT:-}" 8265)"
    local client_port agent_port cpus
    client_port="$(free_port)"
    agent_port="$(free_port)"
    cpus="${GROPROMPT_RAY_NUM_CPUS:-$(nproc)}"
    for port in "$RAY_PORT" "$RAY_DASHBOARD_PORT"; do
        if port_in_use "$port"; then
            die "port $port on $HOST is in use (another Ray or service?); set GROPROMPT_RAY_PORT / GROPROMPT_RAY_DASHBOARD_PORT (0 = a free port)"
        fi
    done
    say "starting Ray head on $HOST:$RAY_PORT (dashboard $HOST:$RAY_DASHBOARD_PORT, $cpus CPUs, token auth on); log $RAY_LOG"
    # Token auth: RAY_AUTH_MODE=token on the head (every process it starts inherits it) with the token read
    # from RAY_AUTH_TOKEN_PATH. A stray RAY_ADDRESS / RAY_AUTH_TOKEN from the caller must not leak into the head.
    # PATH puts the venv first so that job entrypoints (`python pipelines/...`) run the venv's Python.
    env -u RAY_ADDRESS -u RAY_API_SERVER_ADDRESS -u RAY_AUTH_TOKEN \
        RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TOKEN_FILE" PATH="$(dirname "$ray_bin"):$PATH" \
        setsid "$ray_bin" start --head --block \
        --node-ip-address="$HOST" --port="$RAY_PORT" \
        --dashboard-host="$HOST" --dashboard-port="$RAY_DASHBOARD_PORT" \
        --ray-client-server-port="$client_port" --dashboard-agent-listen-port="$agent_port" \
        --num-cpus="$cpus" --disable-usage-stats \
        >"$RAY_LOG" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$RAY_PID_FILE"
    printf 'RAY_PORT=%s\nRAY_DASHBOARD_PORT=%s\nRAY_CLIENT_PORT=%s\nRAY_PGID=%s\n' \
        "$RAY_PORT" "$RAY_DASHBOARD_PORT" "$client_port" "$pid" >"$RAY_INFO_FILE"
    local waited=0 url="http://$HOST:$RAY_DASHBOARD_PORT/api/version"
    until [[ "$(http_status "$url" "$TOKEN_FILE")" == 200 ]]; do
        if ! running "$pid"; then
            rm -f "$RAY_PID_FILE"; tail -n 30 "$RAY_LOG" >&2; die "the Ray head exited during start-up (log above)"
        fi
        (( waited >= WAIT_S )) && { tail -n 30 "$RAY_LOG" >&2; ray_down; die "the Ray head was not ready after ${WAIT_S}s"; }
        sleep 1; waited=$((waited + 1))
    done
    local anonymous; anonymous="$(http_status "$url")"
    if [[ "$anonymous" != 401 && "$anonymous" != 403 ]]; then
        ray_down; die "the Ray dashboard answered $anonymous without a token: token authentication is not on"
    fi
    say "Ray head ready after ${waited}s (PID $pid; requests without the token get HTTP $anonymous)"
}

ray_down() {
    if [[ ! -f "$RAY_PID_FILE" ]]; then say "Ray head: not running (no $RAY_PID_FILE)"; return 0; fi
    if ! alive "$RAY_PID_FILE" "ray start"; then
        say "Ray head: not running (stale PID $(cat "$RAY_PID_FILE"), removed)"; rm -f "$RAY_PID_FILE"; return 0
    fi
    stop_tree "Ray head" "$(cat "$RAY_PID_FILE")"
    rm -f "$RAY_PID_FILE"
}

ray_status() {
    if alive "$RAY_PID_FILE" "ray start"; then
        # shellcheck disable=SC1090
        source "$RAY_INFO_FILE"
        local code; code="$(http_status "http://$HOST:$RAY_DASHBOARD_PORT/api/version" "$TOKEN_FILE")"
        say "Ray head: running (PID $(cat "$RAY_PID_FILE"), GCS $HOST:$RAY_PORT, dashboard http://$HOST:$RAY_DASHBOARD_PORT answers $code)"
        [[ "$code" == 200 ]]
    else
        say "Ray head: not running"; return 1
    fi
}

mlflow_up() {
    if alive "$MLFLOW_PID_FILE" "mlflow server"; then
        # shellcheck disable=SC1090
        source "$MLFLOW_INFO_FILE"
        say "MLflow server already running (PID $(cat "$MLFLOW_PID_FILE"), http://$HOST:$MLFLOW_PORT)"
        return 0
    fi
    rm -f "$MLFLOW_PID_FILE"
    local mlflow_bin; mlflow_bin="$(find_tool mlflow)"
    MLFLOW_PORT="$(pick_port "${GROPROMPT_MLFLOW_PORT:-}" 5000)"
    port_in_use "$MLFLOW_PORT" && die "port $MLFLOW_PORT on $HOST is in use; set GROPROMPT_MLFLOW_PORT (0 = a free port)"
    local backend="${GROPROMPT_MLFLOW_BACKEND_URI:-sqlite:///$STATE_DIR/mlflow.db}"
    local artifacts="${GROPROMPT_MLFLOW_ARTIFACTS:-$STATE_DIR/mlartifacts}"
    [[ "$artifacts" == *://* ]] || { mkdir -p "$artifacts"; artifacts="$(cd "$artifacts" && pwd)"; }
    say "starting MLflow server on $HOST:$MLFLOW_PORT (backend ${backend%%:*}, artifacts $artifacts); log $MLFLOW_LOG"
    # Job execution off keeps the server at two processes (the launcher and one uvicorn worker).
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$mlflow_bin" server \
        --host "$HOST" --port "$MLFLOW_PORT" --workers 1 \
        --backend-store-uri "$backend" \
        --serve-artifacts --artifacts-destination "$artifacts" \
        >"$MLFLOW_LOG" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$MLFLOW_PID_FILE"
    printf 'MLFLOW_PORT=%s\nMLFLOW_PGID=%s\n' "$MLFLOW_PORT" "$pid" >"$MLFLOW_INFO_FILE"
    local waited=0
    until [[ "$(http_status "http://$HOST:$MLFLOW_PORT/health")" == 200 ]]; do
        if ! running "$pid"; then
            rm -f "$MLFLOW_PID_FILE"; tail -n 30 "$MLFLOW_LOG" >&2; die "the MLflow server exited during start-up (log above)"
        fi
        (( waited >= WAIT_S )) && { tail -n 30 "$MLFLOW_LOG" >&2; mlflow_down; die "the MLflow server was not ready after ${WAIT_S}s"; }
        sleep 1; waited=$((waited + 1))
    done
    say "MLflow server ready after ${waited}s (PID $pid)"
}

mlflow_down() {
    if [[ ! -f "$MLFLOW_PID_FILE" ]]; then say "MLflow server: not running (no $MLFLOW_PID_FILE)"; return 0; fi
    if ! alive "$MLFLOW_PID_FILE" "mlflow server"; then
        say "MLflow server: not running (stale PID $(cat "$MLFLOW_PID_FILE"), removed)"; rm -f "$MLFLOW_PID_FILE"; return 0
    fi
    stop_tree "MLflow server" "$(cat "$MLFLOW_PID_FILE")"
    rm -f "$MLFLOW_PID_FILE"
}

mlflow_status() {
    if alive "$MLFLOW_PID_FILE" "mlflow server"; then
        # shellcheck disable=SC1090
        source "$MLFLOW_INFO_FILE"
        local code; code="$(http_status "http://$HOST:$MLFLOW_PORT/health")"
        say "MLflow server: running (PID $(cat "$MLFLOW_PID_FILE"), http://$HOST:$MLFLOW_PORT/health answers $code)"
        [[ "$code" == 200 ]]
    else
        say "MLflow server: not running"; return 1
    fi
}

print_usage_hint() {
    write_env_file
    [[ -s "$ENV_FILE" ]] || return 0
    echo
    echo "Client environment (also in $ENV_FILE; run: source $ENV_FILE):"
    grep '^export' "$ENV_FILE" | sed 's/^/  /'
    if alive "$RAY_PID_FILE" "ray start"; then
        local tracking=""
        alive "$MLFLOW_PID_FILE" "mlflow server" && tracking=" runtime.tracking_uri=http://$HOST:$MLFLOW_PORT"
        echo
        echo "Submit a job (from the repository root):"
        echo "  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$TOKEN_FILE \\"
        echo "    ray job submit --address http://$HOST:$RAY_DASHBOARD_PORT --working-dir . -- \\"
        echo "    python pipelines/train.py --config conf/demo.yaml$tracking"
    fi
}

main() {
    local command="${1:-}" target="${2:-all}"
    case "$target" in all|ray|mlflow) ;; *) die "unknown service '$target' (all, ray or mlflow)";; esac
    case "$command" in
        up)
            setup
            [[ "$target" == mlflow ]] || ray_up
            [[ "$target" == ray ]] || mlflow_up
            print_usage_hint
            ;;
        down)
            setup
            [[ "$target" == ray ]] || mlflow_down
            [[ "$target" == mlflow ]] || ray_down
            write_env_file
            ;;
        status)
            setup
            local rc=0
            if [[ "$target" != mlflow ]]; then ray_status || rc=1; fi
            if [[ "$target" != ray ]]; then mlflow_status || rc=1; fi
            return "$rc"
            ;;
        env)
            setup
            write_env_file
            cat "$ENV_FILE"
            ;;
        -h|--help|help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
            ;;
        *)
            die "usage: $0 {up|down|status|env} [all|ray|mlflow]"
            ;;
    esac
}

main "$@"
