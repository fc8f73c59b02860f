#!/usr/bin/env bash
# bench/witness.sh — what a witness costs (issue 21's stretch, PROTOCOL.md
# §11.5): the release server without witnesses, with one local witness
# (`server witness run`) and the default --witness-wait, and with
# `--witness-wait 0`, back to back and alternated (A B C, then C B A, ...),
# each driven as bench/compare.sh drives enrollment and submissions. See
# BENCHMARKS.md, "Witnesses (issue 21 stretch)", for a recorded run.
#
#   bash bench/witness.sh                   # both CA key types, ~6-10 min
#   BENCH_KINDS=p256 bash bench/witness.sh  # the P-256 CA only
#   BENCH_ROUNDS=3 BENCH_SECONDS=8 bash bench/witness.sh
#   BENCH_MODES="none wait" bash bench/witness.sh
#                                           # modes: none (no witness), wait
#                                           # (default --witness-wait), nowait
#                                           # (--witness-wait 0), waitshm (as
#                                           # wait, the witness's state on
#                                           # tmpfs: its fsyncs return at once)
#
# Per run it prints the load generator's JSON lines (throughput, p50/p99
# latency, the server's CPU per operation from /proc/PID/stat over the
# timed phase) and, from the server's GET /metrics, the commits
# (certboard_commit_latency_seconds_count) and the witness requests
# (certboard_witness_requests_total, by outcome) over the enrollment
# window and the submission window, and the witness process's own CPU
# time (utime+stime from /proc) per cosignature over both.
#
# Layout: the server on CPU 0; the load generator and the witness on CPU 1
# (a witness is usually another host: here it shares the load generator's
# core, not the server's). Loopback only; every process it starts is
# stopped by PID at exit and its temp dir removed; every load phase is
# bounded by --count or --duration.

set -euo pipefail

SECS=${BENCH_SECONDS:-6}
ROUNDS=${BENCH_ROUNDS:-2}
KINDS=${BENCH_KINDS:-p256 rsa2048}
SUBMIT_COUNT=${BENCH_SUBMIT_COUNT:-1000}
ENROLL_CONC=${BENCH_ENROLL_CONCURRENCY:-64}
PER_CONN=${BENCH_PER_CONNECTION:-16}
SERVER_CPU=0
CLIENT_CPU=1
PASS="certboard bench passphrase"
WITNESS_NAME=bench.example/w1
MODES=${BENCH_MODES:-none wait nowait waitshm}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certboard-witness-bench.XXXXXX")
RESULTS="$WORK/results.txt"
PIDS=()

# cleanup, jget, stop_pid, start_certboard.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT INT TERM

say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }
die() { echo "witness.sh: $*" >&2; exit 1; }
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }

[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server and load generator on separate cores)"
for tool in taskset curl cargo awk sed getconf; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 10 ] || die "BENCH_ROUNDS must be 1-10"

echo "building (release) ..."
(cd "$ROOT" && cargo build --release --quiet --bin server --example loadgen)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER=${BENCH_SERVER:-$TARGET_DIR/release/server}
LOADGEN="$TARGET_DIR/release/examples/loadgen"
KEYS="$WORK/student-keys.pem"
SHM=""
case " $MODES " in *" waitshm "*)
    [ -d /dev/shm ] && [ -w /dev/shm ] || die "mode waitshm needs a writable /dev/shm"
    SHM=$(mktemp -d /dev/shm/certboard-witness-bench.XXXXXX) ;;
esac
TICK=$(getconf CLK_TCK)

: >"$RESULTS"
say "# certboard witness bench, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "server on CPU $SERVER_CPU; load generator and witness on CPU $CLIENT_CPU; enroll: $ENROLL_CONC clients, $PER_CONN per connection, ${SECS} s; submit: 8 clients, $SUBMIT_COUNT submissions"
say ""

echo "generating the student key pool ..."
"$LOADGEN" --mode keys --keys 64 --key-file "$KEYS" >/dev/null

loadgen() {
    taskset -c "$CLIENT_CPU" "$LOADGEN" --key-file "$KEYS" --keys 64 --per-connection "$PER_CONN" "$@" \
        2>>"$WORK/loadgen.log" | tail -1
}

# A process's CPU time (utime+stime), microseconds.
cpu_us() { awk -v t="$TICK" '{ printf "%.0f", ($14 + $15) * 1e6 / t }' "/proc/$1/stat"; }

