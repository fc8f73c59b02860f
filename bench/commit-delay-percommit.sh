#!/usr/bin/env bash
# Reports per commit in compare.sh's submission phase (8 clients, 3,000
# submissions), from the server's /metrics, with its CPU per submission:
#   BIN=path/to/server EXTRA="--commit-delay 4" KIND=rsa2048 bash bench/commit-delay-percommit.sh
set -euo pipefail
R=${R:-${CARGO_TARGET_DIR:-target}/release}
W=$(mktemp -d /tmp/gcpc.XXXXXX)
"$R/examples/loadgen" --mode keys --keys 64 --key-file "$W/keys.pem" >/dev/null 2>&1
LG() { taskset -c 1 "$R/examples/loadgen" --key-file "$W/keys.pem" --keys 64 --per-connection 16 "$@" 2>>"$W/lg.err" | tail -1; }
CERTBOARD_CA_PASSPHRASE="certboard bench passphrase" RUST_LOG=warn taskset -c 0 "$BIN" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
   --keys-dir "$W/keys" --data-dir "$W/data" --ca-key-type ${KIND:-rsa2048} $EXTRA >"$W/out" 2>"$W/err" &
SP=$!
for _ in $(seq 1 100); do CA=$(awk '/^listening ca /{print $3}' "$W/out"); BB=$(awk '/^listening blackboard /{print $3}' "$W/out"); H=$(awk '/^listening http /{print $3}' "$W/out"); [ -n "$CA" ] && [ -n "$BB" ] && [ -n "$H" ] && break; sleep 0.1; done
m() { curl -s "http://$H/metrics" | awk -v k="$1" '$1==k{print $2}'; }
LG --ca "$CA" --blackboard "$BB" --mode submit --concurrency 8 --count 3000 --pool 3000 --duration 120 --first-sid 1166000000 --server-pid $SP --label s > "$W/j" &
LP=$!; until grep -q enrolled "$W/lg.err" 2>/dev/null; do sleep 0.05; done
c0=$(m certboard_commit_latency_seconds_count); r0=$(m certboard_reports_accepted_total); h0=$(m certboard_commits_held_total); h0=${h0:-0}
wait $LP
c1=$(m certboard_commit_latency_seconds_count); r1=$(m certboard_reports_accepted_total); h1=$(m certboard_commits_held_total); h1=${h1:-0}
J=$(cat "$W/j")
python3 - "$J" <<PY
import json,sys; j=json.loads(sys.argv[1])
c=$c1-$c0; r=$r1-$r0; h=$h1-$h0
print(f"${KIND:-rsa2048} $EXTRA: {r} reports, {c} commits, {r/c:.2f} per commit, {h} held; {j['server_cpu_us_per_op']} us/op, {j['ops_per_sec']}/s, p50 {j.get('p50_ms')} p99 {j.get('p99_ms')} ms; load $(cut -d' ' -f1 /proc/loadavg)")
PY
kill $SP; wait $SP 2>/dev/null || true; rm -rf "$W"
