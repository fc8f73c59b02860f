# Sourced by the example scripts (not run on its own): the binaries, a
# temporary working directory, and a server stopped and the directory
# removed whatever way the script ends. Sets $repo, $bin, $work and
# $server_pid (the script sets it when it starts a server); defines
# stop_server.
#
# CERTBOARD_BIN_DIR names a directory of prebuilt binaries (the test suite
# sets it); otherwise cargo builds them.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${CERTBOARD_BIN_DIR:-}" ]; then
  bin=$CERTBOARD_BIN_DIR
else
  cargo build --quiet --manifest-path "$repo/Cargo.toml" --bins
  bin="${CARGO_TARGET_DIR:-$repo/target}/debug"
fi

work=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

# What the course scripts (course.sh, term.sh, staff.sh) share.

# fail MESSAGE: says which expectation failed, shows the end of the server's
# log, and ends the script (non-zero).
fail() {
  echo "FAILED EXPECTATION: $*" >&2
  [ -f "$work/server.log" ] && { echo "--- server log" >&2; tail -100 "$work/server.log" >&2; }
  exit 1
}

# expect_in FILE TEXT: FILE contains TEXT (a fixed string).
expect_in() {
  grep -qF -- "$2" "$1" || { echo "--- $1"; cat "$1"; fail "$1 should contain: $2"; }
}

# An admin command against this directory's keys and data.
admin() { "$bin/server" "$@" --keys-dir keys --data-dir data; }

# An RFC 3339 UTC time N seconds from now (N may be negative).
at() { date -u -d "@$(($(date +%s) + $1))" +%Y-%m-%dT%H:%M:%SZ; }

# start_server [FLAGS...]: starts it on free ports, sets $ca and $bb.
start_server() {
  # Emptied here, not only by the redirection below: that happens in the
  # background child, and the loop must never read the last server's lines.
  : >server.out
  RUST_LOG=${RUST_LOG:-info} "$bin/server" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
    --keys-dir keys --data-dir data "$@" >server.out 2>server.log &
  server_pid=$!
  for _ in $(seq 300); do
    grep -q '^listening blackboard' server.out 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
    sleep 0.1
  done
  ca=$(awk '$1=="listening" && $2=="ca" {print $3}' server.out)
  bb=$(awk '$1=="listening" && $2=="blackboard" {print $3}' server.out)
  [ -n "$ca" ] && [ -n "$bb" ] || fail "the server did not start listening"
  echo "   CA on $ca, Blackboard on $bb"
}

# client OUTFILE ARGS...: runs the client against the server, its output
# (stdout and stderr) shown and kept in OUTFILE; returns its status.
client() {
  local out=$1
  shift
  local status=0
  "$bin/client" --ca "$ca" --blackboard "$bb" --ca-cert keys/ca-cert.pem --timeout 20 "$@" \
    >"$out" 2>&1 || status=$?
  sed 's/^/   | /' "$out"
  return "$status"
}
