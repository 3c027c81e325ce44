# shellcheck shell=bash
# Shared helpers for scripts/*: dependency install and the local test servers.
#
# Source it (`. "$(dirname "$0")/lib.sh"`); it sets NACENTO_ROOT (the repo root) and RUN_DIR
# ($NACENTO_ROOT/.run, where servers keep their data, logs, pid files and the `env` file).
#
#   ensure_deps            Debian packages + .venv from the lock file requirements/dev.txt (idempotent)
#   services_start [--hold] start MariaDB, moto (S3) and RabbitMQ unless running, write .run/env, take a lease
#   services_release       drop this shell's lease; stop the servers if this was the last lease
#   services_release_on_exit  trap services_release on EXIT/INT/TERM/HUP (call before services_start)
#   services_stop          stop every server started here (by pid files), whoever started it
#   services_status        print what runs
#
# Leases: every `services_start` records a lease (.run/leases/<pid of the caller>) and `services_release`
# (run it from `trap ... EXIT`) stops the servers only when no other live lease remains, so two
# `./scripts/test` runs in one checkout don't pull the servers from under each other, and servers that
# `scripts/services start` brought up by hand (`--hold`, a lease without pid) stay up until
# `scripts/services stop`.
#
# Ports: NACENTO_TEST_DB_PORT (default 3307), NACENTO_TEST_S3_PORT (default 5055), NACENTO_TEST_AMQP_PORT
# (default 5673, not 5672: a system RabbitMQ may have that), its Erlang distribution port
# NACENTO_TEST_AMQP_DIST_PORT (default AMQP port + 20000) and its port mapper's NACENTO_TEST_EPMD_PORT
# (default AMQP port + 21000; not epmd's usual 4369, so a system epmd is never used nor stopped).

NACENTO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$NACENTO_ROOT/.run"
VENV="$NACENTO_ROOT/.venv"

