#!/usr/bin/env bash
# The staff web interface from the shell (issue 23): bash examples/staff.sh
#
# In a temporary directory: a server on free loopback ports with
# --staff-listen; a roster of three, an assignment, one student handing in
# a 5 MiB binary file through the client; a staff account added from a
# password file. Then, with curl and a cookie jar as a browser would: log
# in (the CSRF token scraped from the page), the overview, the
# assignment's page and its CSV export, the file downloaded and compared
# by SHA-256 with the one handed in, logout, and the old cookie refused
# (303 to /login). Every step checks what it expects; the script exits
# non-zero on the first one that fails. CERTBOARD_BIN_DIR names a
# directory of prebuilt binaries (the tests set it); otherwise cargo
# builds them.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cd "$work"
echo "== staff directory: $work"
export CERTBOARD_CA_PASSPHRASE="staff example passphrase, not for production"

echo "== server with the staff listener on loopback"
start_server --staff-listen 127.0.0.1:0
# start_server waits for the CA's and Blackboard's lines; the staff
# listener's may follow them.
for _ in $(seq 100); do
  grep -q '^listening staff' server.out 2>/dev/null && break
  sleep 0.1
done
staff=$(awk '$1=="listening" && $2=="staff" {print $3}' server.out)
[ -n "$staff" ] || fail "the staff listener did not start"
echo "   staff pages on http://$staff/"

echo "== a roster, an assignment, a 5 MiB file handed in"
cat >roster.csv <<'EOF'
sid,name,email
1155000001,Chan Tai Man,a@example.edu
1155000002,Wong Siu Ming,b@example.edu
1155000003,Lee Ka Yan,c@example.edu
EOF
admin roster import roster.csv >/dev/null
admin roster codes --out codes.csv >/dev/null
admin assignment add hw1 --title "Homework 1" --due "$(at 3600)"
(umask 077 && tr -d '\r' <codes.csv | awk -F, '$1=="1155000001" {print $NF}' >code.txt)
head -c $((5 << 20)) /dev/urandom >thesis.bin
"$bin/client" --ca "$ca" --blackboard "$bb" --ca-cert keys/ca-cert.pem --timeout 60 \
  submit --assignment hw1 --file thesis.bin --code-file code.txt 1155000001 >submit.out 2>&1 ||
  { cat submit.out; fail "the file was refused"; }
expect_in submit.out "5242880 bytes"
sed "s/^/   | /" submit.out

echo "== a staff account from a password file"
# No newline: curl sends the file as it is (`server staff add` reads the
# first line either way).
(umask 077 && printf %s "a staff password for the example" >pw.txt)
admin staff add ta.lee --password-file pw.txt
admin staff list | tee staff.out
expect_in staff.out "ta.lee"

# web PATH [CURL ARGS...]: curl against the staff listener with the cookie
# jar; the head goes to head.txt, the body to body.out, the status is
# printed.
web() {
  local path=$1
  shift
  curl -sS --max-time 60 -b jar -c jar -D head.txt -o body.out -w '%{http_code}' "$@" \
    "http://$staff$path"
}
# csrf: the CSRF token of the page in body.out.
csrf() { grep -o 'name="csrf" value="[0-9a-f]*"' body.out | head -1 | sed 's/.*value="//; s/"$//'; }

echo "== log in"
[ "$(web /)" = 303 ] || fail "without a session / should redirect"
expect_in head.txt "Location: /login"
[ "$(web /login)" = 200 ] || fail "the login page"
expect_in body.out 'id="login-form"'
status=$(web /login --data-urlencode "username=ta.lee" --data-urlencode "password@pw.txt")
[ "$status" = 303 ] || fail "login answered $status"
expect_in head.txt "Set-Cookie: certboard_staff="
expect_in head.txt "HttpOnly"
cookie=$(awk '$6=="certboard_staff" {print $7}' jar)
[ -n "$cookie" ] || fail "no session cookie in the jar"

echo "== the overview"
[ "$(web /)" = 200 ] || fail "the overview"
expect_in body.out '<tr data-assignment="hw1">'
expect_in body.out '<svg id="timeline"'
token=$(csrf)
[ -n "$token" ] || fail "no CSRF token on the overview"

echo "== the assignment's page and its CSV export"
[ "$(web /assignments/hw1)" = 200 ] || fail "the assignment page"
expect_in body.out 'data-sid="1155000001" data-status="on-time"'
expect_in body.out 'href="/assignments/hw1/files/1155000001"'
[ "$(web /assignments/hw1/export.csv)" = 200 ] || fail "the CSV export"
sum=$(sha256sum <thesis.bin | cut -d' ' -f1)
expect_in body.out "$sum"
expect_in body.out "1155000003"

echo "== the file downloaded, byte for byte"
[ "$(web /assignments/hw1/files/1155000001)" = 200 ] || fail "the download"
expect_in head.txt "Content-Disposition: attachment"
expect_in head.txt "X-Content-Type-Options: nosniff"
[ "$(sha256sum <body.out | cut -d' ' -f1)" = "$sum" ] ||
  fail "the downloaded file differs from the one handed in"
echo "   SHA-256 $sum matches"

echo "== log out; the old cookie opens nothing"
[ "$(web /logout --data-urlencode "csrf=$token")" = 303 ] || fail "logout"
expect_in head.txt "Location: /login"
status=$(curl -sS --max-time 20 -o /dev/null -w '%{http_code}' \
  -H "Cookie: certboard_staff=$cookie" "http://$staff/")
[ "$status" = 303 ] || fail "the old cookie answered $status, not 303"

stop_server
echo "== staff pages complete: every expectation held"
