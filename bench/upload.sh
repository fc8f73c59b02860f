#!/usr/bin/env bash
# bench/upload.sh — protocol version 3 uploads (issue 20, "Speed, memory and
# peers"), measured in one run on one machine:
#
#   1. certboard's CPU per MiB received for 10 MiB files, against the bare
#      cost of what every byte needs (AES-256-CTR + HMAC-SHA256 + SHA-256,
#      `openssl speed` at the protocol's 64 KiB chunk); target <= 2x bare.
#      The store commits every chunk with fsync (SQLite synchronous=FULL,
#      no option turns it off), so the run is made twice: the database on
#      tmpfs (/dev/shm, where fsync returns at once: the figure the target
#      applies to) and on the disk; the difference is the disk's share.
#   2. the peer: the same file PUT by curl to Debian's nginx over TLS 1.3
#      with a client certificate required (ssl_verify_client on), the body
#      written to disk (the DAV module's PUT: client_body_temp_path, then
#      renamed into place); nginx's worker CPU per MiB the same way.
#   3. 20 concurrent 20 MiB uploads: the server's peak RSS (VmHWM) before
#      and after; target a rise of at most 64 MiB.
#   4. an honest enrollment during those uploads: median latency against
#      the unloaded median (same server, just before); target <= 2x. The
#      prober shares the driver's core with the twenty uploading threads
#      (nice 19) and runs in the real-time class (chrt --fifo: root or
#      CAP_SYS_NICE; without it the driver says so, and the figure then
#      includes the prober's own wait for that busy core).
#
#   bash bench/upload.sh                 # ~3 minutes after the build
#   BENCH_FILES=5 BENCH_PROBES=5 bash bench/upload.sh   # quicker
#
# CPU time is utime + stime from /proc/PID/stat (every thread of the
# process), not wall time: the host may be shared. The server under test
# (certboard, or nginx with one worker) is pinned to CPU 0, the driver
# (examples/upload.rs, or curl) to CPU 1. Everything listens on 127.0.0.1;
# every phase is bounded in count; temp dirs are removed and every process
# started here is stopped by PID at exit. Installs Debian's nginx with
# apt-get when it is missing (root or sudo).
set -euo pipefail

FILES=${BENCH_FILES:-20}           # uploads per CPU measurement
SIZE=$((10 << 20))                 # the CPU measurement's file
BIG=$((20 << 20))                  # the memory measurement's file
CONC=20                            # uploads at once for memory and latency
PROBES=${BENCH_PROBES:-15}         # unloaded enrollments timed
CHUNK=65536                        # crypto::CHUNK_MAX
SERVER_CPU=0
CLIENT_CPU=1
PASS="certboard bench passphrase"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/certboard-upbench.XXXXXX")
SHM=""
PIDS=()

# cleanup, jget, stop_pid, start_certboard.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup EXIT INT TERM

