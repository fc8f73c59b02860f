#!/usr/bin/env bash
# A term of coursework, end to end (issue 20): bash examples/term.sh
#
# In a temporary directory: a server on free loopback ports, the course's
# zone Asia/Hong_Kong; a roster of four with e-mail addresses, their codes
# (codes.csv) and one ready-to-send .eml message each; two assignments;
# one student enrolls only (`client enroll`); another hands in a 5 MiB
# binary file, extracted by the instructor byte for byte; the due time
# moved on the running server, a late file marked late; the late period
# ended, a file refused with the close time in the course's zone; an
# extension honoured; a student removed from the roster refused; `client
# status` matching each student's receipts; the gradebook CSV. Every step
# checks what it expects; the script exits non-zero on the first one that
# fails. CERTBOARD_BIN_DIR names a directory of prebuilt binaries (the
# tests set it); otherwise cargo builds them.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cd "$work"
echo "== term directory: $work"
export CERTBOARD_CA_PASSPHRASE="term passphrase, not for production"

echo "== server, the course shown in Hong Kong time"
start_server
admin course set --timezone Asia/Hong_Kong

echo "== roster of four with e-mail addresses; codes and .eml messages"
cat >roster.csv <<'EOF'
sid,name,email
1155000001,Chan Tai Man,a@example.edu
1155000002,Wong Siu Ming,b@example.edu
1155000003,Lee Ka Yan,c@example.edu
1155000004,Ho Mei Ling,d@example.edu
EOF
admin roster import roster.csv | tee import.out
expect_in import.out "4 added"
# The messages name the addresses students dial (here the loopback ones).
admin roster codes --out codes.csv --eml mail --ca-address "$ca" --blackboard-address "$bb" |
  tee codes.out
expect_in codes.out "wrote 4 message(s)"
head -1 codes.csv | tr -d '\r' | grep -qx 'sid,name,email,code' ||
  fail "codes.csv should start with sid,name,email,code"
[ "$(ls mail/*.eml | wc -l)" = 4 ] || fail "one .eml message per student"
expect_in mail/1155000002.eml "To: Wong Siu Ming <b@example.edu>"
expect_in mail/1155000002.eml "client --ca $ca --blackboard $bb --ca-fingerprint "
code_of() { tr -d '\r' <codes.csv | awk -F, -v s="$1" '$1==s {print $NF}'; }
code_file() { (umask 077 && code_of "$1" >"code-$1.txt") && echo "code-$1.txt"; }

echo "== two assignments"
admin assignment add hw1 --title "Homework 1" --due "$(at 3600)" --late-until "$(at 7200)"
admin assignment add hw2 --title "Homework 2" --due "$(at 604800)"
admin assignment list | tee assignments.out
expect_in assignments.out "+08:00[Asia/Hong_Kong]"

echo "== 1155000001 enrolls only: nothing is submitted"
client enroll1.out enroll --code-file "$(code_file 1155000001)" 1155000001 ||
  fail "client enroll failed"
expect_in enroll1.out "all 1 student(s) enrolled"
[ -z "$(ls students/1155000001/receipts 2>/dev/null)" ] || fail "client enroll left a receipt"

echo "== 1155000002 hands in a 5 MiB binary file for hw1"
head -c $((5 << 20)) /dev/urandom >thesis.bin
client submit2.out submit --assignment hw1 --file thesis.bin \
  --code-file "$(code_file 1155000002)" 1155000002 || fail "the 5 MiB file was refused"
expect_in submit2.out "5242880 bytes"
expect_in submit2.out "(on time)"

echo "== the instructor extracts hw1: the file byte for byte"
admin reports --assignment hw1 --extract extracted | tee extract.out
[ "$(sha256sum <thesis.bin)" = "$(sha256sum <extracted/hw1/1155000002/thesis.bin)" ] ||
  fail "the extracted file differs from the one handed in"

echo "== hw1's due time moved on the running server: 1155000003 is late"
admin assignment edit hw1 --due "$(at -600)" --force
client submit3.out submit --assignment hw1 --file roster.csv \
  --code-file "$(code_file 1155000003)" 1155000003 || fail "a late file was refused"
expect_in submit3.out "LATE by"

echo "== the late period ended: 1155000004 is refused, the close time in Hong Kong time"
admin assignment edit hw1 --late-until "$(at -60)"
if client submit4.out submit --assignment hw1 --file roster.csv \
  --code-file "$(code_file 1155000004)" 1155000004; then
  fail "a file after late-until was accepted"
fi
expect_in submit4.out "assignment hw1: submissions closed at"
expect_in submit4.out "+08:00[Asia/Hong_Kong]"

echo "== her extension: 1155000004 hands in on time"
admin extend --sid 1155000004 --assignment hw1 --until "$(at 3600)"
client submit4b.out submit --assignment hw1 --file roster.csv 1155000004 ||
  fail "the extension was not honoured"
expect_in submit4b.out "(on time)"

echo "== 1155000003 removed from the roster: her certificate no longer hands in"
admin roster remove 1155000003
if client submit3b.out submit --assignment hw2 --file roster.csv 1155000003; then
  fail "a removed student handed in"
fi
expect_in submit3b.out "not on the course roster"

echo "== client status matches each student's receipts"
for sid in 1155000002 1155000003 1155000004; do
  client "status-$sid.out" status "$sid" || fail "client status of $sid"
  expect_in "status-$sid.out" "all 1 receipt(s) she holds are listed by Blackboard"
  expect_in "status-$sid.out" "Asia/Hong_Kong"
done
expect_in status-1155000002.out "file \"thesis.bin\", 5242880 bytes"
expect_in status-1155000003.out "LATE by"
expect_in status-1155000004.out "HER EXTENSION: due"

echo "== the gradebook CSV"
admin gradebook >gradebook.csv
cat gradebook.csv
head -1 gradebook.csv | grep -q 'hw1_status' || fail "the gradebook should have hw1's columns"
head -1 gradebook.csv | grep -q 'hw2_status' || fail "the gradebook should have hw2's columns"
thesis_sha=$(sha256sum <thesis.bin | cut -d' ' -f1)
grep -q "^1155000002,.*,on_time,[^,]*,$thesis_sha," gradebook.csv ||
  fail "1155000002 on time in hw1 with her file's SHA-256"
grep -q '^1155000004,.*,on_time,' gradebook.csv || fail "1155000004 on time by her extension"
grep -q '^1155000003,' gradebook.csv && fail "a removed student stays out of the gradebook"
stop_server

echo "== term complete: every expectation held"
