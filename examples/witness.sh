#!/usr/bin/env bash
# A witness cosigns certboard's transparency log (C2SP tlog-witness):
# bash examples/witness.sh
#
# Starts certboard's server once to make its log key, then a witness on a
# port (and directories) of its own, as another host would run it
# (`server witness init|key|run`), and the server again asking it to
# cosign each checkpoint (`--witness`). A student enrolls and hands in her
# report with `--witness-key`: each commit waits (bounded, --witness-wait)
# for the witness, so her certificate's proof and her receipt themselves
# carry its cosignature, checked and kept by her client and by an
# independent verifier written from the C2SP specifications
# (tests/tlog/c2sp_verify.py); the log's served checkpoint carries it too
# (`client audit --witness-key`). Then a forked checkpoint (signed with the
# real log key, another root of the same size) is sent to the witness and
# refused, and with the witness stopped students still submit, their
# receipts without its cosignature (her client says so). Needs python3
# with `cryptography`, curl.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cd "$work"
export CERTBOARD_CA_PASSPHRASE="witness example passphrase, not for production"
witness_pid=""
stop_witness() {
  if [ -n "$witness_pid" ] && kill -0 "$witness_pid" 2>/dev/null; then
    kill -TERM "$witness_pid" 2>/dev/null || true
    wait "$witness_pid" 2>/dev/null || true
  fi
  witness_pid=""
}
trap 'stop_witness; cleanup' EXIT

# start [FLAGS...]: the log server on free ports; sets $ca, $bb, $http.
start() {
  : >server.out
  RUST_LOG=${RUST_LOG:-warn} "$bin/server" --ca-listen 127.0.0.1:0 \
    --blackboard-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 "$@" \
    >server.out 2>>server.log &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening http' server.out 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat server.log; exit 1; }
    sleep 0.1
  done
  ca=$(awk '$1=="listening" && $2=="ca" {print $3}' server.out)
  bb=$(awk '$1=="listening" && $2=="blackboard" {print $3}' server.out)
  http=$(awk '$1=="listening" && $2=="http" {print $3}' server.out)
}

# cosigned: the served checkpoint once it carries the witness's line.
cosigned() {
  for _ in $(seq 100); do
    curl -sS "http://$http/log/checkpoint" >checkpoint
    grep -q "^— witness.example/w1 " checkpoint && return 0
    sleep 0.1
  done
  echo "the checkpoint was never cosigned"; cat checkpoint; cat server.log; exit 1
}

echo "== the log server's first start makes its log key"
start
stop_server
vkey=$("$bin/server" log key 2>>server.log)
origin=${vkey%%+*}
echo "log key: $vkey"

echo "== another host: a witness for that log"
mkdir -p witness-host
wkey=$("$bin/server" --keys-dir witness-host/keys --data-dir witness-host/data \
  witness init --name witness.example/w1 2>>witness.log)
echo "witness key: $wkey"
: >witness.out
RUST_LOG=${RUST_LOG:-warn} "$bin/server" --keys-dir witness-host/keys \
  --data-dir witness-host/data witness run --listen 127.0.0.1:0 --log-key "$vkey" \
  >witness.out 2>>witness.log &
witness_pid=$!
for _ in $(seq 100); do
  grep -q '^listening witness' witness.out 2>/dev/null && break
  kill -0 "$witness_pid" 2>/dev/null || { cat witness.log; exit 1; }
  sleep 0.1
done
witness=$(awk '$1=="listening" && $2=="witness" {print $3}' witness.out)
echo "witness listening on $witness"

echo "== the log server asks it to cosign every checkpoint"
start --witness "http://$witness" --witness-key "$wkey"

echo "== a student enrolls and hands in her report, trusting the witness"
# The server's commit waits for the witness before it answers, so her
# certificate's proof and her receipt arrive cosigned; her client checks
# the cosignature on each (with --log-url it would fetch the log's
# cosigned checkpoint for a proof that lacks one).
"$bin/client" --ca "$ca" --blackboard "$bb" --witness-key "$wkey" \
  --log-url "http://$http/log" 1155000001 >client.out
grep 'witness witness.example/w1' client.out
echo "-- her receipt's own checkpoint, which her client keeps (students/log-checkpoint):"
cat students/log-checkpoint
grep -q '^— witness.example/w1 ' students/log-checkpoint

echo "== anyone: her receipt's cosignature checked from the C2SP specifications alone"
python3 "$repo/tests/tlog/c2sp_verify.py" cosig --vkey "$vkey" --origin "$origin" \
  --witness "$wkey" --note students/log-checkpoint

echo "== the log's checkpoint, cosigned"
cosigned
cat checkpoint

echo "== her audit: the checkpoint must carry the witness's cosignature"
"$bin/client" audit --log-url "http://$http/log" --log-key "$vkey" \
  --witness-key "$wkey" 1155000001 | tee audit.out
grep -q 'checkpoint cosigned by witness witness.example/w1' audit.out

echo "== anyone: the served checkpoint's cosignature, from the C2SP specifications alone"
python3 "$repo/tests/tlog/c2sp_verify.py" cosig --vkey "$vkey" --origin "$origin" \
  --witness "$wkey" --note checkpoint

echo "== a forked checkpoint: an insider signs another tree of the same size with the log key"
size=$(sed -n 2p checkpoint)
python3 - "$origin" "$size" >fork-body <<'PY'
import base64, hashlib, os, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key, Encoding, PublicFormat
origin, size = sys.argv[1], sys.argv[2]
key = load_pem_private_key(open("keys/log-key.pem", "rb").read(),
                           os.environ["CERTBOARD_CA_PASSPHRASE"].encode())
pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
keyid = hashlib.sha256(origin.encode() + b"\n\x01" + pub).digest()[:4]
text = "%s\n%s\n%s\n" % (origin, size, base64.b64encode(b"\x07" * 32).decode())
sig = base64.b64encode(keyid + key.sign(text.encode())).decode()
sys.stdout.write("old %s\n\n%s\n\u2014 %s %s\n" % (size, text, origin, sig))
PY
status=$(curl -sS -o fork.out -w '%{http_code}' --data-binary @fork-body \
  "http://$witness/add-checkpoint")
echo "witness answered $status: $(cat fork.out)"
[ "$status" = 409 ] || { echo "the witness did not refuse"; exit 1; }
echo "== refused, as it should be"

echo "== the witness goes down: students still submit"
stop_witness
"$bin/client" --ca "$ca" --blackboard "$bb" --witness-key "$wkey" 1155000002 >client2.out
grep -i 'receipt' client2.out | head -1
# Her receipt carries no cosignature by it, and her client says so; the
# server logged once that commits no longer wait for it.
grep 'carries no cosignature by witness witness.example/w1' client2.out | tail -1
grep -m1 'commits no longer wait for it' server.log
echo "== submitted without the witness"
