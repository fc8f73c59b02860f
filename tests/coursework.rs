//! Assignments, deadlines and the instructor's side (issue 20), through the
//! real binaries: the lab's due time moved live on a running server (the
//! next submission sees it, no restart), a late report marked late in its
//! signed receipt, one refused after `late-until` with the close time in
//! the course's zone, an extension honoured, a removed student, the
//! gradebook CSV, the codes file with e-mails and the .eml messages.

mod common;

use certboard::time::{now_unix, rfc3339};
use common::{stdout, text, TestResult, TestServer};

const ROSTER: &str = "sid,name,email\n\
1155000001,Chan Tai Man,a@example.edu\n\
1155000002,\"=HYPERLINK(\"\"x\"\")\",b@example.edu\n\
1155000003,陳大文,c@example.edu\n\
1155000004,Test Row,\n";

fn admin_ok(server: &TestServer, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = server.admin(args)?;
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    Ok(stdout(&out))
}

/// The receipts the client saved for a SID, as verified content.
fn receipts(
    server: &TestServer,
    sid: &str,
) -> Result<Vec<certboard::receipt::ReceiptContent>, Box<dyn std::error::Error>> {
    let root = openssl::x509::X509::from_pem(&std::fs::read(server.root_pem())?)?;
    let dir = server.path().join("students").join(sid).join("receipts");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "p7m") {
            let der = std::fs::read(&path)?;
            out.push(certboard::receipt::verify_receipt(&der, &root, None)?.content);
        }
    }
    Ok(out)
}

