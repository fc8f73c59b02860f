#!/usr/bin/env bash
# bench/submit-probe.sh — where a version 2 submission's server CPU time
# goes (BENCHMARKS.md, "CPU time rather than instructions"): the release
# server on CPU 0, `loadgen --mode submit --concurrency 8` on CPU 1 as
# compare.sh drives it, and one tool attached to the server once the
# certificates are enrolled, detached when the submissions are done.
#
#   bash bench/submit-probe.sh rsa2048 2000 perfstat   # perf stat --per-thread
#   bash bench/submit-probe.sh rsa2048 1000 strace     # strace -c -f
#   bash bench/submit-probe.sh rsa2048 2000 record     # perf record -g (cpu-clock)
#   bash bench/submit-probe.sh rsa2048 2000 none       # /proc per thread only
#
# BENCH_SERVER picks another server binary. Prints the load generator's
# JSON line, each server thread's user and system CPU per submission
# (/proc/PID/task/*/stat over the submissions) and the directory holding
# the tool's output (delete it afterwards). Builds nothing: run cargo
# build --release first (with CARGO_TARGET_DIR as compare.sh).
set -euo pipefail
KIND=${1:-rsa2048} COUNT=${2:-2000} TOOL=${3:-none}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${CARGO_TARGET_DIR:-$ROOT/target}/release
SERVER=${BENCH_SERVER:-$R/server}
W=$(mktemp -d "${TMPDIR:-/tmp}/certboard-probe.XXXXXX")
"$R/examples/loadgen" --mode keys --keys 64 --key-file "$W/keys.pem" >/dev/null
CERTBOARD_CA_PASSPHRASE="certboard bench passphrase" RUST_LOG=warn taskset -c 0 "$SERVER" \
    --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
    --keys-dir "$W/keys" --data-dir "$W/data" --ca-key-type "$KIND" >"$W/out" 2>"$W/err" &
SP=$!
trap 'kill $SP 2>/dev/null || true' EXIT
CA="" BB=""
for _ in $(seq 1 100); do
    CA=$(awk '/^listening ca /{print $3}' "$W/out" || true)
    BB=$(awk '/^listening blackboard /{print $3}' "$W/out" || true)
    [ -n "$CA" ] && [ -n "$BB" ] && break
    sleep 0.1
done
[ -n "$CA" ] || { cat "$W/err" >&2; exit 1; }
taskset -c 1 "$R/examples/loadgen" --key-file "$W/keys.pem" --keys 64 --per-connection 16 \
    --ca "$CA" --blackboard "$BB" --mode submit --concurrency "${CONC:-8}" --count "$COUNT" --duration 600 \
    --server-pid "$SP" --label probe >"$W/loadgen.out" 2>"$W/loadgen.err" &
LP=$!
until grep -q enrolled "$W/loadgen.err"; do
    kill -0 "$LP" 2>/dev/null || { cat "$W/loadgen.err" >&2; exit 1; }
    sleep 0.05
done
threads() { for t in /proc/$SP/task/*; do echo "$(basename "$t") $(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done | sort; }
threads >"$W/task0"
TP=""
case $TOOL in
perfstat) perf stat --per-thread -e task-clock,context-switches,cpu-migrations,page-faults -p "$SP" -o "$W/perf.txt" & TP=$! ;;
strace) strace -c -f -p "$SP" -o "$W/strace.txt" & TP=$! ;;
record) perf record -e cpu-clock -F 4999 -g -p "$SP" -o "$W/perf.data" 2>"$W/record.err" & TP=$! ;;
none) ;;
*) echo "unknown tool $TOOL" >&2; exit 2 ;;
esac
wait "$LP"
threads >"$W/task1"
if [ -n "$TP" ]; then kill -INT "$TP"; wait "$TP" || true; fi
tail -1 "$W/loadgen.out"
# utime and stime are in clock ticks (USER_HZ, 100 per second).
join "$W/task0" "$W/task1" | awk -v n="$COUNT" -v hz="$(getconf CLK_TCK)" \
    '{ printf "%s %s: user %.1f us, system %.1f us per submission\n", $1, $2, ($6 - $3) * 1e6 / hz / n, ($7 - $4) * 1e6 / hz / n }'
echo "output in $W"
