#!/usr/bin/env bash
# The adversary at work, mode after mode: bash examples/adversary.sh
#
# Starts certboard's server in a temporary directory (free ports, a fresh CA
# root). For each mode of examples/adversary.rs it puts the man in the
# middle in front of Blackboard, runs the student client through it, and
# shows what the adversary did, what the student was told, and what
# Blackboard logged. At the end, the reports Blackboard recorded: only the
# student of `pass` and the student whose submission was replayed (once).
# In the impersonate, impersonate-lookalike and splice modes the adversary
# answers in Blackboard's place; the student refuses before her report
# leaves, and says why.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# CERTBOARD_BIN_DIR: use binaries already built (with examples/adversary).
if [ -n "${CERTBOARD_BIN_DIR:-}" ]; then
  bin=$CERTBOARD_BIN_DIR
else
  cargo build --quiet --manifest-path "$repo/Cargo.toml" --bins --example adversary
  bin="${CARGO_TARGET_DIR:-$repo/target}/debug"
fi

work=$(mktemp -d)
server_pid=""
proxy_pid=""
stop() { # pid
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$proxy_pid"
  stop "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for "listening ..." in file $1 (process $2), prints the address
# (field $3 of the line matching $4).
wait_listening() {
  local file=$1 pid=$2 field=$3 pattern=$4
  for _ in $(seq 300); do
    if grep -q "$pattern" "$file" 2>/dev/null; then
      awk -v p="$pattern" -v f="$field" '$0 ~ p {print $f; exit}' "$file"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

cd "$work"
echo "== directory: $work"
export CERTBOARD_CA_PASSPHRASE="demo passphrase, not for production"
RUST_LOG=${RUST_LOG:-info} "$bin/server" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
  >server.out 2>server.log &
server_pid=$!
ca=$(wait_listening server.out "$server_pid" 3 '^listening ca') || { cat server.log; exit 1; }
bb=$(wait_listening server.out "$server_pid" 3 '^listening blackboard') || { cat server.log; exit 1; }
echo "== server: CA on $ca, Blackboard on $bb"

for mode in pass flip truncate drop-mac swap-cert replay impersonate impersonate-lookalike splice; do
  sid="sid-$mode"
  echo
  echo "==================== mode $mode (student $sid) ===================="
  "$bin/examples/adversary" --listen 127.0.0.1:0 --upstream "$bb" --mode "$mode" \
    >"adversary-$mode.out" 2>&1 &
  proxy_pid=$!
  mitm=$(wait_listening "adversary-$mode.out" "$proxy_pid" 2 '^listening') ||
    { cat "adversary-$mode.out"; exit 1; }
  log_before=$(wc -l <server.log)

  echo "-- the student (enrolls with the CA directly, submits via the adversary at $mitm)"
  if "$bin/client" --ca "$ca" --blackboard "$mitm" --timeout 20 "$sid" >"client-$mode.out" 2>&1; then
    outcome="student SUCCEEDED"
  else
    outcome="student FAILED"
  fi
  sed 's/^/   /' "client-$mode.out"
  if [ "$mode" = replay ]; then
    # The adversary replays after the honest exchange; wait for its verdict.
    for _ in $(seq 100); do
      grep -q '^replay verdict:' "adversary-$mode.out" && break
      sleep 0.1
    done
  fi
  sleep 0.2
  echo "-- the adversary"
  sed 's/^/   /' "adversary-$mode.out"
  echo "-- Blackboard's log (refusals)"
  tail -n +"$((log_before + 1))" server.log | grep -E 'refused|malformed|unexpected' | sed 's/^/   /' ||
    echo "   (no refusal)"
  echo "-- outcome: $outcome"
  stop "$proxy_pid"
  proxy_pid=""
done

echo
echo "==================== what Blackboard recorded ===================="
"$bin/server" reports --keys-dir keys --data-dir data
echo "(expected: sid-pass and sid-replay, once each; nothing for the tampered or impostor modes)"
stop "$server_pid"
server_pid=""
