#!/usr/bin/env bash
# bench/tiles.sh — the transparency log's read API (C2SP tlog-tiles,
# issue 21): answers per second per core of /log/tile/<L>/<N> (a full
# hash tile), a partial hash tile, /log/tile/entries/<N> (a full entry
# bundle) and /log/checkpoint, on a log of a few thousand entries built
# with the load generator first. See BENCHMARKS.md, "Transparency log".
#
#   bash bench/tiles.sh                        # ~1 minute
#   BENCH_SECONDS=10 bash bench/tiles.sh       # longer timed phases
#   BENCH_LOG_ENROLLMENTS=6000 bash bench/tiles.sh   # a bigger log
#   BENCH_SERVER=/path/to/other/server bash bench/tiles.sh  # another build
#
# Per core = answers divided by the server's own CPU time over the phase
# (utime + stime of all its threads, /proc/PID/stat), so the figure holds
# on a machine shared with other work; wall-clock answers per second are
# printed beside it with the load average, for reference only.
#
# Needs: 2+ cores, taskset, curl, python3, cargo; installs Debian's `wrk` with
# apt-get when it is missing (root). Everything listens on 127.0.0.1 only,
# every phase is bounded by --count or wrk's -d, and the server is stopped
# by PID at exit. The release binaries are built first (CARGO_TARGET_DIR is
# honoured).

set -euo pipefail

SECS=${BENCH_SECONDS:-5}
ENROLLMENTS=${BENCH_LOG_ENROLLMENTS:-3000}
SUBMISSIONS=${BENCH_LOG_SUBMISSIONS:-200}
CONNS=${BENCH_TILES_CONNECTIONS:-8}
SERVER_CPU=0
CLIENT_CPU=1
PASS="certboard bench passphrase"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certboard-tiles.XXXXXX")
RESULTS="$WORK/results.txt"
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }
die() { echo "tiles.sh: $*" >&2; exit 1; }
calc() { awk "BEGIN { printf \"%.1f\", $* }"; }
# The server's CPU time (all threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server and load on separate cores)"
for tool in taskset curl cargo awk python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian) ..."
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null \
        || die "could not install wrk"
fi

echo "building (release) ..."
(cd "$ROOT" && cargo build --release --quiet --bin server --example loadgen)
SERVER=${BENCH_SERVER:-$TARGET/release/server}
LOADGEN="$TARGET/release/examples/loadgen"

: >"$RESULTS"
say "# certboard /log tiles bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
say "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "server on CPU $SERVER_CPU, wrk (1 thread, $CONNS keep-alive connections, ${SECS} s per path) on CPU $CLIENT_CPU"

# ---------------------------------------------------------------- server
DIR="$WORK/server"
mkdir -p "$DIR"
CERTBOARD_CA_PASSPHRASE="$PASS" RUST_LOG=warn taskset -c $SERVER_CPU "$SERVER" \
    --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --http-max-requests 1000000 --keys-dir "$DIR/keys" --data-dir "$DIR/data" --ca-key-type p256 \
    >"$DIR/stdout" 2>"$DIR/stderr" &