# metric HTTP_ADDR: "commits cosigned failed" from the server's /metrics.
metric() {
    curl -sS --max-time 5 "http://$1/metrics" | awk '
        /^certboard_commit_latency_seconds_count / { c = $2 }
        /^certboard_witness_requests_total\{/ && /outcome="cosigned"/ { ok += $2 }
        /^certboard_witness_requests_total\{/ && /outcome="failed"/ { bad += $2 }
        END { printf "%d %d %d\n", c, ok, bad }'
}

WITNESS_PID=""
WITNESS_ADDR=""
WITNESS_KEY=""
# start_witness DIR STATE_DIR LOG_VKEY: a fresh witness (its own key and
# state).
start_witness() {
    local dir=$1 state=$2 vkey=$3
    mkdir -p "$dir"
    WITNESS_KEY=$(CERTBOARD_CA_PASSPHRASE="$PASS" "$SERVER" --keys-dir "$dir/keys" --data-dir "$state" \
        witness init --name "$WITNESS_NAME" 2>>"$dir/stderr")
    [ -n "$WITNESS_KEY" ] || { cat "$dir/stderr" >&2; die "witness init failed"; }
    CERTBOARD_CA_PASSPHRASE="$PASS" RUST_LOG=warn taskset -c "$CLIENT_CPU" "$SERVER" \
        --keys-dir "$dir/keys" --data-dir "$state" \
        witness run --listen 127.0.0.1:0 --log-key "$vkey" >"$dir/stdout" 2>>"$dir/stderr" &
    WITNESS_PID=$!
    PIDS+=("$WITNESS_PID")
    WITNESS_ADDR=""
    for _ in $(seq 1 100); do
        WITNESS_ADDR=$(awk '$1 == "listening" && $2 == "witness" { print $3 }' "$dir/stdout" 2>/dev/null || true)
        [ -n "$WITNESS_ADDR" ] && return 0
        kill -0 "$WITNESS_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/stderr" >&2
    die "the witness did not start"
}

# One run: run KIND MODE ROUND, MODE none | wait | nowait | waitshm. Appends a
# tab-separated line to $WORK/table.
run() {
    local kind=$1 mode=$2 round=$3
    local dir="$WORK/$kind-$mode-$round" http flags=() w0=0 w1=0 w2=0 m0 m1 m2 J E S
    mkdir -p "$dir"
    cp -r "$WORK/keys-$kind" "$dir/keys"
    if [ "$mode" = waitshm ]; then
        start_witness "$dir/witness" "$SHM/$kind-$round" "${LOG_KEY[$kind]}"
        flags=(--witness "http://$WITNESS_ADDR" --witness-key "$WITNESS_KEY")
    elif [ "$mode" != none ]; then
        start_witness "$dir/witness" "$dir/witness/data" "${LOG_KEY[$kind]}"
        flags=(--witness "http://$WITNESS_ADDR" --witness-key "$WITNESS_KEY")
        [ "$mode" = nowait ] && flags+=(--witness-wait 0)
    fi
    echo "$kind CA, witnesses: $mode, round $round ..."
    start_certboard "$dir" "$dir/data" "$SERVER_CPU" --ca-key-type "$kind" \
        --http-listen 127.0.0.1:0 "${flags[@]}"
    http=$(awk '$1 == "listening" && $2 == "http" { print $3 }' "$dir/stdout")
    [ -n "$http" ] || die "no http listener"

    loadgen --ca "$CA_ADDR" --mode enroll --io events --concurrency "$ENROLL_CONC" --count 500 >/dev/null
    m0=$(metric "$http")
    [ -n "$WITNESS_PID" ] && w0=$(cpu_us "$WITNESS_PID")
    E=$(loadgen --ca "$CA_ADDR" --mode enroll --io events --concurrency "$ENROLL_CONC" \
        --duration "$SECS" --server-pid "$SERVER_PID" --label "enroll-$kind-$mode-$round")
    m1=$(metric "$http")
    [ -n "$WITNESS_PID" ] && w1=$(cpu_us "$WITNESS_PID")
    S=$(loadgen --ca "$CA_ADDR" --blackboard "$BB_ADDR" --mode submit --concurrency 8 \
        --count "$SUBMIT_COUNT" --pool "$SUBMIT_COUNT" --duration 120 --first-sid $((1166000000 + round * 10000)) \
        --server-pid "$SERVER_PID" --label "submit-$kind-$mode-$round")
    m2=$(metric "$http")
    [ -n "$WITNESS_PID" ] && w2=$(cpu_us "$WITNESS_PID")
    say "$E"
    say "$S"
    # Windows: enroll = its timed phase; submit = the submit run, which
    # enrolls its $SUBMIT_COUNT certificates first (their commits count).
    read -r c0 k0 f0 <<<"$m0"
    read -r c1 k1 f1 <<<"$m1"
    read -r c2 k2 f2 <<<"$m2"
    local ec=$((c1 - c0)) ek=$((k1 - k0)) ef=$((f1 - f0)) sc=$((c2 - c1)) sk=$((k2 - k1)) sf=$((f2 - f1))
    local wcpu="-"
    if [ "$mode" != none ] && [ $((k2 - k0)) -gt 0 ]; then
        wcpu=$(calc "($w2 - $w0) / ($k2 - $k0)")
    fi
    say "metrics $kind $mode round $round: enroll window $ec commits, witness requests $ek cosigned $ef failed ($(calc "($ek + $ef) / ($ec > 0 ? $ec : 1)") per commit); submit window $sc commits, $sk cosigned $sf failed ($(calc "($sk + $sf) / ($sc > 0 ? $sc : 1)") per commit); witness CPU $(calc "($w2 - $w0) / 1000") ms = ${wcpu} us per cosignature"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$mode" "$round" \
        "$(jget "$E" ops_per_sec)" "$(jget "$E" p50_ms)" "$(jget "$E" p99_ms)" "$(jget "$E" server_cpu_us_per_op)" \
        "$(jget "$S" ops_per_sec)" "$(jget "$S" p50_ms)" "$(jget "$S" p99_ms)" "$(jget "$S" server_cpu_us_per_op)" \
        "$ec" "$((ek + ef))" "$sc" "$((sk + sf))" "$wcpu" "$((ef + sf))" "$(jget "$E" errors)/$(jget "$S" errors)" \
        >>"$WORK/table"
    stop_pid "$SERVER_PID"
    if [ -n "$WITNESS_PID" ]; then
        stop_pid "$WITNESS_PID"
        WITNESS_PID=""
    fi
}

declare -A LOG_KEY
: >"$WORK/table"
for kind in $KINDS; do
    case $kind in p256 | rsa2048) ;; *) die "BENCH_KINDS: p256 or rsa2048, not $kind" ;; esac
    for mode in $MODES; do
        case $mode in none | wait | nowait | waitshm) ;; *) die "BENCH_MODES: none wait nowait waitshm, not $mode" ;; esac
    done
    # One CA and log key per key type, copied into every run (each run has
    # a fresh database and, with witnesses, a fresh witness: a witness
    # refuses a log that starts again smaller than it last cosigned).
    echo "$kind CA: making its keys ..."
    start_certboard "$WORK/seed-$kind" "$WORK/seed-$kind/data" "$SERVER_CPU" --ca-key-type "$kind"
    stop_pid "$SERVER_PID"
    mv "$WORK/seed-$kind/keys" "$WORK/keys-$kind"
    LOG_KEY[$kind]=$(CERTBOARD_CA_PASSPHRASE="$PASS" "$SERVER" --keys-dir "$WORK/keys-$kind" \
        --data-dir "$WORK/seed-$kind/data" log key 2>>"$WORK/seed-$kind/stderr")
    [ -n "${LOG_KEY[$kind]}" ] || die "no log key"
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then order=$MODES; else order=$(tr ' ' '\n' <<<"$MODES" | tac | tr '\n' ' '); fi
        for mode in $order; do
            run "$kind" "$mode" "$round"
        done
    done