say() { printf '%s\n' "$*"; }
die() { echo "upload.sh: $*" >&2; exit 1; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
# utime + stime of a process, seconds.
cpu_s() { awk '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat"; }

[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (server and driver on separate cores)"
for tool in taskset openssl cargo curl awk sed python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx (Debian) ..."
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null \
        || die "could not install nginx"
    # Debian starts the packaged service; the bench runs its own instance.
    $SUDO systemctl stop nginx 2>/dev/null || true
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building (release) ..."
(cd "$ROOT" && cargo build --release --quiet --bin server --example upload)
# cargo puts the build under CARGO_TARGET_DIR when it is set.
OUT_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# BENCH_SERVER: another server binary (an A/B against an older build).
SERVER="${BENCH_SERVER:-$OUT_DIR/release/server}"
DRIVER="$OUT_DIR/release/examples/upload"

say "# certboard upload bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
say "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); system $(openssl version)"
say "uptime: $(uptime)"
say "server (certboard or nginx) on CPU $SERVER_CPU, driver (examples/upload or curl) on CPU $CLIENT_CPU"
say ""

# ---------------------------------------------------------------- bare cost
# Per chunk the server checks an HMAC-SHA256 over the ciphertext, decrypts
# it (AES-256-CTR) and hashes the plaintext (SHA-256): per MiB, the three
# at 64 KiB blocks, from the system's `openssl speed`, on the server's core.
speed_ms_per_mib() {
    local k
    k=$(taskset -c $SERVER_CPU openssl speed -seconds 3 -bytes $CHUNK "$@" 2>/dev/null | tail -1 | awk '{ sub(/k$/, "", $NF); print $NF }')
    awk -v k="$k" 'BEGIN { if (k + 0 <= 0) exit 1; printf "%.4f", 1048576 / (k * 1000) * 1000 }'
}
echo "bare cryptography (CPU $SERVER_CPU) ..."
AES=$(speed_ms_per_mib -evp aes-256-ctr) || die "openssl speed aes-256-ctr gave nothing"
HMAC=$(speed_ms_per_mib -hmac sha256) || die "openssl speed -hmac sha256 gave nothing"
SHA=$(speed_ms_per_mib sha256) || die "openssl speed sha256 gave nothing"
BARE=$(calc "$AES + $HMAC + $SHA")
say "## bare cost per MiB at $CHUNK-byte blocks (openssl speed -seconds 3 -bytes $CHUNK, CPU $SERVER_CPU)"
say "AES-256-CTR ${AES} ms + HMAC-SHA256 ${HMAC} ms + SHA-256 ${SHA} ms = ${BARE} ms per MiB"
say ""

# ---------------------------------------------------------------- certboard
SERVER_PID=""
CA_ADDR=""
BB_ADDR=""
# start_server DIR DATA_DIR
start_server() { start_certboard "$1" "$2" $SERVER_CPU; }
stop_server() { stop_pid "$SERVER_PID"; }
drive() {
    taskset -c $CLIENT_CPU "$DRIVER" --ca "$CA_ADDR" --blackboard "$BB_ADDR" \
        --server-pid "$SERVER_PID" --work-dir "$WORK" "$@"
}

# one_by_one DIR DATA_DIR LABEL WHAT: FILES uploads one after the other into
# a fresh server, the driver's output said under WHAT; sets OUT.
one_by_one() {
    start_server "$1" "$2"
    OUT=$(drive --size $SIZE --files "$FILES" --concurrency 1 --label "$3")
    stop_server
    say "$4"
    say "$OUT"
}

SHM=$(mktemp -d /dev/shm/certboard-upbench.XXXXXX)
say "## certboard, $FILES uploads of 10 MiB one after the other (a new connection and student session each)"
one_by_one "$WORK/cb-shm" "$SHM/data" tmpfs "database on tmpfs (fsync returns at once):"
SHM_MS=$(jget "$(tail -1 <<<"$OUT")" cpu_ms_per_mib)
rm -rf "$SHM/data"

one_by_one "$WORK/cb-disk" "$WORK/cb-disk/data" disk \
    "database on disk (synchronous=FULL: one fsync per commit of staged chunks):"
DISK_MS=$(jget "$(tail -1 <<<"$OUT")" cpu_ms_per_mib)
DISK_S=$(jget "$(tail -1 <<<"$OUT")" seconds)
rm -rf "$WORK/cb-disk"
say ""

# ---------------------------------------------------------------- nginx
say "## nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $FILES PUTs of the same 10 MiB file by curl, TLS 1.3, client certificate required"
NG="$WORK/nginx"
mkdir -p "$NG/body" "$NG/www/up" "$NG/tmp"
(
    cd "$NG"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 \
        -subj "/CN=upload bench CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -extfile server.ext -out server.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=1166000000" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -extfile client.ext -out client.pem 2>/dev/null
) || die "could not make the nginx certificates"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$NG/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $NG/body;
    proxy_temp_path $NG/tmp;
    fastcgi_temp_path $NG/tmp;
    uwsgi_temp_path $NG/tmp;
    scgi_temp_path $NG/tmp;
    server {
        listen 127.0.0.1:$PORT ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate $NG/server.pem;
        ssl_certificate_key $NG/server.key;
        ssl_client_certificate $NG/ca.pem;
        ssl_verify_client on;
        client_max_body_size 64m;
        root $NG/www;
        location /up/ {
            dav_methods PUT;
        }
    }
}
EOF
taskset -c $SERVER_CPU "$NGINX" -c "$NG/nginx.conf" -e "$NG/error.log" >"$NG/stdout" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
WORKER=""
for _ in $(seq 1 50); do
    WORKER=$(ps --ppid "$NGINX_PID" -o pid= 2>/dev/null | head -1 | tr -d ' ' || true)
    [ -n "$WORKER" ] && break
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$WORKER" ] || { cat "$NG/error.log" "$NG/stdout" >&2; die "nginx did not start"; }
head -c $SIZE /dev/urandom >"$NG/file.bin"
CURL=(curl -sS --fail --tlsv1.3 --cacert "$NG/ca.pem" -o /dev/null)
URL="https://127.0.0.1:$PORT/up/file.bin"
# The peer really requires a client certificate.
if "${CURL[@]}" -T "$NG/file.bin" "$URL" 2>/dev/null; then
    die "nginx took a PUT without a client certificate"
fi
CIPHER=$(timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -CAfile "$NG/ca.pem" \
    -cert "$NG/client.pem" -key "$NG/client.key" </dev/null 2>/dev/null | awk '/^New, / { print $NF; exit }' || true)
CPU0=$(cpu_s "$WORKER")
T0=$(date +%s.%N)
for i in $(seq 1 "$FILES"); do
    taskset -c $CLIENT_CPU "${CURL[@]}" --cert "$NG/client.pem" --key "$NG/client.key" \
        -T "$NG/file.bin" "$URL" || die "curl PUT $i failed"
done
T1=$(date +%s.%N)
CPU1=$(cpu_s "$WORKER")
[ "$(stat -c %s "$NG/www/up/file.bin")" = "$SIZE" ] || die "nginx stored a file of another size"
cmp -s "$NG/file.bin" "$NG/www/up/file.bin" || die "nginx stored other bytes"
kill "$NGINX_PID" 2>/dev/null || true
wait "$NGINX_PID" 2>/dev/null || true
NGINX_MS=$(calc "($CPU1 - $CPU0) * 1000 / ($FILES * 10)")
say "cipher ${CIPHER:-?}; body written by the DAV module (client_body_temp_path, renamed into place, no fsync)"
say "$FILES PUTs in $(calc "$T1 - $T0") s; nginx worker CPU $(calc "$CPU1 - $CPU0") s = ${NGINX_MS} ms per MiB (utime+stime, /proc/$WORKER/stat)"
say ""

# ---------------------------------------------------------------- memory and latency
say "## certboard, $CONC uploads of 20 MiB at once; honest enrollments before and during them (database on disk)"
start_server "$WORK/cb-conc" "$WORK/cb-conc/data"
CONC_OK=1
OUT=$(drive --size $BIG --files $CONC --concurrency $CONC --probes "$PROBES" --first-sid 1177000000 --label concurrent 2>&1) || CONC_OK=0
stop_server
say "$OUT"
J=$(tail -1 <<<"$OUT")
[ "$CONC_OK" = 1 ] || J='{"hwm_rise_mib":"FAILED","enroll_unloaded_ms":"1","enroll_loaded_ms":"FAILED","enroll_loaded_n":"0"}' 
RISE=$(jget "$J" hwm_rise_mib)
U=$(jget "$J" enroll_unloaded_ms)
L=$(jget "$J" enroll_loaded_ms)
N=$(jget "$J" enroll_loaded_n)
rm -rf "$WORK/cb-conc"
say ""

# ---------------------------------------------------------------- summary
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "met" : "MISSED" }'; }
say "## summary"
say "bare AES-256-CTR + HMAC-SHA256 + SHA-256: ${BARE} ms per MiB"
say "certboard CPU per MiB, database on tmpfs: ${SHM_MS} ms = $(calc "$SHM_MS / $BARE")x bare (target <= 2x: $(verdict "$SHM_MS" "$(calc "2 * $BARE")"))"
say "certboard CPU per MiB, database on disk: ${DISK_MS} ms = $(calc "$DISK_MS / $BARE")x bare; the disk's share (fsync and writeback in the server's threads) $(calc "$DISK_MS - $SHM_MS") ms per MiB; $FILES files took ${DISK_S} s of wall time"
say "nginx worker CPU per MiB: ${NGINX_MS} ms = $(calc "$NGINX_MS / $BARE")x bare; certboard (tmpfs) / nginx = $(calc "$SHM_MS / $NGINX_MS")x"
say "peak RSS rise, $CONC x 20 MiB at once: ${RISE} MiB (target <= 64 MiB: $(verdict "$RISE" 64))"
say "honest enrollment: unloaded median ${U} ms, during the uploads median ${L} ms over ${N} probes = $(calc "$L / $U")x (target <= 2x: $(verdict "$(calc "$L / $U")" 2))"
