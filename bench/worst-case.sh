#!/usr/bin/env bash
# The worst-case loop time a peer can make each message cost
# (docs/security.md, "Worst case per message"): examples/worst_case.rs,
# in a release build unless PROFILE=debug.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PROFILE:-release}" = debug ]; then
  cargo run -q --example worst_case
else
  cargo run -q --release --example worst_case
fi
