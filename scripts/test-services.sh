#!/usr/bin/env bash
# Runs a command with a private PostgreSQL cluster and RabbitMQ node on loopback (or on
# TEST_SERVICES_HOST as well, an address of this host that others reach: the cluster
# test runs this in a network namespace of its own).
#
# Usage: scripts/test-services.sh COMMAND [ARGS...]
#
# PostgreSQL runs with fsync and synchronous commit off (tests need no durability),
# unless TEST_PG_DURABLE=1 (make bench: production's defaults).
#
# Exports TEST_DATABASE_URL and TEST_BROKER_URL to COMMAND, and TEST_SERVICES_STATE,
# TEST_PG_BIN and TEST_RABBIT_BIN (with the RABBITMQ_* variables) for tests that restart
# the servers. When both URLs are already
# set, the external servers they name are used and nothing is installed or started.
# Otherwise the Debian packages are installed when missing, both servers are started
# with their state in a temporary directory, and both are stopped by their own pid
# when COMMAND ends, whether it passed or failed.
set -euo pipefail

if [[ -n "${TEST_DATABASE_URL:-}" && -n "${TEST_BROKER_URL:-}" ]]; then
    exec "$@"
fi

log() { printf 'test-services: %s\n' "$*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
RABBIT_BIN=/usr/lib/rabbitmq/bin

missing=()
[[ -n "$(pg_bin)" && -x "$(pg_bin)/initdb" ]] || missing+=(postgresql)
[[ -x "$RABBIT_BIN/rabbitmq-server" ]] || missing+=(rabbitmq-server)
# The fault tests' proxy (tests/support/faults.py).
command -v socat >/dev/null || missing+=(socat)
# The console's browser test (tests/e2e/test_console_browser.py): a headless Chromium.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if (( ${#missing[@]} )); then
    log "installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
PG_BIN=$(pg_bin)
# make test-cluster installs here, then starts the servers inside a namespace of its own.
[[ "${TEST_SERVICES_INSTALL_ONLY:-}" == 1 ]] && exit 0

HOST=${TEST_SERVICES_HOST:-127.0.0.1}
free_port() {
    python3 -c "import socket; s = socket.socket(); s.bind(('$HOST', 0)); print(s.getsockname()[1])"
}

STATE=$(mktemp -d -t boxoffice-services.XXXXXX)
chmod 755 "$STATE"
PG_PORT=$(free_port)
AMQP_PORT=$(free_port)
DIST_PORT=$(free_port)
EPMD_PORT=$(free_port)
PG_PID=""
RABBIT_PID=""

export RABBITMQ_NODENAME=rabbit@localhost
export RABBITMQ_NODE_IP_ADDRESS=$HOST
export RABBITMQ_NODE_PORT=$AMQP_PORT
export RABBITMQ_DIST_PORT=$DIST_PORT
export RABBITMQ_MNESIA_BASE=$STATE/rabbit/mnesia
export RABBITMQ_LOG_BASE=$STATE/rabbit/log
export RABBITMQ_PID_FILE=$STATE/rabbit/rabbit.pid
export RABBITMQ_ENABLED_PLUGINS_FILE=$STATE/rabbit/enabled_plugins
export RABBITMQ_CONFIG_FILE=$STATE/rabbit/rabbitmq
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=$EPMD_PORT

stop_services() {
    local status=$?
    if [[ -n "$RABBIT_PID" ]]; then
        HOME=$STATE/rabbit "$RABBIT_BIN/rabbitmqctl" -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 \
            || kill "$RABBIT_PID" 2>/dev/null || true
        wait "$RABBIT_PID" 2>/dev/null || true
    fi
    # epmd on our private port was started for our node only.
    epmd=$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | tail -n 1)
    [[ -n "$epmd" ]] && "$epmd" -kill >/dev/null 2>&1 || true
    if [[ -n "$PG_PID" ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STATE/pg" -m fast -w stop >/dev/null 2>&1 \
            || kill "$PG_PID" 2>/dev/null || true
    fi
    rm -rf "$STATE"
    exit "$status"
}
trap stop_services EXIT
trap 'exit 130' INT TERM

start_postgres() {
    mkdir -p "$STATE/pg" "$STATE/pgsock"
    chown postgres:postgres "$STATE/pg" "$STATE/pgsock"
    # initdb refuses to run as root.
    runuser -u postgres -- "$PG_BIN/initdb" -D "$STATE/pg" -A trust -U postgres -E UTF8 >"$STATE/initdb.log" 2>&1 \
        || { cat "$STATE/initdb.log" >&2; return 1; }
    local listen=127.0.0.1
    if [[ "$HOST" != 127.0.0.1 ]]; then
        listen="127.0.0.1,$HOST"
        echo "host all all samenet trust" >>"$STATE/pg/pg_hba.conf"
    fi
    local durability="-c fsync=off -c synchronous_commit=off"
    [[ "${TEST_PG_DURABLE:-}" == 1 ]] && durability=""
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STATE/pg" -w -t 60 -l "$STATE/pg/server.log" \
        -o "-h $listen -p $PG_PORT -k $STATE/pgsock -c max_connections=300 -c shared_preload_libraries=pg_stat_statements $durability" \
        start >/dev/null || { cat "$STATE/pg/server.log" >&2; return 1; }
    PG_PID=$(head -n 1 "$STATE/pg/postmaster.pid")
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres boxoffice_test
}

start_rabbitmq() {
    mkdir -p "$STATE/rabbit/log"
    echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    printf 'loopback_users = none\n' >"$RABBITMQ_CONFIG_FILE.conf"
    HOME=$STATE/rabbit "$RABBIT_BIN/rabbitmq-server" >"$STATE/rabbit/stdout.log" 2>&1 &
    RABBIT_PID=$!
    # `await_startup` fails until the node has registered; `wait PIDFILE` waits for that.
    if ! HOME=$STATE/rabbit timeout 120 "$RABBIT_BIN/rabbitmqctl" -q wait --timeout 120 "$RABBITMQ_PID_FILE" >/dev/null 2>&1; then
        log "RabbitMQ did not start"; cat "$STATE/rabbit/stdout.log" >&2; return 1
    fi
}

start_postgres
start_rabbitmq
export TEST_DATABASE_URL="postgresql://postgres@$HOST:$PG_PORT/boxoffice_test"
export TEST_BROKER_URL="amqp://guest:guest@$HOST:$AMQP_PORT//"
# For tests that restart the servers themselves (make chaos): where they live.
export TEST_SERVICES_STATE=$STATE TEST_PG_BIN=$PG_BIN TEST_RABBIT_BIN=$RABBIT_BIN
log "PostgreSQL on $HOST:$PG_PORT, RabbitMQ on $HOST:$AMQP_PORT"
"$@"
