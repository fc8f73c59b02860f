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

#[test]
fn log_example_script_shows_the_instructors_and_anyones_checks() -> TestResult {
    let out = common::run_example("log.sh")?;
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(
        s.contains("OK CUHK/certboard-log: 6 entries recompute"),
        "{s}"
    );
    assert!(
        s.contains("OK CUHK/certboard-log: 8 entries recompute"),
        "{s}"
    );
    assert!(s.contains("log verified: 8 entries"), "{s}");
    assert!(s.contains("log verification FAILED"), "{s}");
    assert!(s.contains("== named, as it should be"), "{s}");
    Ok(())
}

/// The student's side: her certificate and her receipt carry proofs that
/// they are in the log (checked by the client; the checkpoint kept only
/// once a consistency proof from the one she kept verifies: the first run
/// goes from the certificate's tree of 1 to the receipt's of 2). A second
/// server state that rewrote history (same keys, another database) then
/// shows her a larger tree that does not extend hers, and the client
/// refuses it with a security error naming both checkpoints, keeping them.
#[test]
fn a_receipt_proves_its_entry_and_a_forked_log_is_refused() -> TestResult {
    let honest = TestServer::start(&[])?;
    let out_dir = tempfile::tempdir()?;
    let out = out_dir.path().to_string_lossy().to_string();
    let first = honest.client(&["--out-dir", &out, "1155000001"])?;
    assert!(first.status.success(), "{}", text(&first));
    let said = text(&first);
    assert!(
        said.contains("her certificate is entry 0 of the transparency log"),
        "{said}"
    );
    assert!(said.contains("entry 1 of the transparency log"), "{said}");
    assert!(
        said.contains("the log extends the checkpoint she kept"),
        "{said}"
    );
    let kept = std::fs::read_to_string(out_dir.path().join("log-checkpoint"))?;
    assert!(kept.starts_with("CUHK/certboard-log\n2\n"), "{kept}");

    // Another server with the same keys and a fresh database, where
    // someone else has enrolled and submitted: its log of two entries has
    // another root, and the tree of three with her certificate does not
    // extend the one she kept.
    let forked_dir = tempfile::tempdir()?;
    copy_dir(&honest.path().join("keys"), &forked_dir.path().join("keys"))?;
    let forked = TestServer::start_in(forked_dir, &[])?;
    let other = tempfile::tempdir()?;
    let filler = forked.client(&["--out-dir", &other.path().to_string_lossy(), "1155000009"])?;
    assert!(filler.status.success(), "{}", text(&filler));
    let second = forked.client(&["--out-dir", &out, "1155000002"])?;
    assert!(!second.status.success(), "{}", text(&second));
    let said = text(&second);
    assert!(said.contains("SECURITY ERROR"), "{said}");
    assert!(
        said.contains("the tree of 3 entries does not extend the tree of 2 she saw"),
        "{said}"
    );
    // Both checkpoints are printed.
    assert!(
        said.contains("--- seen before ---") && said.contains("CUHK/certboard-log\\n2\\n"),
        "{said}"
    );
    assert!(said.contains("CUHK/certboard-log\\n3\\n"), "{said}");
    let evidence: Vec<_> = std::fs::read_dir(out_dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("log-checkpoint.conflict-")
        })
        .collect();
    assert_eq!(evidence.len(), 1);
    // The one kept is still the honest one.
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("log-checkpoint"))?,
        kept
    );
    // A server whose log is smaller than the one she saw: rewound.
    let rewound_dir = tempfile::tempdir()?;
    copy_dir(
        &honest.path().join("keys"),
        &rewound_dir.path().join("keys"),
    )?;
    let rewound = TestServer::start_in(rewound_dir, &[])?;
    let third = rewound.client(&["--out-dir", &out, "1155000003"])?;
    assert!(!third.status.success(), "{}", text(&third));
    assert!(
        text(&third).contains("the log shrank from 2 to 1 entries"),
        "{}",
        text(&third)
    );
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            let dest = to.join(e.file_name());
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// `client audit`: she reads the log and sees her certificate and her
/// submission accounted for; a certificate issued for her SID that she did
/// not request (another folder, another key) is marked and the audit fails.
#[test]
fn client_audit_lists_her_entries_and_marks_a_certificate_she_did_not_request() -> TestResult {
    let server = TestServer::start(&["--http-listen", "127.0.0.1:0"])?;
    let http = server.http_addr()?;
    let key = server.admin(&["log", "key"])?;
    let vkey = stdout(&key).trim().to_string();
    let mine = tempfile::tempdir()?;
    let out = mine.path().to_string_lossy().to_string();
    let first = server.client(&["--out-dir", &out, "1155000001"])?;
    assert!(first.status.success(), "{}", text(&first));
    let url = format!("http://{http}/log");
    let audit = |args: &[&str]| {
        let mut all = vec![
            "audit",
            "--log-url",
            &url,
            "--log-key",
            &vkey,
            "--out-dir",
            &out,
        ];
        all.extend_from_slice(args);
        server.client(&all)
    };
    let clean = audit(&["1155000001"])?;
    let said = text(&clean);
    assert!(clean.status.success(), "{said}");
    assert!(
        said.contains("checkpoint signed by the log's key"),
        "{said}"
    );
    assert!(
        said.contains("certificates logged for 1155000001: 1"),
        "{said}"
    );
    assert!(said.contains("her current certificate"), "{said}");
    assert!(
        said.contains("submissions logged for 1155000001: 1"),
        "{said}"
    );

    // Someone else gets a certificate for her SID (open enrollment).
    let other = tempfile::tempdir()?;
    let other_out = other.path().to_string_lossy().to_string();
    let impostor = server.client(&["--out-dir", &other_out, "1155000001"])?;
    assert!(impostor.status.success(), "{}", text(&impostor));
    let flagged = audit(&["1155000001"])?;
    let said = text(&flagged);
    assert!(!flagged.status.success(), "{said}");
    assert!(said.contains("NOT the certificate in her folder"), "{said}");

    // A wrong log key is refused outright.
    let wrong = certboard::tlog::NoteSigner::new(
        "CUHK/certboard-log",
        openssl::pkey::PKey::generate_ed25519()?,
    )?;
    let bad = server.client(&[
        "audit",
        "--log-url",
        &url,
        "--log-key",
        &wrong.verifier_key(),
        "--out-dir",
        &out,
        "1155000001",
    ])?;
    assert!(!bad.status.success());
    assert!(text(&bad).contains("FAILED"), "{}", text(&bad));
    Ok(())
}
