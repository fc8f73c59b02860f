//! The transparency log end to end (issue 21): every certificate issued
//! and report accepted by a running server is a leaf; the log served as
//! C2SP tlog-tiles is checked by an independent verifier written from the
//! specifications (tests/tlog/c2sp_verify.py, Python's `cryptography`);
//! `server log verify` names a record edited or deleted behind the
//! server's back.

mod common;

use std::process::Command;

use common::{stdout, text, TestServer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn verifier(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tlog/c2sp_verify.py"
        ))
        .args(args)
        .output()
}

#[test]
fn the_served_log_is_verified_independently_and_tampering_is_named() -> TestResult {
    let server = TestServer::start(&["--http-listen", "127.0.0.1:0"])?;
    let http = server.http_addr()?;
    let out = server.client(&["1155000001", "1155000002", "1155000003"])?;
    assert!(out.status.success(), "{}", text(&out));

    let key = server.admin(&["log", "key"])?;
    assert!(key.status.success(), "{}", text(&key));
    let vkey = stdout(&key).trim().to_string();
    let origin = vkey.split('+').next().ok_or("no origin")?.to_string();
    assert_eq!(origin, "CUHK/certboard-log");

    // Three certificates and three reports: six leaves.
    let cp = server.admin(&["log", "checkpoint"])?;
    assert!(cp.status.success(), "{}", text(&cp));
    let note = stdout(&cp);
    assert!(note.starts_with("CUHK/certboard-log\n6\n"), "{note}");
    let verified = certboard::tlog::Checkpoint::open(
        &note,
        &certboard::tlog::NoteVerifier::from_key(&vkey)?,
        &origin,
    )?;
    assert_eq!(verified.size, 6);

    let url = format!("http://{http}/log");
    let v = verifier(&["tiles", "--vkey", &vkey, "--origin", &origin, "--url", &url])?;
    assert!(v.status.success(), "{}", text(&v));
    assert!(stdout(&v).contains("6 entries recompute the checkpoint's root"));

    // An older checkpoint is a prefix of the newer log.
    let old = server.path().join("old-checkpoint");
    std::fs::write(&old, &note)?;
    let more = server.client(&["1155000004"])?;
    assert!(more.status.success(), "{}", text(&more));
    let old_s = old.to_string_lossy().to_string();
    let v = verifier(&[
        "tiles", "--vkey", &vkey, "--origin", &origin, "--url", &url, "--old", &old_s,
    ])?;
    assert!(v.status.success(), "{}", text(&v));

    let ok = server.admin(&["log", "verify"])?;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        stdout(&ok).contains("log verified: 8 entries"),
        "{}",
        text(&ok)
    );

    // A report edited behind the server's back is named.
    let db =
        rusqlite::Connection::open(server.path().join("data").join(certboard::store::DB_FILE))?;
    db.execute(
        "UPDATE reports SET text = 'rewritten' WHERE sid = '1155000002'",
        [],
    )?;
    let bad = server.admin(&["log", "verify"])?;
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("has no matching record"),
        "{}",
        text(&bad)
    );
    Ok(())
}

#[test]
fn a_forged_checkpoint_or_a_foreign_key_is_refused_by_the_verifier() -> TestResult {
    let server = TestServer::start(&["--http-listen", "127.0.0.1:0"])?;
    let http = server.http_addr()?;
    let out = server.client(&["1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    let url = format!("http://{http}/log");
    // Another log's key with this log's name: the signature does not verify.
    let other = certboard::tlog::NoteSigner::new(
        "CUHK/certboard-log",
        openssl::pkey::PKey::generate_ed25519()?,
    )?;
    let v = verifier(&[
        "tiles",
        "--vkey",
        &other.verifier_key(),
        "--origin",
        "CUHK/certboard-log",
        "--url",
        &url,
    ])?;
    assert!(!v.status.success(), "{}", text(&v));
    assert!(stdout(&v).contains("FAIL"), "{}", text(&v));
    Ok(())
}
