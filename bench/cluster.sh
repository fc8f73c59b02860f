#!/usr/bin/env bash
# bench/cluster.sh — enrollments/s of certboard on PostgreSQL with one host
# and with two hosts, and on SQLite with one host, in one run (P-256 CA).
# Not run in CI: it needs root (network namespaces). See BENCHMARKS.md
# ("More than one host") for a recorded run.
#
#   sudo bash bench/cluster.sh                 # three figures, ~20 s each
#   BENCH_SECONDS=10 sudo bash bench/cluster.sh
#
# Layout: PostgreSQL (a throwaway cluster from scripts/pg-test-cluster.sh)
# runs in its own network namespace, each certboard host in another, joined
# to the database's namespace by a veth pair:
#
#   ns cbb-a-PID  10.200.1.2 ==veth== 10.200.1.1  ns cbb-db-PID  10.200.2.1 ==veth== 10.200.2.2  ns cbb-b-PID
#
# The addresses exist only inside the namespaces this script makes; no
# route leads out of them, and the namespaces (with their veths) are
# deleted on exit, however the script ends. Each host's load generator
# (examples/loadgen.rs) runs inside that host's namespace against its
# loopback, so the only traffic between namespaces is certboard's to
# PostgreSQL. The SQLite figure runs host A's namespace alone.
#
# Nothing is pinned: the two cores are shared by the hosts, PostgreSQL and
# the load generators, as they would be on one small machine; the servers'
# and PostgreSQL's CPU time over each timed phase are printed beside the
# rates, to say where the time goes.

set -euo pipefail

SECS=${BENCH_SECONDS:-20}
CONC=${BENCH_CONCURRENCY:-32}
PER_CONN=${BENCH_PER_CONNECTION:-16}
PASS="certboard cluster bench passphrase"
TAG=$$
NS_DB=cbb-db-$TAG
NS_A=cbb-a-$TAG
NS_B=cbb-b-$TAG

ROOT=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "cluster.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
for tool in ip awk sed cargo; do command -v "$tool" >/dev/null || die "$tool is missing"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/certboard-cluster.XXXXXX")
chmod 0711 "$WORK" # the cluster runs as `postgres`, which must reach its dir
PIDS=()
NAMESPACES=()

