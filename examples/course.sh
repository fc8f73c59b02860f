#!/usr/bin/env bash
# A whole course, end to end: bash examples/course.sh
#
# In a temporary directory: a server (free ports, a fresh CA root) with a
# roster of three imported and their enrollment codes generated; an
# impostor refused (no code, then another student's code); the three
# students enroll with their codes and submit; one renews without a code
# (--renew); `status` shows who submitted and who is missing; the reports
# exported as JSON and CSV; then the server restarted with
# --submissions-close in the past, and a late report refused and not
# recorded. Every step checks what it expects and the script exits
# non-zero on the first expectation that fails. CERTBOARD_BIN_DIR names a
# directory of prebuilt binaries (the tests set it); otherwise cargo
# builds them.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cd "$work"
echo "== course directory: $work"
export CERTBOARD_CA_PASSPHRASE="course passphrase, not for production"

echo "== server (no roster yet)"
start_server
expect_in server.log "no roster: anyone can enroll for any SID"

echo "== roster import: three students"
cat >roster.csv <<'EOF'
sid,name,email
1155000001,Chan Tai Man,a@example.edu
1155000002,"Wong, Siu Ming",b@example.edu
1155000003,Lee Ka Yan,c@example.edu
EOF
admin roster import roster.csv | tee import.out
expect_in import.out "3 added"

echo "== enrollment codes (codes.csv, mode 0600, shown only this once)"
admin roster codes --out codes.csv
[ "$(stat -c %a codes.csv)" = 600 ] || fail "codes.csv should be mode 0600"
# codes.csv is CSV with CRLF line ends; with the roster's email column it
# is sid,name,email,code (a quoted name may hold a comma: the code is last).
code_of() { tr -d '\r' <codes.csv | awk -F, -v s="$1" '$1==s {print $NF}'; }
for sid in 1155000001 1155000002 1155000003; do
  [ -n "$(code_of "$sid")" ] || fail "no code for $sid in codes.csv"
done

echo "== an impostor for 1155000002 with no code: refused"
if client impostor-nocode.out --out-dir impostor 1155000002; then
  fail "an enrollment with no code succeeded"
fi
expect_in impostor-nocode.out "enrollment code required"
[ ! -e impostor/1155000002 ] || fail "a refused enrollment left a student folder"

echo "== the impostor with another student's code (1155000001's): refused"
# A code is never on the command line (other users can read it there):
# each student keeps hers in a file only she can read.
code_file() { (umask 077 && code_of "$1" >"code-$1.txt") && echo "code-$1.txt"; }
if client impostor-other.out --out-dir impostor --code-file "$(code_file 1155000001)" 1155000002; then
  fail "an enrollment with another student's code succeeded"
fi
expect_in impostor-other.out "wrong enrollment code"

echo "== the three students enroll with their codes and submit"
for sid in 1155000001 1155000002 1155000003; do
  client "enroll-$sid.out" --code-file "$(code_file "$sid")" "$sid" ||
    fail "student $sid could not enroll and submit"
  expect_in "enroll-$sid.out" "receipt"
  openssl verify -CAfile keys/ca-cert.pem "students/$sid/cert.pem" >/dev/null ||
    fail "openssl verify of $sid's certificate"
done

echo "== 1155000003 renews without a code (--renew, by her current key)"
old_serial=$(openssl x509 -in students/1155000003/cert.pem -noout -serial)
# The same report again: the client sends it only with --resubmit.
client renew.out --renew --resubmit 1155000003 || fail "the renewal failed"
expect_in renew.out "renewing: proving possession"
new_serial=$(openssl x509 -in students/1155000003/cert.pem -noout -serial)
[ "$old_serial" != "$new_serial" ] || fail "the renewal gave no new certificate"
expect_in server.log "renewed by proof of possession"

echo "== status: everyone enrolled and submitted"
admin status | tee status.out
expect_in status.out "enrolled 3, submitted 3, missing 0"
expect_in status.out "Wong, Siu Ming"

echo "== a fourth student added to the roster, who has not enrolled: status shows her missing"
printf '1155000004,Ho Mei Ling,d@example.edu\n' >>roster.csv
admin roster import roster.csv
admin status | tee status2.out
expect_in status2.out "enrolled 3, submitted 3, missing 1 (1155000004)"

echo "== the reports exported as JSON and CSV (full texts)"
admin reports --full --format json >reports.json
admin reports --full --format csv >reports.csv
[ "$(grep -o '"sid":"11550000[0-9]*"' reports.json | wc -l)" = 4 ] ||
  fail "reports.json should hold 4 reports (three, and the renewed student's second)"
expect_in reports.json "This is submission from SID1155000002."
head -1 reports.csv | grep -q '^sid,receipt,serial,received_at,origin,report_sha256,text' ||
  fail "reports.csv should start with its header"
[ "$(grep -c '^11550000[0-9]*,' reports.csv)" = 4 ] || fail "reports.csv should hold 4 reports"
head -3 reports.csv

echo "== submissions closed in the past: the server restarted with --submissions-close"
stop_server
start_server --submissions-close 2000-01-01T08:00:00+08:00
if client late.out 1155000001; then
  fail "a report after the deadline was accepted"
fi
expect_in late.out "submissions closed at 2000-01-01T00:00:00Z"
admin reports --format json >after.json
[ "$(grep -o '"sid":"11550000[0-9]*"' after.json | wc -l)" = 4 ] ||
  fail "the late report must not be recorded"
admin status | tee status3.out
expect_in status3.out "submissions: until 2000-01-01T00:00:00Z"
stop_server

echo "== course complete: every expectation held"