SERVER_PID=$!
CA="" BB="" HTTP=""
for _ in $(seq 1 100); do
    CA=$(awk '/^listening ca / { print $3 }' "$DIR/stdout" 2>/dev/null || true)
    BB=$(awk '/^listening blackboard / { print $3 }' "$DIR/stdout" 2>/dev/null || true)
    HTTP=$(awk '/^listening http / { print $3 }' "$DIR/stdout" 2>/dev/null || true)
    [ -n "$CA" ] && [ -n "$BB" ] && [ -n "$HTTP" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$HTTP" ] || { cat "$DIR/stderr" >&2; die "the server did not start"; }

# ---------------------------------------------------------------- the log
# One leaf per certificate and one per report: enrollments (events I/O),
# then submissions (each enrolls its own certificate first, so two leaves).
echo "building the log: $ENROLLMENTS enrollments, $SUBMISSIONS submissions ..."
KEYS="$WORK/student-keys.pem"
"$LOADGEN" --mode keys --keys 16 --key-file "$KEYS" >/dev/null
taskset -c $CLIENT_CPU "$LOADGEN" --key-file "$KEYS" --keys 16 --ca "$CA" --mode enroll --io events \
    --concurrency 32 --per-connection 16 --count "$ENROLLMENTS" --duration 300 2>>"$WORK/loadgen.log" | tail -1 >>"$WORK/build.txt"
taskset -c $CLIENT_CPU "$LOADGEN" --key-file "$KEYS" --keys 16 --ca "$CA" --blackboard "$BB" --mode submit \
    --concurrency 8 --count "$SUBMISSIONS" --pool "$SUBMISSIONS" --duration 300 --first-sid 1166000000 \
    2>>"$WORK/loadgen.log" | tail -1 >>"$WORK/build.txt"
# The tree must not end on a tile boundary, so that a partial tile exists.
SIZE=$(curl -sf "http://$HTTP/log/checkpoint" | sed -n 2p)
if [ $((SIZE % 256)) = 0 ]; then
    taskset -c $CLIENT_CPU "$LOADGEN" --key-file "$KEYS" --keys 16 --ca "$CA" --mode enroll --io events \
        --concurrency 1 --count 1 --duration 60 2>>"$WORK/loadgen.log" >/dev/null
    SIZE=$(curl -sf "http://$HTTP/log/checkpoint" | sed -n 2p)
fi
[ "${SIZE:-0}" -ge 512 ] || die "the log has ${SIZE:-no} entries; expected at least 512"
say "log: $SIZE entries ($((SIZE / 256)) full tiles per level 0 and entries, a partial one of $((SIZE % 256)))"

# C2SP tlog-tiles index encoding: 3-digit groups, all but the last with x.
tile_index() {
    local n=$1 out="" g
    out=$(printf '%03d' $((n % 1000)))
    n=$((n / 1000))
    while [ "$n" -gt 0 ]; do
        g=$(printf 'x%03d' $((n % 1000)))
        out="$g/$out"
        n=$((n / 1000))
    done
    printf '%s' "$out"
}
FULL=$(tile_index $((SIZE / 256 / 2)))
LAST=$(tile_index $((SIZE / 256)))
W=$((SIZE % 256))

# What is measured must be right: the full hash tile at level 0 is the
# RFC 6962 leaf hashes of the same tile's entry bundle, and the partial
# tile is the full one's prefix as it grows (checked for the last tile).
curl -sf "http://$HTTP/log/tile/0/$FULL" -o "$WORK/hashes"
curl -sf "http://$HTTP/log/tile/entries/$FULL" -o "$WORK/bundle"
curl -sf "http://$HTTP/log/tile/0/$LAST.p/$W" -o "$WORK/partial-hashes"
curl -sf "http://$HTTP/log/tile/entries/$LAST.p/$W" -o "$WORK/partial-bundle"
python3 - "$WORK" <<'PY' || die "a tile does not match its entries"
import hashlib, sys
work = sys.argv[1]
def leaves(path):
    b = open(path, "rb").read()
    out = []
    while b:
        n = int.from_bytes(b[:2], "big")
        out.append(hashlib.sha256(b"\x00" + b[2:2 + n]).digest())
        b = b[2 + n:]
    return b"".join(out)
for h, e in (("hashes", "bundle"), ("partial-hashes", "partial-bundle")):
    got = open(f"{work}/{h}", "rb").read()
    if got != leaves(f"{work}/{e}"):
        sys.exit(f"{h}: {len(got)} bytes, not the leaf hashes of {e}")
PY
say "tiles checked: level-0 tiles $FULL and $LAST.p/$W are the leaf hashes of their entry bundles"

# ---------------------------------------------------------------- the load
# path, expected body length (0: any)
PATHS=(
    "/log/tile/0/$FULL 8192"
    "/log/tile/0/$LAST.p/$W $((32 * W))"
    "/log/tile/entries/$FULL 0"
    "/log/checkpoint 0"
)
say ""
say "| path | answers | server CPU s | answers per CPU-second | wall answers/s | wrk p50 / p99 |"
say "|---|---|---|---|---|---|"
for entry in "${PATHS[@]}"; do
    path=${entry% *}
    want=${entry##* }
    url="http://$HTTP$path"
    code=$(curl -s -o "$WORK/body" -w '%{http_code}' "$url")
    [ "$code" = 200 ] || die "$path answered $code"
    got=$(stat -c %s "$WORK/body")
    [ "$want" = 0 ] || [ "$got" = "$want" ] || die "$path: $got bytes, expected $want"
    echo "load: $path ..."
    before=$(cpu_ticks "$SERVER_PID")
    out=$(taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$url")
    after=$(cpu_ticks "$SERVER_PID")
    printf '%s\n%s\n' "## wrk $path" "$out" >>"$WORK/wrk.txt"
    if grep -q 'Non-2xx or 3xx' <<<"$out"; then
        echo "$out" >&2
        die "$path: some answers were not 200"
    fi
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    rate=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    cpu=$(calc "($after - $before) / $TICK")
    per=$(awk -v n="$n" -v t="$((after - before))" -v k="$TICK" 'BEGIN { if (t > 0) printf "%.0f", n * k / t; else print "n/a" }')
    say "| \`$path\` ($got bytes) | $n | $cpu | **$per** | $rate | $p50 / $p99 |"
done
say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "log build (load generator): $(tr '\n' ' ' <"$WORK/build.txt")"
cat "$WORK/wrk.txt" >>"$RESULTS"
cp "$RESULTS" "${BENCH_RESULTS:-$TARGET/tiles-results.txt}" 2>/dev/null || true
echo "results saved to ${BENCH_RESULTS:-$TARGET/tiles-results.txt}"
