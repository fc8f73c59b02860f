#!/usr/bin/env bash
# The whole lab in one go: bash examples/demo.sh
#
# Starts certboard's server in a temporary directory (free ports, a fresh
# CA root), runs the client for three students, checks every issued
# certificate with `openssl verify`, shows one of them, and stops the server.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cd "$work"
echo "== demo directory: $work"
export CERTBOARD_CA_PASSPHRASE="demo passphrase, not for production"
RUST_LOG=${RUST_LOG:-info} "$bin/server" --ca-listen 127.0.0.1:0 --blackboard-listen 127.0.0.1:0 \
  >server.out 2>server.log &
server_pid=$!

for _ in $(seq 100); do
  grep -q '^listening blackboard' server.out 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat server.log; exit 1; }
  sleep 0.1
done
ca=$(awk '$1=="listening" && $2=="ca" {print $3}' server.out)
bb=$(awk '$1=="listening" && $2=="blackboard" {print $3}' server.out)
[ -n "$ca" ] && [ -n "$bb" ] || { echo "server did not start"; cat server.log; exit 1; }
echo "== server: CA on $ca, Blackboard on $bb"

echo "== client, three students"
"$bin/client" --ca "$ca" --blackboard "$bb" --ca-cert keys/ca-cert.pem \
  1155000001 1155000002 1155000003

echo "== openssl verify of every issued certificate"
for sid in 1155000001 1155000002 1155000003; do
  openssl verify -CAfile keys/ca-cert.pem "students/$sid/cert.pem"
done

echo "== the certificate of 1155000001"
openssl x509 -in students/1155000001/cert.pem -noout -text

echo "== what Blackboard received (server stdout)"
sleep 0.2
cat server.out

echo "== stopping the server"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo "== server log"
cat server.log
