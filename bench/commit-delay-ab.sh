#!/usr/bin/env bash
# Server CPU per enrollment and per submission (compare.sh's phases: server on
# CPU 0, load generator on CPU 1), for several server binaries run alternately,
# the order rotating each round. Usage (release examples built first):
#   VARIANTS="before:/tmp/a:log:;after:/tmp/b:log:--commit-delay 4;after-nolog:/tmp/b:nolog:" \
#   ROUNDS=4 KINDS="p256 rsa2048" PHASES="enroll submit" bash bench/commit-delay-ab.sh
# "nolog" sets NOLOG=1 in the server's environment, which only a throwaway
# build reads (BENCHMARKS.md, "Commit delay"); R is the release dir.
set -euo pipefail
R=${R:-${CARGO_TARGET_DIR:-target}/release}
ROUNDS=${ROUNDS:-3}
KINDS=${KINDS:-p256 rsa2048}
PHASES=${PHASES:-enroll submit}
W=$(mktemp -d /tmp/gcab.XXXXXX)
"$R/examples/loadgen" --mode keys --keys 64 --key-file "$W/keys.pem" >/dev/null 2>&1
LG() { taskset -c 1 "$R/examples/loadgen" --key-file "$W/keys.pem" --keys 64 --per-connection 16 "$@" 2>>"$W/lg.err" | tail -1; }
jget() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
run() { # name binary mode extra kind
  local name=$1 bin=$2 mode=$3 extra=$4 kind=$5 d; d=$(mktemp -d "$W/s.XXXX")
  if [ "$mode" = nolog ]; then export NOLOG=1; else unset NOLOG; fi
  CERTBOARD_CA_PASSPHRASE="certboard bench passphrase" RUST_LOG=warn taskset -c 0 "$bin" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
     --keys-dir "$d/keys" --data-dir "$d/data" --ca-key-type "$kind" $extra >"$d/out" 2>"$d/err" &
  local sp=$! CA="" BB=""
  unset NOLOG
  for _ in $(seq 1 100); do CA=$(awk '/^listening ca /{print $3}' "$d/out"); BB=$(awk '/^listening blackboard /{print $3}' "$d/out"); [ -n "$CA" ] && [ -n "$BB" ] && break; sleep 0.1; done
  [ -n "$CA" ] || { cat "$d/err"; exit 1; }
  LG --ca "$CA" --mode enroll --io events --concurrency 64 --count 2000 >/dev/null
  local E="" S="" line="$kind $name"
  if [[ " $PHASES " == *" enroll "* ]]; then
    E=$(LG --ca "$CA" --mode enroll --io events --concurrency 64 --duration 6 --server-pid $sp --label e)
    line="$line enroll $(jget "$E" server_cpu_us_per_op) us ($(jget "$E" ops_per_sec)/s)"
  fi
  if [[ " $PHASES " == *" submit "* ]]; then
    S=$(LG --ca "$CA" --blackboard "$BB" --mode submit --concurrency 8 --count 3000 --pool 3000 --duration 120 --first-sid 1166000000 --server-pid $sp --label s)
    line="$line submit $(jget "$S" server_cpu_us_per_op) us ($(jget "$S" ops_per_sec)/s)"
  fi
  kill $sp; wait $sp 2>/dev/null || true
  echo "$line load $(cut -d' ' -f1 /proc/loadavg) $(date -u +%H:%M)"
  rm -rf "$d"
}
IFS=';' read -ra VARS <<< "$VARIANTS"
n=${#VARS[@]}
for r in $(seq 1 "$ROUNDS"); do
  for kind in $KINDS; do
    for i in $(seq 0 $((n-1))); do
      v=${VARS[$(( (i + r - 1) % n ))]}
      IFS=':' read -r name bin mode extra <<< "$v"
      run "$name" "$bin" "$mode" "$extra" "$kind"
    done
  done
done
rm -rf "$W"
