//! `client status` (protocol version 3, intent status; issue 20): the
//! student's own view of what Blackboard holds for her, through the real
//! binaries, checked against the receipts she saved; a submission deleted
//! behind certboard's back is reported as missing with a non-zero exit;
//! a status request that does not prove the session key is refused.

mod common;

use certboard::client::{self, ClientError, FramedStream};
use certboard::crypto;
use certboard::message::{ErrorCode, Intent, Message};
use certboard::time::{now_unix, rfc3339};
use common::{
    enroll_key, hello_v3, offered, stdout, text, Offered, TestResult, TestServer, NET_TIMEOUT,
};

const SID: &str = "1155000077";

/// The receipt ids she holds.
/// `client submit --assignment ASSIGNMENT --file NAME SID` of a file
/// holding `bytes`, written in the server's folder.
fn submit_file(
    server: &TestServer,
    assignment: &str,
    name: &str,
    bytes: impl AsRef<[u8]>,
) -> Result<std::process::Output, Box<dyn std::error::Error>> {
    let file = server.path().join(name);
    std::fs::write(&file, bytes)?;
    Ok(server.client(&[
        "submit",
        "--assignment",
        assignment,
        "--file",
        &file.display().to_string(),
        SID,
    ])?)
}

fn held(server: &TestServer) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let dir = server.path().join("students").join(SID).join("receipts");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "p7m") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            out.push(stem.to_string());
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn status_matches_her_receipts_and_a_deleted_submission_is_missing() -> TestResult {
    let server = TestServer::start(&[])?;
    let now = now_unix();
    server.course_with_hw1(&["--due", &rfc3339(now + 3600)])?;
    // Before any enrollment: nothing to ask with, and nothing enrolled.
    let out = server.client(&["status", SID])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("client enroll"), "{}", text(&out));
    assert!(!server.path().join("students").join(SID).exists());

    // A lab report (version 2) and a file (version 3).
    let out = server.client(&[SID])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = submit_file(&server, "hw1", "essay.bin", [0u8, 1, 2, 255, 10, 13])?;
    assert!(out.status.success(), "{}", text(&out));
    server.admin_ok(&[
        "extend",
        "--sid",
        SID,
        "--assignment",
        "hw1",
        "--until",
        &rfc3339(now + 86_400),
    ])?;
    let ids = held(&server)?;
    assert_eq!(ids.len(), 2, "{ids:?}");

    let out = server.client(&["status", SID])?;
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        said.contains("all 2 receipt(s) she holds are listed by Blackboard"),
        "{said}"
    );
    for id in &ids {
        assert!(said.contains(&format!("receipt {id} for ")), "{said}");
    }
    assert!(said.contains("file \"essay.bin\", 6 bytes"), "{said}");
    let sha = crypto::sha256_hex(&[0u8, 1, 2, 255, 10, 13]);
    assert!(said.contains(&sha), "{said}");
    // Times in the course's zone, her extension shown.
    assert!(said.contains("Asia/Hong_Kong"), "{said}");
    assert!(said.contains("+08:00[Asia/Hong_Kong]"), "{said}");
    assert!(said.contains("HER EXTENSION: due"), "{said}");
    assert!(
        said.contains("nothing taken late after it"),
        "no late period: {said}"
    );
    assert!(said.contains("hw1 \"Homework 1\""), "{said}");
    // With a late period of an hour, hers ends an hour after her own due
    // time, not at the class's end.
    server.admin_ok(&[
        "assignment",
        "edit",
        "hw1",
        "--late-until",
        &rfc3339(now + 7200),
    ])?;
    let said = stdout(&server.client(&["status", SID])?);
    let zone = Some("Asia/Hong_Kong");
    let show = |t| certboard::assignment::show_time(t, zone);
    assert!(
        said.contains(&format!(
            "HER EXTENSION: due {}, late until {}",
            show(now + 86_400),
            show(now + 86_400 + 3600)
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("late until {}", show(now + 7200))),
        "{said}"
    );

    // verify-receipt checks a version 3 receipt's fields and the file.
    let upload_receipt: i64 =
        rusqlite::Connection::open(server.path().join("data").join(certboard::store::DB_FILE))?
            .query_row("SELECT receipt_id FROM uploads", [], |r| r.get(0))?;
    let receipts = server.path().join("students").join(SID).join("receipts");
    let verify = |receipt: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_client"))
            .current_dir(server.path())
            .arg("verify-receipt")
            .arg(receipts.join(format!("{receipt}.p7m")))
            .args(extra)
            .output()
    };
    let file_arg = server.path().join("essay.bin").display().to_string();
    let v = verify(&upload_receipt.to_string(), &["--file", &file_arg])?;
    assert!(v.status.success(), "{}", text(&v));
    let said = stdout(&v);
    assert!(said.contains("(version 3)"), "{said}");
    assert!(
        said.contains(&format!("the file \"essay.bin\" (6 bytes, SHA-256 {sha})")),
        "{said}"
    );
    assert!(said.contains("for hw1"), "{said}");
    assert!(said.contains("on time (matches --file)"), "{said}");
    // Another file, and the same bytes under another name.
    let other = server.path().join("other.bin");
    std::fs::write(&other, [0u8, 1, 2, 255, 10, 14])?;
    let v = verify(
        &upload_receipt.to_string(),
        &["--file", &other.display().to_string()],
    )?;
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(stdout(&v).contains("INVALID"), "{}", text(&v));
    std::fs::write(&other, [0u8, 1, 2, 255, 10, 13])?;
    let v = verify(
        &upload_receipt.to_string(),
        &["--file", &other.display().to_string()],
    )?;
    assert!(v.status.success(), "{}", text(&v));
    assert!(
        stdout(&v).contains("handed in as \"essay.bin\""),
        "{}",
        text(&v)
    );
    // --file against the lab report's receipt: not a file's receipt.
    let lab = ids
        .iter()
        .find(|id| **id != upload_receipt.to_string())
        .ok_or("no lab receipt")?;
    let v = verify(lab, &["--file", &file_arg])?;
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(stdout(&v).contains("not of a file"), "{}", text(&v));

    // The file's row deleted behind certboard's back: said, loudly.
    let upload_id: u64 = {
        let db =
            rusqlite::Connection::open(server.path().join("data").join(certboard::store::DB_FILE))?;
        let id: i64 = db.query_row("SELECT receipt_id FROM uploads", [], |r| r.get(0))?;
        db.execute("DELETE FROM uploads WHERE receipt_id = ?1", [id])?;
        id as u64
    };
    let out = server.client(&["status", SID])?;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        said.contains(&format!(
            "MISSING FROM BLACKBOARD: her receipt {upload_id} ("
        )),
        "{said}"
    );
    assert!(said.contains("1 receipt(s) missing"), "{said}");
    Ok(())
}

