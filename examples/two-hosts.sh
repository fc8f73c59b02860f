#!/usr/bin/env bash
# Two certboard hosts on one PostgreSQL database, on this machine:
#
#   bash examples/two-hosts.sh
#
# Starts a throwaway PostgreSQL cluster (scripts/pg-test-cluster.sh: initdb
# in a temporary directory, a free loopback port; installs Debian's
# postgresql if it is missing), two servers on it (host A makes the CA
# root, host B gets a copy of keys/), then a student who enrolls at host A
# and submits her report to host B. Everything is removed on exit.
# CERTBOARD_SERVER and CERTBOARD_CLIENT name prebuilt binaries (the tests
# set them); otherwise they are built with cargo.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
server=${CERTBOARD_SERVER:-}
client=${CERTBOARD_CLIENT:-}
if [[ -z $server || -z $client ]]; then
    (cd "$root" && cargo build --quiet --bin server --bin client)
    server=$root/target/debug/server
    client=$root/target/debug/client
fi
server=$(readlink -f "$server")
client=$(readlink -f "$client")

work=$(mktemp -d)
# Run as root, the cluster runs as `postgres`, which must reach its dir.
chmod 0711 "$work"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash "$root/scripts/pg-test-cluster.sh" stop "$work/pg" || true
    rm -rf -- "$work"
}
trap cleanup EXIT

# The database every host uses. In the environment rather than on the
# command line, so the password does not show in `ps`.
CERTBOARD_DATABASE=$(bash "$root/scripts/pg-test-cluster.sh" start "$work/pg" $$)
export CERTBOARD_DATABASE
export CERTBOARD_CA_PASSPHRASE="two hosts example passphrase"
echo "== PostgreSQL at ${CERTBOARD_DATABASE%%:*}://certboard@${CERTBOARD_DATABASE#*@}"

# Starts a host in directory $1 (its keys/ there); prints its two addresses.
start_host() {
    local dir=$1 i
    (cd "$dir" && exec "$server" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
        --ca-key-type p256 >"$dir/stdout" 2>"$dir/log") &
    pids+=($!)
    for ((i = 0; i < 300; i++)); do
        if grep -q '^listening blackboard' "$dir/stdout" 2>/dev/null &&
            grep -q '^listening ca' "$dir/stdout"; then
            return 0
        fi
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/log" >&2; echo "host in $dir did not start" >&2; exit 1; }
        sleep 0.1
    done
    cat "$dir/log" >&2
    echo "host in $dir did not start within 30 s" >&2
    exit 1
}
addr() { awk -v k="$2" '$1 == "listening" && $2 == k { print $3 }' "$1/stdout"; }

mkdir "$work/a" "$work/b" "$work/student"
start_host "$work/a"
echo "== host A: CA $(addr "$work/a" ca), Blackboard $(addr "$work/a" blackboard)"
# Host B: the same root, key and log key (copied; the passphrase comes apart, here
# from the environment), the same database.
mkdir -m 0700 "$work/b/keys"
cp -p "$work/a/keys/ca-key.pem" "$work/a/keys/ca-cert.pem" "$work/a/keys/log-key.pem" "$work/b/keys/"
start_host "$work/b"
echo "== host B: CA $(addr "$work/b" ca), Blackboard $(addr "$work/b" blackboard)"

echo "== student 1155000001 enrolls at host A and submits to host B"
(cd "$work/student" && "$client" --ca "$(addr "$work/a" ca)" \
    --blackboard "$(addr "$work/b" blackboard)" \
    --ca-cert "$work/a/keys/ca-cert.pem" --timeout 20 1155000001)

echo "== what both hosts recorded, from an admin command on host A's keys"
(cd "$work/a" && "$server" certs && "$server" reports)
[[ $(cd "$work/a" && "$server" reports | wc -l) -eq 1 ]] || { echo "no report recorded" >&2; exit 1; }
echo "enrolled on host A, submitted on host B"
