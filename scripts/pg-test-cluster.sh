#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for certboard's tests (issue 13).
#
#   bash scripts/pg-test-cluster.sh install            installs Debian's postgresql if initdb is missing
#   bash scripts/pg-test-cluster.sh start DIR [PID]    new cluster in DIR (must not exist or be empty);
#                                                      prints its URL; with PID, the cluster is also
#                                                      stopped and DIR removed once process PID exits
#   bash scripts/pg-test-cluster.sh halt DIR           stops the server (pg_ctl stop -m fast), keeps DIR
#   bash scripts/pg-test-cluster.sh resume DIR         starts a halted server again, same port
#   bash scripts/pg-test-cluster.sh stop DIR           stops the server and removes DIR
#
# The cluster listens on 127.0.0.1 only, on a free port, with its unix
# socket inside DIR; fsync stays on (the tests check durability). Host
# connections need a password (scram-sha-256); TLS is on, with a
# self-signed certificate for localhost and 127.0.0.1 in DIR/server.crt, so
# both plain and TLS connections work. The URL printed is
#   postgres://certboard:PASSWORD@127.0.0.1:PORT/certboard
# for a user that owns that database and may create others (CREATEDB).
#
# Run as root (as CI does), the server runs as the `postgres` user and DIR
# is handed to it. Non-interactive.
set -euo pipefail

log() { printf 'pg-test-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The newest Debian PostgreSQL, or whatever initdb is on PATH.
find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl ]]; then printf '%s\n' "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install() {
    if find_bindir >/dev/null; then return 0; fi
    command -v apt-get >/dev/null 2>&1 || die "no initdb and no apt-get: install PostgreSQL (15 or later)"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "no initdb: run this as root to install Debian's postgresql"
        sudo=(sudo -n)
    fi
    log "apt-get install postgresql"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq </dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql </dev/null >/dev/null
    find_bindir >/dev/null || die "postgresql installed but no initdb found under /usr/lib/postgresql"
}

# Runs a command as the cluster's owner: `postgres` when we are root
# (initdb and postgres refuse to run as root), else ourselves.
as_owner() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    # Connecting succeeds only if something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_start() {
    local dir=$1 bindir port
    bindir=$(<"$dir/bindir")
    port=$(<"$dir/port")
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port" start >/dev/null
}

start() {
    local dir=$1 owner_pid=${2:-}
    [[ -n $dir ]] || die "usage: start DIR [PID]"
    install
    local bindir
    bindir=$(find_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -z $(ls -A "$dir") ]] || die "$dir is not empty"
    if ((EUID == 0)); then
        id postgres >/dev/null 2>&1 || die "no postgres user (install Debian's postgresql)"
        chown postgres: "$dir"
    fi
    chmod 0700 "$dir"
    printf '%s\n' "$bindir" >"$dir/bindir"

    local password
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$password" >"$dir/pwfile"
    chmod 0600 "$dir/pwfile"
    ((EUID != 0)) || chown postgres: "$dir/pwfile"
    # The superuser, `postgres`, reaches the server only through the socket
    # in DIR (peer authentication); everyone else needs the password.
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth-local=peer \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }

    # TLS: a self-signed certificate naming localhost and 127.0.0.1.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
        -keyout "$dir/data/server.key" -out "$dir/data/server.crt" 2>/dev/null ||
        die "openssl could not make the server certificate (bash scripts/install-test-tools.sh)"
    chmod 0600 "$dir/data/server.key"
    ((EUID != 0)) || chown postgres: "$dir/data/server.key" "$dir/data/server.crt"
    cp "$dir/data/server.crt" "$dir/server.crt"

    mkdir "$dir/sock"
    ((EUID != 0)) || chown postgres: "$dir/sock"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
fsync = on
synchronous_commit = on
shared_buffers = 16MB
max_connections = 60
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF

    # A free port: pick one, start, and try another should it be taken by
    # the time the server binds it.
    local attempt port started=0
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" && continue
        printf '%s\n' "$port" >"$dir/port"
        if pg_start "$dir" 2>>"$dir/pg_ctl.log"; then started=1; break; fi
        grep -q 'could not bind\|Address already in use' "$dir/server.log" 2>/dev/null ||
            { cat "$dir/server.log" >&2 2>/dev/null || true; die "the server did not start"; }
        log "port $port taken; trying another (attempt $attempt)"
    done
    ((started)) || die "no free port found after 10 attempts"

    as_owner "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres \
        -d postgres >/dev/null <<EOF
CREATE ROLE certboard LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE certboard OWNER certboard;
EOF

    if [[ -n $owner_pid ]]; then
        # Stops the cluster once the test process that asked for it is
        # gone, however it ended (a cluster shared through a static is
        # never dropped).
        setsid bash "$0" watch "$dir" "$owner_pid" </dev/null >/dev/null 2>&1 &
    fi
    printf 'postgres://certboard:%s@127.0.0.1:%s/certboard\n' "$password" "$port"
}

halt() {
    local dir=$1
    [[ -f $dir/bindir ]] || die "$dir holds no test cluster"
    as_owner "$(<"$dir/bindir")/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

stop() {
    local dir=$1
    [[ -n $dir && -d $dir ]] || return 0
    if [[ -f $dir/bindir && -f $dir/data/postmaster.pid ]]; then
        as_owner "$(<"$dir/bindir")/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop \
            >/dev/null 2>&1 || true
    fi
    rm -rf -- "$dir"
}

watch() {
    local dir=$1 pid=$2 i
    # Bounded: a test binary that runs for more than a day is not ours.
    for ((i = 0; i < 86400; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        [[ -d $dir ]] || exit 0
        sleep 1
    done
    stop "$dir"
}

cmd=${1:-}
case $cmd in
install) install ;;
start) start "${2:-}" "${3:-}" ;;
halt) halt "${2:?usage: halt DIR}" ;;
resume) pg_start "${2:?usage: resume DIR}" ;;
stop) stop "${2:?usage: stop DIR}" ;;
watch) watch "${2:?}" "${3:?}" ;;
*) die "usage: $0 install | start DIR [PID] | halt DIR | resume DIR | stop DIR" ;;
esac