/// The reverse: a submission Blackboard lists with no receipt in her
/// folder (here its receipt removed) is said plainly, with what it may
/// mean, and the exit status is 1; her receipt put back, all is well.
#[test]
fn a_submission_without_a_receipt_in_her_folder_is_said_plainly() -> TestResult {
    let server = TestServer::start(&[])?;
    server.course_with_hw1(&["--due", &rfc3339(now_unix() + 3600)])?;
    let out = server.client(&[SID])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = submit_file(&server, "hw1", "thesis.pdf", b"%PDF-1.7 hers")?;
    assert!(out.status.success(), "{}", text(&out));
    let upload_receipt: i64 =
        rusqlite::Connection::open(server.path().join("data").join(certboard::store::DB_FILE))?
            .query_row("SELECT receipt_id FROM uploads", [], |r| r.get(0))?;
    let receipts = server.path().join("students").join(SID).join("receipts");
    let receipt = receipts.join(format!("{upload_receipt}.p7m"));
    let kept = server.path().join("kept.p7m");
    std::fs::rename(&receipt, &kept)?;

    let out = server.client(&["status", SID])?;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        said.contains(&format!(
            "NO RECEIPT IN HER FOLDER: Blackboard lists receipt {upload_receipt} for hw1: \
             the file \"thesis.pdf\", received "
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "1 submission(s) that Blackboard lists as hers have no receipt in \
             students/{SID}/receipts."
        )),
        "{said}"
    );
    assert!(
        said.contains("someone else did with her key: ask the instructor to revoke"),
        "{said}"
    );
    assert!(
        said.contains("0 receipt(s) missing, 0 listed otherwise, 0 not checked, 1 submission(s) without a receipt here"),
        "{said}"
    );
    // The lab report's receipt is still hers and matched: only one said.
    assert_eq!(
        said.matches("NO RECEIPT IN HER FOLDER").count(),
        1,
        "{said}"
    );

    std::fs::rename(&kept, &receipt)?;
    let out = server.client(&["status", SID])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains("NO RECEIPT"), "{}", text(&out));
    assert!(
        stdout(&out).contains("all 2 receipt(s) she holds are listed by Blackboard"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn a_status_request_without_the_session_key_is_refused() -> TestResult {
    let server = TestServer::start(&[])?;
    let key = certboard::testing::rsa_key()?;
    let cert = enroll_key(server.ca, SID, &key)?;
    let trust = server.trust()?;
    let hello = hello_v3(SID, &cert, Intent::Status)?;
    let Offered { mut conn, .. } = offered(server.blackboard, &hello, &trust, &key)?;
    // Someone holding only her (public) certificate cannot make the MAC.
    conn.send(&Message::StatusRequest { mac: [7; 32] })?;
    match conn.recv() {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::BadMac, "{reason}");
            assert!(reason.contains("status request"), "{reason}");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    // With her key, the library's own exchange answers.
    let mut conn = FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
    let body = client::ask_status(&mut conn, SID, &cert, &key, &trust, &mut |_| {})?;
    assert_eq!(body.zone, "UTC");
    assert!(body.submissions.is_empty());
    assert!(body.assignments.iter().any(|a| a.id == "lab"));
    Ok(())
}

/// A student removed from the roster while it is in force: her
/// certificate, good at the CA, no longer submits by either version
/// (code 11, the reason says she was removed); nothing is recorded; her
/// status is still answered, with what she handed in before.
#[test]
fn a_removed_student_can_no_longer_submit_or_upload() -> TestResult {
    let server = TestServer::start(&[])?;
    std::fs::write(
        server.path().join("roster.csv"),
        format!("sid,name\n{SID},Chan Tai Man\n1155000078,Other\n"),
    )?;
    server.admin_ok(&["roster", "import", "roster.csv"])?;
    server.admin_ok(&["roster", "codes", "--out", "codes.csv"])?;
    let out = server.client(&["--codes-file", "codes.csv", SID])?;
    assert!(out.status.success(), "{}", text(&out));
    server.admin_ok(&["roster", "remove", SID])?;

    let out = server.client(&[SID])?;
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("not on the course roster"), "{said}");
    assert!(said.contains("removed by the instructor"), "{said}");
    let out = submit_file(&server, "lab", "late.txt", "hello")?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not on the course roster"),
        "{}",
        text(&out)
    );
    // The code on the wire, for a version 3 announcement.
    let dir = server.path().join("students").join(SID);
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("key.pem"))?)?;
    let cert = openssl::x509::X509::from_pem(&std::fs::read(dir.join("cert.pem"))?)?.to_der()?;
    let serial = openssl::x509::X509::from_der(&cert)?
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string();
    let prepared = client::prepare_file(&server.path().join("late.txt"))?;
    let mut conn = FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
    match client::upload(
        &mut conn,
        SID,
        &serial,
        &cert,
        &key,
        "lab",
        &prepared,
        &server.trust()?,
        &mut |_| {},
    ) {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::NotOnRoster),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    let out = server.client(&["status", SID])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("all 1 receipt(s) she holds are listed"),
        "{}",
        text(&out)
    );
    Ok(())
}