DB_PORT="${NACENTO_TEST_DB_PORT:-3307}"
S3_PORT="${NACENTO_TEST_S3_PORT:-5055}"
AMQP_PORT="${NACENTO_TEST_AMQP_PORT:-5673}"
AMQP_DIST_PORT="${NACENTO_TEST_AMQP_DIST_PORT:-$((AMQP_PORT + 20000))}"
EPMD_PORT="${NACENTO_TEST_EPMD_PORT:-$((AMQP_PORT + 21000))}"
MARIADB_DIR="$RUN_DIR/mariadb"
MARIADB_DATA="$MARIADB_DIR/data"
MARIADB_LOG="$MARIADB_DIR/error.log"
MARIADB_PIDFILE="$RUN_DIR/mariadb.pid"
MOTO_LOG="$RUN_DIR/moto.log"
MOTO_PIDFILE="$RUN_DIR/moto.pid"
LEASE_DIR="$RUN_DIR/leases"
# A Unix socket path must stay under ~108 bytes: fall back to /tmp for deep checkouts.
MARIADB_SOCK="$RUN_DIR/mariadb.sock"
if ((${#MARIADB_SOCK} > 100)); then
    MARIADB_SOCK="/tmp/nacento-$(printf '%s' "$NACENTO_ROOT" | sha256sum | cut -c1-12).sock"
fi

log() { printf '%s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------------------------------

_apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    log "installing Debian packages: $*"
    local out="$RUN_DIR/apt.log"
    mkdir -p "$RUN_DIR"
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; } >"$out" 2>&1; then
        tail -n 30 "$out" >&2
        die "apt-get install $* failed (full log: $out)"
    fi
}

ensure_deps() {
    local missing=()
    local cmd
    for cmd in mariadbd mariadb-install-db mariadb mariadb-admin; do
        if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd ]]; then
            missing=(mariadb-server mariadb-client)
            break
        fi
    done
    if ! command -v python3 >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif [[ ! -x "$VENV/bin/python" ]] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [[ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
        missing+=(rabbitmq-server)
    fi
    # --magento-root reads app/etc/env.php with PHP; php-mysql defines the PDO::MYSQL_ATTR_* constants
    # that env.php files use for TLS (without it, such a file fails to load).
    if ! command -v php >/dev/null 2>&1 || ! php -r 'exit(defined("PDO::MYSQL_ATTR_SSL_CA") ? 0 : 1);' >/dev/null 2>&1; then
        missing+=(php-cli php-mysql)
    fi
    if ((${#missing[@]})); then
        _apt_install "${missing[@]}"
    fi
    # mariadbd lives in /usr/sbin, which a non-login PATH may lack.
    case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac

    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
    # The development/CI environment is the lock file (requirements/dev.txt: every package pinned, with
    # hashes), then the project itself without dependencies; re-installed when the lock or pyproject.toml
    # changes. `pip check` proves the lock satisfies pyproject's ranges.
    local lock="$NACENTO_ROOT/requirements/dev.txt"
    [[ -f "$lock" ]] || die "$lock is missing"
    local stamp="$VENV/.nacento-deps.sha256" want have=""
    want="$(cat "$lock" "$NACENTO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" != "$have" ]]; then
        log "installing Python dependencies into .venv (pip install --require-hashes -r requirements/dev.txt)"
        mkdir -p "$RUN_DIR"
        local out="$RUN_DIR/pip.log"
        if ! (cd "$NACENTO_ROOT" &&
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$lock" &&
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . &&
            "$VENV/bin/python" -m pip check) >"$out" 2>&1; then
            tail -n 40 "$out" >&2
            die "installing the locked dependencies failed (full log: $out)"
        fi
        printf '%s\n' "$want" >"$stamp"
    fi
}

# ---------------------------------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------------------------------

# True when $1 is a live (non-zombie) process whose command line contains $2.
_pid_is() {
    local pid="$1" needle="$2" stat state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    state="${stat##*) }"
    state="${state%% *}"
    [[ "$state" != Z ]] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$needle"
}

# Prints the pid recorded in pidfile $1 if it is alive and matches $2; fails otherwise.
_running_pid() {
    local pidfile="$1" needle="$2" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null)"
    if _pid_is "$pid" "$needle"; then
        printf '%s\n' "$pid"
        return 0
    fi
    rm -f "$pidfile"
    return 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Stop the process in pidfile $1 (matching $2): SIGTERM, wait up to $3 seconds, then SIGKILL.
_stop_pidfile() {
    local pidfile="$1" needle="$2" timeout="${3:-30}" pid i
    pid="$(_running_pid "$pidfile" "$needle")" || {
        rm -f "$pidfile"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        _pid_is "$pid" "$needle" || break
        sleep 0.1
    done
    if _pid_is "$pid" "$needle"; then
        log "$needle (pid $pid) did not stop in ${timeout}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    # Reap it if it is our own child (otherwise it lingers as a zombie until we exit).
    wait "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------------------------------

_mariadb_ping() {
    mariadb-admin --no-defaults --protocol=socket -S "$MARIADB_SOCK" -uroot --connect-timeout=2 ping \
        >/dev/null 2>&1
}

_mariadb_start() {
    local pid
    if pid="$(_running_pid "$MARIADB_PIDFILE" mariadbd)"; then
        _mariadb_ping && return 0
        die "mariadbd (pid $pid) runs but does not answer on $MARIADB_SOCK; try: scripts/services stop"
    fi
    if _port_open "$DB_PORT"; then
        die "port $DB_PORT is taken by another program; stop it or set NACENTO_TEST_DB_PORT"
    fi
    mkdir -p "$MARIADB_DIR"
    if [[ ! -d "$MARIADB_DATA/mysql" ]]; then
        rm -rf "$MARIADB_DATA"
        if ! mariadb-install-db --no-defaults --datadir="$MARIADB_DATA" --user=root \
            --auth-root-authentication-method=normal --skip-test-db >"$MARIADB_DIR/install.log" 2>&1; then
            tail -n 30 "$MARIADB_DIR/install.log" >&2
            rm -rf "$MARIADB_DATA"
            die "mariadb-install-db failed (log: $MARIADB_DIR/install.log)"
        fi
    fi
    rm -f "$MARIADB_SOCK"
    : >"$MARIADB_LOG"
    mariadbd --no-defaults --datadir="$MARIADB_DATA" --user=root \
        --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$MARIADB_SOCK" \
        --pid-file="$MARIADB_DIR/mariadbd.pid" --log-error="$MARIADB_LOG" \
        --skip-name-resolve --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --max-connections=500 --userstat=1 \
        </dev/null >>"$MARIADB_LOG" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$MARIADB_PIDFILE"
    local i
    for ((i = 0; i < 600; i++)); do
        if ! _pid_is "$pid" mariadbd; then
            tail -n 30 "$MARIADB_LOG" >&2
            rm -f "$MARIADB_PIDFILE"
            die "mariadbd exited during start-up (log: $MARIADB_LOG)"
        fi
        if _mariadb_ping; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$MARIADB_LOG" >&2
    _stop_pidfile "$MARIADB_PIDFILE" mariadbd 10
    die "mariadbd did not answer within 60s (log: $MARIADB_LOG)"
}

# ---------------------------------------------------------------------------------------------------
# moto (S3)
# ---------------------------------------------------------------------------------------------------

# True when an HTTP server answers on 127.0.0.1:$1.
_http_answers() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        line=""
        IFS= read -r -t 3 line <&3 || true
        [[ "$line" == HTTP/* ]]
    ) 2>/dev/null
}

_moto_start() {
    local pid
    if pid="$(_running_pid "$MOTO_PIDFILE" moto_server)"; then
        _http_answers "$S3_PORT" && return 0
        die "moto_server (pid $pid) runs but does not answer on port $S3_PORT; try: scripts/services stop"
    fi
    if _port_open "$S3_PORT"; then
        die "port $S3_PORT is taken by another program; stop it or set NACENTO_TEST_S3_PORT"
    fi
    [[ -x "$VENV/bin/moto_server" ]] || die "$VENV/bin/moto_server is missing (run ensure_deps)"
    : >"$MOTO_LOG"
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" </dev/null >>"$MOTO_LOG" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$MOTO_PIDFILE"
    local i
    for ((i = 0; i < 600; i++)); do
        if ! _pid_is "$pid" moto_server; then
            tail -n 30 "$MOTO_LOG" >&2
            rm -f "$MOTO_PIDFILE"
            die "moto_server exited during start-up (log: $MOTO_LOG)"
        fi
        if _http_answers "$S3_PORT"; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$MOTO_LOG" >&2
    _stop_pidfile "$MOTO_PIDFILE" moto_server 10
    die "moto_server did not answer within 60s (log: $MOTO_LOG)"
}

# ---------------------------------------------------------------------------------------------------
# RabbitMQ (Debian's rabbitmq-server 3.10): a private node with its own epmd, everything on 127.0.0.1.
#
#   rabbitmq_node_launch DIR PORT DIST_PORT EPMD_PORT   start a node whose files all live under DIR
#   rabbitmq_node_wait DIR PORT                         until it accepts AMQP connections (or die)
#   rabbitmq_node_stop DIR [keep-epmd]                  stop it (and its epmd unless keep-epmd)
#
# The tests use these for a second, throw-away node they may restart. The node runs the Erlang VM
# directly (/usr/lib/rabbitmq/bin, not the /usr/sbin wrapper that switches user); DIR/rabbitmq.pid is
# the VM, DIR/epmd.pid the port mapper started for it on a private port, bound to 127.0.0.1. Guest may
# log in from 127.0.0.1 (RabbitMQ's default for loopback).
# ---------------------------------------------------------------------------------------------------

RABBIT_DIR="$RUN_DIR/rabbitmq"
RABBIT_BIN=/usr/lib/rabbitmq/bin/rabbitmq-server

_rabbitmq_running() { # DIR -> prints the VM's pid when it runs
    _running_pid "$1/rabbitmq.pid" "$1/home"
}

rabbitmq_node_launch() {
    local dir="$1" port="$2" dist="$3" epmd_port="$4" pid
    [[ -x "$RABBIT_BIN" ]] || die "$RABBIT_BIN is missing (run ensure_deps)"
    if pid="$(_rabbitmq_running "$dir")"; then
        return 0
    fi
    if _port_open "$port"; then
        die "port $port is taken by another program; stop it or set NACENTO_TEST_AMQP_PORT"
    fi
    mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
    printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$port" >"$dir/rabbitmq.conf"
    printf '[].\n' >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf" # keeps /etc/rabbitmq/rabbitmq-env.conf out of it
    if ! _running_pid "$dir/epmd.pid" epmd >/dev/null && ! _port_open "$epmd_port"; then
        # (An epmd already on that port, e.g. another checkout's, is shared, never stopped by us.)
        ERL_EPMD_ADDRESS=127.0.0.1 epmd -port "$epmd_port" </dev/null >"$dir/log/epmd.log" 2>&1 9>&- &
        printf '%s\n' "$!" >"$dir/epmd.pid"
    fi
    rm -f "$dir/rabbitmq.pid"
    : >"$dir/log/console.log"
    env HOME="$dir/home" \
        RABBITMQ_NODENAME="nacento-$port@localhost" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$port" \
        RABBITMQ_DIST_PORT="$dist" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        ERL_EPMD_PORT="$epmd_port" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        "$RABBIT_BIN" </dev/null >>"$dir/log/console.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$dir/launcher.pid"
}

rabbitmq_node_wait() {
    local dir="$1" port="$2" launcher i
    launcher="$(cat "$dir/launcher.pid" 2>/dev/null || true)"
    for ((i = 0; i < 1200; i++)); do
        if _port_open "$port" && _rabbitmq_running "$dir" >/dev/null; then
            return 0
        fi
        if [[ -n "$launcher" ]] && ! _pid_is "$launcher" rabbitmq && ! _rabbitmq_running "$dir" >/dev/null; then
            tail -n 30 "$dir/log/console.log" >&2
            die "rabbitmq-server exited during start-up (logs: $dir/log)"
        fi
        sleep 0.1
    done
    tail -n 30 "$dir/log/console.log" >&2
    rabbitmq_node_stop "$dir"
    die "rabbitmq-server did not accept connections on port $port within 120s (logs: $dir/log)"
}

rabbitmq_node_stop() {
    local dir="$1" keep_epmd="${2:-}" launcher
    _stop_pidfile "$dir/rabbitmq.pid" "$dir/home" 60
    launcher="$(cat "$dir/launcher.pid" 2>/dev/null || true)"
    if [[ -n "$launcher" ]]; then
        wait "$launcher" 2>/dev/null || true # reap our child, if it is one
    fi
    rm -f "$dir/launcher.pid"
    if [[ "$keep_epmd" != keep-epmd ]]; then
        _stop_pidfile "$dir/epmd.pid" epmd 10
    fi
}

_write_env() {
    local tmp="$RUN_DIR/env.tmp.$$"
    cat >"$tmp" <<EOF
# Written by scripts/services; source it to reach the local test servers.
export NACENTO_TEST_DB_HOST=127.0.0.1
export NACENTO_TEST_DB_PORT=$DB_PORT
export NACENTO_TEST_DB_USER=root
export NACENTO_TEST_DB_PASSWORD=
export NACENTO_TEST_DB_SOCKET=$MARIADB_SOCK
export NACENTO_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export NACENTO_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
EOF
    mv -f "$tmp" "$RUN_DIR/env"
}

# Run "$@" holding the services lock (serialises start/stop between concurrent scripts).
_with_lock() {
    mkdir -p "$RUN_DIR"
    local rc=0
    exec 9>"$RUN_DIR/services.lock"
    flock -w 120 9 || die "could not lock $RUN_DIR/services.lock"
    "$@" || rc=$?
    flock -u 9
    exec 9>&-
    return "$rc"
}

_prune_leases() {
    local f pid
    mkdir -p "$LEASE_DIR"
    for f in "$LEASE_DIR"/*; do
        [[ -e "$f" ]] || continue
        pid="${f##*/}"
        [[ "$pid" == hold ]] && continue
        if [[ ! "$pid" =~ ^[0-9]+$ ]] || [[ ! -e /proc/$pid ]]; then
            rm -f "$f"
        fi
    done
}

_services_start_locked() {
    local hold="$1"
    _prune_leases
    rabbitmq_node_launch "$RABBIT_DIR" "$AMQP_PORT" "$AMQP_DIST_PORT" "$EPMD_PORT" # boots while the others start
    _mariadb_start
    _moto_start
    rabbitmq_node_wait "$RABBIT_DIR" "$AMQP_PORT"
    _write_env
    if [[ "$hold" == 1 ]]; then
        : >"$LEASE_DIR/hold"
    else
        : >"$LEASE_DIR/$$"
    fi
}

services_start() {
    local hold=0
    [[ "${1:-}" == --hold ]] && hold=1
    case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
    _with_lock _services_start_locked "$hold"
}

_services_stop_locked() {
    rabbitmq_node_stop "$RABBIT_DIR"
    _stop_pidfile "$MOTO_PIDFILE" moto_server 15
    _stop_pidfile "$MARIADB_PIDFILE" mariadbd 60
    rm -rf "$LEASE_DIR"
    rm -f "$RUN_DIR/env"
}

services_stop() {
    _with_lock _services_stop_locked
}

_services_release_locked() {
    rm -f "$LEASE_DIR/$$"
    _prune_leases
    if [[ -n "$(ls -A "$LEASE_DIR" 2>/dev/null)" ]]; then
        return 0 # someone else (or a manual `scripts/services start`) still uses them
    fi
    _services_stop_locked
}

# For `trap services_release EXIT`: keeps the exit status of the script.
services_release() {
    local rc=$?
    [[ -d "$RUN_DIR" ]] && _with_lock _services_release_locked || true
    return "$rc"
}

# Release the lease on exit, also when interrupted (bash skips EXIT traps on unhandled signals).
services_release_on_exit() {
    trap services_release EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
}

services_status() {
    local pid rc=0
    if pid="$(_running_pid "$MARIADB_PIDFILE" mariadbd)"; then
        echo "mariadb: running (pid $pid, 127.0.0.1:$DB_PORT, socket $MARIADB_SOCK)"
    else
        echo "mariadb: stopped"
        rc=3
    fi
    if pid="$(_running_pid "$MOTO_PIDFILE" moto_server)"; then
        echo "moto s3: running (pid $pid, http://127.0.0.1:$S3_PORT)"
    else
        echo "moto s3: stopped"
        rc=3
    fi
    if pid="$(_rabbitmq_running "$RABBIT_DIR")"; then
        echo "rabbitmq: running (pid $pid, amqp://127.0.0.1:$AMQP_PORT, epmd port $EPMD_PORT)"
    else
        echo "rabbitmq: stopped"
        rc=3
    fi
    if [[ -d "$LEASE_DIR" ]] && [[ -n "$(ls -A "$LEASE_DIR" 2>/dev/null)" ]]; then
        echo "held by: $(ls "$LEASE_DIR" | tr '\n' ' ')"
    fi
    return "$rc"
}
