#!/usr/bin/env bash
# bench/log-share.sh — the transparency log's share of the server's work
# per enrollment and per submission (issue 21: at most 10%), counted in
# instructions with callgrind, so the figure does not depend on the load
# of the machine. See BENCHMARKS.md, "Transparency log (issue 21)".
#
#   bash bench/log-share.sh                    # ~10 minutes (callgrind is ~50x slower)
#   BENCH_ENROLLMENTS=500 BENCH_SUBMISSIONS=200 bash bench/log-share.sh
#   BENCH_CA_KEY=rsa2048 bash bench/log-share.sh
#   BENCH_SERVER=/path/to/other/server bash bench/log-share.sh
#                                              # another server binary (an A/B)
#
# The server (release build, database on disk as in bench/compare.sh) runs
# under `valgrind --tool=callgrind`; the counters are zeroed before and
# dumped after each measured phase (callgrind_control), driven by the same
# load generator invocations as compare.sh with --count: enrollments
# (protocol version 2, events I/O, 16 per connection), then version 2
# submissions (each with its own certificate, enrolled before the counters
# are zeroed). The log's share is the inclusive cost of its entry points
# (leaves_of + sqlite_append in the commit, the receipt's log_proof, the
# checkpoint signature) over the whole process's instructions, counted by
# bench/callgrind-share.py; the dumps and callgrind_annotate's output are
# kept in BENCH_OUT (default $TARGET/log-share/).
#
# Needs valgrind (callgrind_control, callgrind_annotate), taskset, python3, cargo.
# Listens on 127.0.0.1 only; the server is stopped by PID at exit.

set -euo pipefail

ENROLLMENTS=${BENCH_ENROLLMENTS:-1000}
SUBMISSIONS=${BENCH_SUBMISSIONS:-300}
KIND=${BENCH_CA_KEY:-p256}
PASS="certboard bench passphrase"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$TARGET/log-share}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certboard-logshare.XXXXXX")
SERVER_PID=""
LG_PID=""

cleanup() {
    for pid in "$LG_PID" "$SERVER_PID"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
die() { echo "log-share.sh: $*" >&2; exit 1; }

for tool in valgrind callgrind_control callgrind_annotate taskset cargo awk python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
echo "building (release) ..."
(cd "$ROOT" && cargo build --release --quiet --bin server --example loadgen)
SERVER=${BENCH_SERVER:-$TARGET/release/server}
LOADGEN="$TARGET/release/examples/loadgen"
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out.* "$OUT"/*.annotate

DIR="$WORK/server"
mkdir -p "$DIR"
CERTBOARD_CA_PASSPHRASE="$PASS" RUST_LOG=warn taskset -c 0 \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
    "$SERVER" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
    --keys-dir "$DIR/keys" --data-dir "$DIR/data" --ca-key-type "$KIND" \
    --deadline 600 --idle-timeout 600 \
    >"$DIR/stdout" 2>"$DIR/stderr" &
SERVER_PID=$!
CA="" BB=""
for _ in $(seq 1 600); do
    CA=$(awk '/^listening ca / { print $3 }' "$DIR/stdout" 2>/dev/null || true)
    BB=$(awk '/^listening blackboard / { print $3 }' "$DIR/stdout" 2>/dev/null || true)
    [ -n "$CA" ] && [ -n "$BB" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
done
[ -n "$CA" ] || { cat "$DIR/stderr" >&2; die "the server did not start"; }

KEYS="$WORK/student-keys.pem"
"$LOADGEN" --mode keys --keys 64 --key-file "$KEYS" >/dev/null
lg() { taskset -c 1 "$LOADGEN" --key-file "$KEYS" --keys 64 --per-connection 16 "$@"; }

# Warm-up (a few hundred leaves, the statements prepared, pages cached).
lg --ca "$CA" --mode enroll --io events --concurrency 64 --count 200 --duration 600 >/dev/null 2>&1

# enroll_phase LABEL CONCURRENCY COUNT: one dump.
enroll_phase() {
    echo "$1: $3 enrollments, $2 clients, under callgrind ..."
    callgrind_control -z "$SERVER_PID" >/dev/null
    lg --ca "$CA" --mode enroll --io events --concurrency "$2" --count "$3" --duration 1200 \
        --server-pid "$SERVER_PID" --label "$1" 2>/dev/null | tail -1 >"$OUT/$1.json"
    callgrind_control -d "$1" "$SERVER_PID" >/dev/null
}

# submit_phase LABEL CONCURRENCY COUNT FIRST_SID: one dump.
submit_phase() {
    echo "$1: $3 submissions, $2 clients, under callgrind (their certificates first) ..."
    lg --ca "$CA" --blackboard "$BB" --mode submit --concurrency "$2" --count "$3" \
        --pool "$3" --duration 1200 --first-sid "$4" --server-pid "$SERVER_PID" \
        --label "$1" >"$WORK/submit.out" 2>"$WORK/submit.err" &
    LG_PID=$!
    # Zeroed once the pool's certificates are enrolled, before the first
    # submission: the load generator says so on stderr.
    for _ in $(seq 1 12000); do
        grep -q '^enrolled ' "$WORK/submit.err" && break
        kill -0 "$LG_PID" 2>/dev/null || break
        sleep 0.05
    done
    grep -q '^enrolled ' "$WORK/submit.err" || { cat "$WORK/submit.err" >&2; die "the submissions' certificates were not enrolled"; }
    callgrind_control -z "$SERVER_PID" >/dev/null
    wait "$LG_PID"
    LG_PID=""
    tail -1 "$WORK/submit.out" >"$OUT/$1.json"
    callgrind_control -d "$1" "$SERVER_PID" >/dev/null
}

# As compare.sh (64 clients, 8 submitting), then one client at a time:
# every commit batch then holds one record, the worst case for the
# checkpoint signature's amortisation.
PHASES=(enroll-64 enroll-1 submit-8 submit-1)
enroll_phase enroll-64 64 "$ENROLLMENTS"
enroll_phase enroll-1 1 $((ENROLLMENTS / 5))
submit_phase submit-8 8 "$SUBMISSIONS" 1166000000
submit_phase submit-1 1 $((SUBMISSIONS / 3)) 1167000000
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

# The log: its modules (src/tlog/, src/store/tlog.rs,
# src/protocol/logproof.rs), the receipt's log_proof and the store's log_*
# reads. callgrind-share.py counts the calls into that set from outside it
# (inclusive), so nothing is counted twice.
LOG_RE='certboard::(tlog::|store::tlog::|protocol::logproof::|protocol::blackboard::log_proof)|::log_(head|nodes|entries|entry_and_nodes|index_of)$'
# The dumps are numbered in the order of PHASES.
n=0
for phase in "${PHASES[@]}"; do
    n=$((n + 1))
    f=$(ls "$OUT"/callgrind.out.*."$n" 2>/dev/null | head -1 || true)
    [ -n "$f" ] || die "no callgrind dump for $phase in $OUT"
    ops=$(sed -n 's/.*"ops":\([0-9]*\).*/\1/p' "$OUT/$phase.json")
    echo "## $phase ($ops operations): $(cat "$OUT/$phase.json")"
    python3 "$ROOT/bench/callgrind-share.py" "$f" "$LOG_RE" "$ops" | tee "$OUT/$phase.share"
    callgrind_annotate --inclusive=yes "$f" >"$OUT/$phase.annotate" 2>/dev/null || true
done