cleanup() {
    local pid ns
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    if [ -d "$WORK/pg" ]; then
        ip netns exec "$NS_DB" bash "$ROOT/scripts/pg-test-cluster.sh" stop "$WORK/pg" || true
    fi
    for ns in "${NAMESPACES[@]:-}"; do
        [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

calc() { awk "BEGIN { printf \"%.2f\", $* }"; }
jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
# CPU seconds used so far by every process of user postgres.
pg_cpu() {
    local tck total=0 f
    tck=$(getconf CLK_TCK)
    for f in /proc/[0-9]*/stat; do
        [ "$(stat -c %U "$f" 2>/dev/null)" = postgres ] || continue
        total=$((total + $(awk '{ print $14 + $15 }' "$f" 2>/dev/null || echo 0)))
    done
    calc "$total / $tck"
}

echo "building (release) ..."
(cd "$ROOT" && cargo build --release --quiet --bin server --example loadgen)
SERVER="$ROOT/target/release/server"
LOADGEN="$ROOT/target/release/examples/loadgen"

# ---------------------------------------------------------------- namespaces
for ns in "$NS_DB" "$NS_A" "$NS_B"; do
    ip netns add "$ns"
    NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
done
# host X <-> db: veth pair, a /30 each, nothing else routed.
link() {
    local ns=$1 n=$2
    local host_if="cbb${n}h$TAG" db_if="cbb${n}d$TAG"
    ip link add "$host_if" type veth peer name "$db_if"
    ip link set "$host_if" netns "$ns"
    ip link set "$db_if" netns "$NS_DB"
    ip -n "$ns" addr add "10.200.$n.2/30" dev "$host_if"
    ip -n "$NS_DB" addr add "10.200.$n.1/30" dev "$db_if"
    ip -n "$ns" link set "$host_if" up
    ip -n "$NS_DB" link set "$db_if" up
}
link "$NS_A" 1
link "$NS_B" 2

# ---------------------------------------------------------------- PostgreSQL
URL=$(ip netns exec "$NS_DB" bash "$ROOT/scripts/pg-test-cluster.sh" start "$WORK/pg")
PG=$WORK/pg
cat >>"$PG/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1,10.200.1.1,10.200.2.1'
EOF
echo "host all all 10.200.0.0/16 scram-sha-256" >>"$PG/data/pg_hba.conf"
ip netns exec "$NS_DB" bash "$ROOT/scripts/pg-test-cluster.sh" halt "$PG"
ip netns exec "$NS_DB" bash "$ROOT/scripts/pg-test-cluster.sh" resume "$PG"
URL_A=${URL/@127.0.0.1:/@10.200.1.1:}
URL_B=${URL/@127.0.0.1:/@10.200.2.1:}
PG_VERSION=$("$(cat "$PG/bindir")/postgres" --version)

# ---------------------------------------------------------------- hosts
# start_host NS NAME [--database URL]: a host listening on the namespace's
# loopback; sets HOST_PID once it listens.
start_host() {
    local ns=$1 name=$2 i
    shift 2
    ip netns exec "$ns" env CERTBOARD_CA_PASSPHRASE="$PASS" RUST_LOG=warn "$SERVER" \
        --ca-listen 127.0.0.1:8011 --blackboard-listen 127.0.0.1:8002 \
        --keys-dir "$WORK/keys" --data-dir "$WORK/data-$name" --ca-key-type p256 "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    for ((i = 0; i < 300; i++)); do
        grep -q '^listening blackboard' "$WORK/$name.out" 2>/dev/null && { HOST_PID=${PIDS[-1]}; return 0; }
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "host $name did not start"; }
        sleep 0.1
    done
    die "host $name did not start within 30 s"
}
stop_host() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# loadgen NS PID FIRST_SID SECONDS: enrollments against the namespace's
# loopback for SECONDS; prints the JSON line.
loadgen() {
    ip netns exec "$1" "$LOADGEN" --ca 127.0.0.1:8011 --mode enroll --io events \
        --concurrency "$CONC" --per-connection "$PER_CONN" --key-file "$WORK/keys.pool" --keys 64 \
        --first-sid "$3" --duration "$4" --server-pid "$2" 2>>"$WORK/loadgen.log" | tail -1
}

"$LOADGEN" --mode keys --key-file "$WORK/keys.pool" --keys 64 >/dev/null 2>>"$WORK/loadgen.log"

declare -A RATE ERRORS CPU PGCPU
SID=1155000000

# One host: warm-up, then the timed phase.
one_host() {
    local label=$1 pid j pg0 pg1
    pid=$2
    loadgen "$NS_A" "$pid" "$SID" 3 >/dev/null
    SID=$((SID + 1000000))
    pg0=$(pg_cpu)
    j=$(loadgen "$NS_A" "$pid" "$SID" "$SECS")
    pg1=$(pg_cpu)
    SID=$((SID + 1000000))
    RATE[$label]=$(jget "$j" ops_per_sec)
    ERRORS[$label]=$(jget "$j" errors)
    CPU[$label]=$(jget "$j" server_cpu_us_per_op)
    PGCPU[$label]=$(calc "($pg1 - $pg0) * 1000000 / ($(jget "$j" ops) + 0.000001)")
}

echo "SQLite, one host ..."
start_host "$NS_A" sqlite
PID_S=$HOST_PID
one_host sqlite "$PID_S"
stop_host "$PID_S"

echo "PostgreSQL, one host ..."
start_host "$NS_A" a --database "$URL_A"
PID_A=$HOST_PID
one_host pg1 "$PID_A"

echo "PostgreSQL, two hosts ..."
start_host "$NS_B" b --database "$URL_B"
PID_B=$HOST_PID
loadgen "$NS_A" "$PID_A" "$SID" 3 >/dev/null &
WARM=$!
loadgen "$NS_B" "$PID_B" $((SID + 500000)) 3 >/dev/null
wait "$WARM" || true
SID=$((SID + 1000000))
pg0=$(pg_cpu)
loadgen "$NS_A" "$PID_A" "$SID" "$SECS" >"$WORK/two-a.json" &
LA=$!
J_B=$(loadgen "$NS_B" "$PID_B" $((SID + 500000)) "$SECS")
wait "$LA"
pg1=$(pg_cpu)
J_A=$(cat "$WORK/two-a.json")
RATE[pg2]=$(calc "$(jget "$J_A" ops_per_sec) + $(jget "$J_B" ops_per_sec)")
ERRORS[pg2]=$(($(jget "$J_A" errors) + $(jget "$J_B" errors)))
OPS2=$(($(jget "$J_A" ops) + $(jget "$J_B" ops)))
CPU[pg2]="$(jget "$J_A" server_cpu_us_per_op)/$(jget "$J_B" server_cpu_us_per_op)"
PGCPU[pg2]=$(calc "($pg1 - $pg0) * 1000000 / ($OPS2 + 0.000001)")

# Every enrollment acknowledged by either host is in the one database.
IN_DB=$(ip netns exec "$NS_DB" runuser -u postgres -- "$(cat "$PG/bindir")/psql" -X -At \
    -h "$PG/sock" -p "$(cat "$PG/port")" -U postgres -d certboard -c "SELECT count(*) FROM certs")

echo
echo "certboard on PostgreSQL and SQLite, P-256 CA, $(nproc) cores, $PG_VERSION"
echo "enroll, $CONC connections x $PER_CONN enrollments each per host, ${SECS} s timed, TLS to the database (sslmode=prefer)"
printf '%-28s %12s %8s %24s %18s\n' "" "enroll/s" "errors" "server CPU us/op" "postgres CPU us/op"
printf '%-28s %12s %8s %24s %18s\n' "SQLite, one host" "${RATE[sqlite]}" "${ERRORS[sqlite]}" "${CPU[sqlite]}" "-"
printf '%-28s %12s %8s %24s %18s\n' "PostgreSQL, one host" "${RATE[pg1]}" "${ERRORS[pg1]}" "${CPU[pg1]}" "${PGCPU[pg1]}"
printf '%-28s %12s %8s %24s %18s\n' "PostgreSQL, two hosts" "${RATE[pg2]}" "${ERRORS[pg2]}" "${CPU[pg2]}" "${PGCPU[pg2]}"
echo
R2=$(calc "${RATE[pg2]} / ${RATE[pg1]}")
R1=$(calc "${RATE[pg1]} / ${RATE[sqlite]}")
echo "two hosts / one host on PostgreSQL: $R2 (target >= 1.5): $(awk "BEGIN { print ($R2 >= 1.5) ? \"met\" : \"MISSED\" }")"
echo "one host PostgreSQL / SQLite:       $R1 (target >= 0.7): $(awk "BEGIN { print ($R1 >= 0.7) ? \"met\" : \"MISSED\" }")"
echo "certificates in the database after both PostgreSQL runs: $IN_DB"
