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
