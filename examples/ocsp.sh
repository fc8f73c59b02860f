#!/usr/bin/env bash
# Revocation as a relying party sees it: bash examples/ocsp.sh
#
# Starts certboard's server with its HTTP listener (--http-listen) and
# --public-url naming it, enrolls a student, asks `openssl ocsp` about her
# certificate (good), revokes it with `server revoke`, asks again
# (revoked, keyCompromise), then fetches the CRL from the distribution point
# written in her certificate and lets `openssl verify -crl_download` refuse
# it. Needs openssl and curl.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

# Starts the server with "$@" and waits for its `listening http` line.
start_server() {
  : >server.out
  RUST_LOG=${RUST_LOG:-warn} "$bin/server" --ca-listen 127.0.0.1:0 \
    --blackboard-listen 127.0.0.1:0 "$@" >server.out 2>>server.log &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening http' server.out 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start"; cat server.log; exit 1
}

cd "$work"
export CERTBOARD_CA_PASSPHRASE="ocsp example passphrase, not for production"

# A free port for the HTTP listener, so that the URL in the certificates
# can name it: start once on port 0, then again on the port obtained.
start_server --http-listen 127.0.0.1:0
http=$(awk '$1=="listening" && $2=="http" {print $3}' server.out)
stop_server
start_server --http-listen "$http" --public-url "http://$http"
ca=$(awk '$1=="listening" && $2=="ca" {print $3}' server.out)
bb=$(awk '$1=="listening" && $2=="blackboard" {print $3}' server.out)
echo "== server: CA on $ca, Blackboard on $bb, HTTP on $http"

echo "== enroll and submit: 1155000001"
"$bin/client" --ca "$ca" --blackboard "$bb" 1155000001
cert=students/1155000001/cert.pem
openssl x509 -in "$cert" -noout -ext crlDistributionPoints,authorityInfoAccess

echo "== openssl ocsp (before revocation)"
openssl ocsp -issuer keys/ca-cert.pem -cert "$cert" -url "http://$http/ocsp" \
  -CAfile keys/ca-cert.pem

echo "== server revoke --sid 1155000001 --reason key-compromise"
"$bin/server" revoke --sid 1155000001 --reason key-compromise

echo "== openssl ocsp (after revocation)"
openssl ocsp -issuer keys/ca-cert.pem -cert "$cert" -url "http://$http/ocsp" \
  -CAfile keys/ca-cert.pem

echo "== the CRL, from http://$http/crl"
curl -sS -f -o crl.der "http://$http/crl"
openssl crl -inform DER -in crl.der -noout -text | sed '/Signature Value/,$d'

echo "== openssl verify -crl_check -crl_download (follows the certificate's CDP)"
if openssl verify -crl_check -crl_download -CAfile keys/ca-cert.pem "$cert"; then
  echo "a revoked certificate was accepted"; exit 1
fi
echo "== refused, as it should be"