fn status_json(server: &TestServer) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let out = admin_ok(
        server,
        &["status", "--assignment", "lab", "--format", "json"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn standing<'a>(rows: &'a [serde_json::Value], sid: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["sid"] == sid)
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn deadlines_change_live_and_the_gradebook_shows_them() -> TestResult {
    let server = TestServer::start(&[])?;
    assert!(
        server.wait_log("version 2 reports go to assignment lab", 10),
        "{}",
        server.log()
    );
    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    admin_ok(&server, &["roster", "import", "roster.csv"])?;
    // --eml without the addresses students dial: refused before any code
    // is made (the listen address is no address to dial).
    let refused = server.admin(&["roster", "codes", "--out", "codes.csv", "--eml", "mail"])?;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("--eml needs --ca-address HOST:PORT"),
        "{}",
        text(&refused)
    );
    assert!(!server.path().join("codes.csv").exists());
    let refused = server.admin(&[
        "roster",
        "codes",
        "--out",
        "codes.csv",
        "--eml",
        "mail",
        "--ca-address",
        "0.0.0.0:8011",
    ])?;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("not to dial"), "{}", text(&refused));
    let (ca, bb) = (server.ca.to_string(), server.blackboard.to_string());
    let said = admin_ok(
        &server,
        &[
            "roster",
            "codes",
            "--out",
            "codes.csv",
            "--eml",
            "mail",
            "--ca-address",
            &ca,
            "--blackboard-address",
            &bb,
        ],
    )?;
    assert!(said.contains("wrote 3 message(s)"), "{said}");
    assert!(said.contains("no e-mail address for 1155000004"), "{said}");
    let codes = std::fs::read_to_string(server.path().join("codes.csv"))?;
    assert!(codes.starts_with("sid,name,email,code\r\n"), "{codes}");
    // The formula name is made inert in the codes file.
    assert!(
        codes.contains("1155000002,\"'=HYPERLINK(\"\"x\"\")\",b@example.edu,"),
        "{codes}"
    );
    let eml = std::fs::read_to_string(server.path().join("mail/1155000003.eml"))?;
    assert!(eml.contains("To: =?UTF-8?B?"), "{eml}");
    assert!(eml.contains("\r\nMessage-ID: <"), "{eml}");
    let fingerprint = certboard::crypto::fingerprint(
        &openssl::x509::X509::from_pem(&std::fs::read(server.root_pem())?)?.to_der()?,
    );
    assert!(
        eml.contains(&format!(
            "client --ca {ca} --blackboard {bb} --ca-fingerprint {fingerprint} \
             --code-file code.txt 1155000003"
        )),
        "{eml}"
    );

    // On time: the lab has no due time yet, so no extension of it either.
    let now = now_unix();
    let out = server.admin(&[
        "extend",
        "--sid",
        "1155000001",
        "--assignment",
        "lab",
        "--until",
        &rfc3339(now + 3600),
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("has no due time"), "{}", text(&out));
    admin_ok(&server, &["course", "set", "--timezone", "Asia/Hong_Kong"])?;
    let soon = rfc3339(now + 3600);
    let later = rfc3339(now + 7200);
    admin_ok(
        &server,
        &[
            "assignment",
            "edit",
            "lab",
            "--due",
            &soon,
            "--late-until",
            &later,
        ],
    )?;
    let out = server.client(&["--codes-file", "codes.csv", "1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    let r = receipts(&server, "1155000001")?;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].assignment.as_deref(), r[0].late, r[0].late_seconds),
        (Some("lab"), Some(false), None)
    );

    // The due time moved into the past on the running server: late.
    let past = rfc3339(now - 600);
    let out = server.admin(&["assignment", "edit", "lab", "--due", &past])?;
    assert!(!out.status.success(), "a past due time needs --force");
    assert!(text(&out).contains("in the past"), "{}", text(&out));
    admin_ok(
        &server,
        &["assignment", "edit", "lab", "--due", &past, "--force"],
    )?;
    let out = server.client(&["--codes-file", "codes.csv", "1155000002"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(" (LATE by 10m"),
        "said late: {}",
        text(&out)
    );
    let r = receipts(&server, "1155000002")?;
    assert_eq!(
        (r[0].assignment.as_deref(), r[0].late),
        (Some("lab"), Some(true))
    );
    assert!(r[0].late_seconds.is_some_and(|s| s >= 600), "{:?}", r[0]);

    // Past late-until too: refused, the close time in the course's zone.
    let closed = now - 300;
    admin_ok(
        &server,
        &[
            "assignment",
            "edit",
            "lab",
            "--due",
            &rfc3339(now - 900),
            "--late-until",
            &rfc3339(closed),
            "--force",
        ],
    )?;
    let out = server.client(&["--codes-file", "codes.csv", "1155000003"])?;
    assert!(!out.status.success(), "{}", text(&out));
    let shown = certboard::assignment::show_time(closed, Some("Asia/Hong_Kong"));
    assert!(shown.ends_with("+08:00[Asia/Hong_Kong]"), "{shown}");
    assert!(
        text(&out).contains(&format!("assignment lab: submissions closed at {shown}")),
        "{}",
        text(&out)
    );
    // Her extension: taken, on time for her.
    let out = server.admin(&[
        "extend",
        "--sid",
        "1155000003",
        "--assignment",
        "lab",
        "--until",
        &rfc3339(now - 1000),
    ])?;
    assert!(!out.status.success(), "an extension before the due time");
    // A SID on no roster is a typo: refused, not stored.
    let out = server.admin(&[
        "extend",
        "--sid",
        "1155009999",
        "--assignment",
        "lab",
        "--until",
        &later,
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SID 1155009999 is not on the course roster"),
        "{}",
        text(&out)
    );
    admin_ok(
        &server,
        &[
            "extend",
            "--sid",
            "1155000003",
            "--assignment",
            "lab",
            "--until",
            &later,
        ],
    )?;
    let out = server.client(&["1155000003"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(receipts(&server, "1155000003")?[0].late, Some(false));

    // The instructor's views.
    let rows = status_json(&server)?;
    assert_eq!(rows.len(), 4);
    assert_eq!(standing(&rows, "1155000001")["status"], "on_time");
    assert_eq!(standing(&rows, "1155000002")["status"], "late");
    assert_eq!(standing(&rows, "1155000003")["status"], "on_time");
    assert!(standing(&rows, "1155000003")["extension_until"].is_string());
    assert_eq!(standing(&rows, "1155000004")["status"], "missing");
    let table = admin_ok(&server, &["status", "--assignment", "lab"])?;
    assert!(
        table.contains("total 4: 2 on time, 1 late, 1 missing, 1 extension(s)"),
        "{table}"
    );
    assert!(table.contains("late by 10m"), "{table}");
    // The test row leaves the counts; her records would stay.
    admin_ok(&server, &["roster", "drop", "1155000004"])?;
    let table = admin_ok(&server, &["status", "--assignment", "lab"])?;
    assert!(
        table.contains("total 3: 2 on time, 1 late, 0 missing"),
        "{table}"
    );
    let out = server.admin(&["roster", "remove", "1155000004"])?;
    assert!(!out.status.success(), "removed twice");
    let overall = admin_ok(&server, &["status"])?;
    assert!(!overall.contains("1155000004"), "{overall}");
    assert!(overall.contains("missing 0"), "{overall}");
    let out = server.admin(&["roster", "codes", "--out", "c4.csv", "--sid", "1155000004"])?;
    assert!(text(&out).contains("not on the roster"), "{}", text(&out));

    // The gradebook: one row per roster student, cells inert.
    let csv = admin_ok(&server, &["gradebook"])?;
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "sid,name,email,lab_status,lab_received_at,lab_sha256,lab_receipt"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    let late_row = lines
        .iter()
        .find(|l| l.starts_with("1155000002,"))
        .ok_or("no row for 1155000002")?;
    let r2 = &receipts(&server, "1155000002")?[0];
    assert!(
        late_row.starts_with("1155000002,\"'=HYPERLINK(\"\"x\"\")\",b@example.edu,late,"),
        "{late_row}"
    );
    assert!(
        late_row.ends_with(&format!(",{},{}", r2.report_sha256, r2.receipt)),
        "{late_row}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&admin_ok(&server, &["gradebook", "--format", "json"])?)?;
    assert_eq!(json[0]["assignments"]["lab"]["status"], "on_time");

    // Closing ends extensions too.
    admin_ok(&server, &["assignment", "close", "lab"])?;
    let out = server.client(&["1155000003"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("submissions closed at"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn assignment_commands_check_what_they_are_given() -> TestResult {
    let server = TestServer::start(&[])?;
    let due = rfc3339(now_unix() + 86_400);
    let opens = rfc3339(now_unix() + 3_600);
    admin_ok(
        &server,
        &[
            "assignment",
            "add",
            "hw1",
            "--title",
            "Homework 1",
            "--due",
            "2099-03-01T23:59:00+08:00",
            "--opens",
            &opens,
        ],
    )?;
    for (args, needle) in [
        (
            vec![
                "assignment",
                "add",
                "hw1",
                "--title",
                "Again",
                "--due",
                &due,
            ],
            "already exists",
        ),
        (
            vec!["assignment", "add", "HW 2", "--title", "T", "--due", &due],
            "assignment id",
        ),
        (
            vec![
                "assignment",
                "add",
                "hw2",
                "--title",
                "T",
                "--due",
                "tomorrow",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "assignment",
                "add",
                "hw2",
                "--title",
                "T",
                "--due",
                &due,
                "--late-until",
                &opens,
            ],
            "--late-until must not be before --due",
        ),
        (
            vec![
                "assignment",
                "add",
                "hw2",
                "--title",
                "T",
                "--due",
                "2001-01-01T00:00:00Z",
            ],
            "in the past",
        ),
        (vec!["course", "set", "--timezone", "Mars/Olympus"], "IANA"),
        (
            vec![
                "extend",
                "--sid",
                "1155000001",
                "--assignment",
                "nope",
                "--until",
                &due,
            ],
            "no assignment",
        ),
    ] {
        let out = server.admin(&args)?;
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
    let csv = admin_ok(&server, &["assignment", "list", "--format", "csv"])?;
    assert_eq!(
        csv.split("\r\n").nth(2),
        Some(format!("hw1,Homework 1,{opens},2099-03-01T15:59:00Z,,").as_str()),
        "{csv}"
    );
    admin_ok(&server, &["course", "set", "--timezone", "Asia/Hong_Kong"])?;
    let table = admin_ok(&server, &["assignment", "list"])?;
    assert!(
        table.contains("due=2099-03-01T23:59:00+08:00[Asia/Hong_Kong]"),
        "{table}"
    );
    // A late period and an opening time, then each removed by `edit`.
    admin_ok(
        &server,
        &[
            "assignment",
            "edit",
            "hw1",
            "--late-until",
            "2099-03-02T23:59:00+08:00",
        ],
    )?;
    let csv = admin_ok(&server, &["assignment", "list", "--format", "csv"])?;
    assert!(csv.contains(",2099-03-02T15:59:00Z,"), "{csv}");
    for (args, needle) in [
        (
            vec!["assignment", "edit", "hw1", "--no-opens", "--opens", &opens],
            "cannot be used with",
        ),
        (
            vec![
                "assignment",
                "edit",
                "hw1",
                "--no-late-until",
                "--late-until",
                &due,
            ],
            "cannot be used with",
        ),
        (
            vec![
                "assignment",
                "add",
                "hw3",
                "--title",
                "T",
                "--due",
                &due,
                "--no-opens",
            ],
            "unexpected argument",
        ),
    ] {
        let out = server.admin(&args)?;
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
    admin_ok(
        &server,
        &["assignment", "edit", "hw1", "--no-opens", "--no-late-until"],
    )?;
    let csv = admin_ok(&server, &["assignment", "list", "--format", "csv"])?;
    assert_eq!(
        csv.split("\r\n").nth(2),
        Some("hw1,Homework 1,,2099-03-01T15:59:00Z,,"),
        "{csv}"
    );
    // A new due time past the late period's end is refused until the
    // instructor says what becomes of the late period.
    admin_ok(
        &server,
        &[
            "assignment",
            "edit",
            "hw1",
            "--late-until",
            "2099-03-02T23:59:00+08:00",
        ],
    )?;
    let out = server.admin(&[
        "assignment",
        "edit",
        "hw1",
        "--due",
        "2099-03-05T23:59:00+08:00",
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ends 2099-03-02T23:59:00+08:00")
            && text(&out).contains("--no-late-until"),
        "{}",
        text(&out)
    );
    let csv = admin_ok(&server, &["assignment", "list", "--format", "csv"])?;
    assert!(
        csv.contains(",2099-03-01T15:59:00Z,2099-03-02T15:59:00Z,"),
        "unchanged: {csv}"
    );
    // Closed, then a new due time: open again, and said so.
    admin_ok(&server, &["assignment", "close", "hw1"])?;
    let said = admin_ok(
        &server,
        &[
            "assignment",
            "edit",
            "hw1",
            "--due",
            "2099-03-05T23:59:00+08:00",
            "--no-late-until",
        ],
    )?;
    assert!(said.contains("it was closed and is open again"), "{said}");
    let said = admin_ok(
        &server,
        &["assignment", "edit", "hw1", "--title", "Homework one"],
    )?;
    assert!(!said.contains("open again"), "{said}");
    Ok(())
}

/// `examples/term.sh` plays a term (issue 20's "done when"): a roster
/// with e-mails, codes and .eml files, two assignments, an enroll-only
/// student, a 5 MiB file extracted byte for byte, a due time moved live,
/// late, refused after late-until, an extension, a removed student,
/// `client status` matching the receipts, the gradebook with files.
#[test]
fn the_term_script_plays_a_term() -> TestResult {
    let out = common::run_example("term.sh")?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    for step in [
        "all 1 student(s) enrolled",
        "5242880 bytes",
        "LATE by",
        "assignment hw1: submissions closed at",
        "not on the course roster",
        "HER EXTENSION: due",
        "all 1 receipt(s) she holds are listed by Blackboard",
        "== term complete: every expectation held",
    ] {
        assert!(s.contains(step), "{step:?} missing:\n{}", text(&out));
    }
    Ok(())
}