done

say ""
say "## per run (enroll: /s, p50 ms, p99 ms, server us/op | submit: the same | commits and witness requests per window | witness us per cosignature)"
say "kind	mode	round	e/s	e_p50	e_p99	e_cpu	s/s	s_p50	s_p99	s_cpu	e_commits	e_wreq	s_commits	s_wreq	w_us_cosig	w_failed	errors"
while IFS= read -r line; do say "$line"; done <"$WORK/table"
say ""
say "## means over the rounds"
awk -F'\t' '
    { k = $1 " " $2; n[k]++; for (i = 4; i <= 11; i++) s[k, i] += $i
      ec[k] += $12; ew[k] += $13; sc[k] += $14; sw[k] += $15
      if ($16 != "-") { w[k] += $16; wn[k]++ } }
    END {
      for (k in n) {
        printf "%s: enroll %.0f/s p50 %.2f ms p99 %.2f ms %.1f us/op; submit %.0f/s p50 %.2f ms p99 %.2f ms %.1f us/op; witness requests per commit %.2f (enroll) %.2f (submit)",
          k, s[k,4]/n[k], s[k,5]/n[k], s[k,6]/n[k], s[k,7]/n[k], s[k,8]/n[k], s[k,9]/n[k], s[k,10]/n[k], s[k,11]/n[k],
          (ec[k] ? ew[k]/ec[k] : 0), (sc[k] ? sw[k]/sc[k] : 0)
        if (wn[k]) printf "; witness %.1f us CPU per cosignature", w[k]/wn[k]
        printf "\n"
      }
    }' "$WORK/table" | sort | tee -a "$RESULTS"
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
cp "$RESULTS" "${BENCH_RESULTS:-$TARGET_DIR/witness-bench-results.txt}" 2>/dev/null || true
echo "results saved to ${BENCH_RESULTS:-$TARGET_DIR/witness-bench-results.txt}"
