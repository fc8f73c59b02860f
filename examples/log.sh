#!/usr/bin/env bash
# The transparency log, as the instructor and anyone else check it:
# bash examples/log.sh
#
# Starts certboard's server with its HTTP listener, enrolls three students
# and takes their reports (six log entries), prints the log's verifier key
# and signed checkpoint (what the instructor publishes), lets an
# independent verifier written from the C2SP specifications
# (tests/tlog/c2sp_verify.py) fetch the tiles and recompute the
# checkpoint's root, checks that a later log extends the published
# checkpoint, shows the student's side (the proofs her client checked,
# `client audit`, and a certificate someone else got for her SID flagged by
# it), then edits a report behind the server's back and shows `server log
# verify` naming it. Needs python3 with `cryptography`, curl.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cd "$work"
export CERTBOARD_CA_PASSPHRASE="log example passphrase, not for production"
: >server.out
RUST_LOG=${RUST_LOG:-warn} "$bin/server" --ca-listen 127.0.0.1:0 \
  --blackboard-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >server.out 2>>server.log &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^listening http' server.out 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat server.log; exit 1; }
  sleep 0.1
done
ca=$(awk '$1=="listening" && $2=="ca" {print $3}' server.out)
bb=$(awk '$1=="listening" && $2=="blackboard" {print $3}' server.out)
http=$(awk '$1=="listening" && $2=="http" {print $3}' server.out)

echo "== three students enroll and hand in the lab report"
"$bin/client" --ca "$ca" --blackboard "$bb" 1155000001 1155000002 1155000003 >client.out
echo "-- what the first student's client checked:"
grep -i 'transparency log' client.out | head -2
grep -q 'her certificate is entry' client.out || {
  echo "the client showed no log proof for her certificate"; exit 1; }

echo "== the instructor publishes the log's key and its checkpoint"
vkey=$("$bin/server" log key)
origin=${vkey%%+*}
echo "verifier key: $vkey"
"$bin/server" log checkpoint | tee published-checkpoint

echo "== anyone: the served tiles recompute the published checkpoint"
python3 "$repo/tests/tlog/c2sp_verify.py" tiles --vkey "$vkey" --origin "$origin" \
  --url "http://$http/log"

echo "== a fourth student; the log still extends what was published"
"$bin/client" --ca "$ca" --blackboard "$bb" 1155000004 >/dev/null
python3 "$repo/tests/tlog/c2sp_verify.py" tiles --vkey "$vkey" --origin "$origin" \
  --url "http://$http/log" --old published-checkpoint
curl -sS "http://$http/log/checkpoint"

echo "== the instructor's check of the database"
"$bin/server" log verify

echo "== the student audits the log: everything of hers is accounted for"
"$bin/client" audit --log-url "http://$http/log" --log-key "$vkey" 1155000001

echo "== someone else gets a certificate for her SID (open enrollment, another machine)"
"$bin/client" --ca "$ca" --blackboard "$bb" --out-dir impostor 1155000001 >/dev/null
if "$bin/client" audit --log-url "http://$http/log" --log-key "$vkey" 1155000001 >audit.out; then
  cat audit.out; echo "the audit missed a certificate she never asked for"; exit 1
fi
grep 'NOT the certificate in her folder' audit.out
echo "== flagged, as it should be"

echo "== a report edited behind certboard's back"
python3 - <<'PY'
import sqlite3
c = sqlite3.connect("data/certboard.sqlite3")
c.execute("UPDATE reports SET text = 'rewritten' WHERE sid = '1155000002'")
c.commit()
PY
if "$bin/server" log verify; then
  echo "an edited report went unnoticed"; exit 1
fi
echo "== named, as it should be"
