//! End-to-end: the durable store, the admin commands, revocation seen live
//! by Blackboard, the CRL checked by the openssl command, and crash safety.

mod common;
use common::*;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certboard::client::{self, ClientError, FramedStream, KeyType};
use certboard::message::ErrorCode;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

const TIMEOUT: Duration = Duration::from_secs(20);

fn enroll(server: &TestServer, sid: &str, key: &PKey<Private>) -> Result<Vec<u8>, ClientError> {
    enroll_key(server.ca, sid, key)
}

fn serial_of(der: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    Ok(X509::from_der(der)?
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string())
}

fn write_pem(
    dir: &std::path::Path,
    name: &str,
    der: &[u8],
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join(name);
    std::fs::write(&path, X509::from_der(der)?.to_pem()?)?;
    Ok(path)
}

#[test]
fn revocation_takes_effect_at_once_and_the_crl_verifies_with_openssl() -> TestResult {
    let server = TestServer::start(&[])?;
    let bb = server.blackboard;
    let trust = server.trust()?;
    let key = client::make_key(KeyType::Rsa2048)?;
    let good = enroll(&server, "gina", &key)?;
    let bad = enroll(&server, "mallory", &key)?;
    let bad2 = enroll(&server, "mallory", &key)?;
    assert!(submit_report(bb, &trust, "mallory", &bad, &key).is_ok());

    // Revoke one by serial (lower case, as an operator might paste it).
    let serial = serial_of(&bad)?;
    let out = server.admin(&[
        "revoke",
        "--serial",
        &serial.to_lowercase(),
        "--reason",
        "key-compromise",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("revoked 1 certificate"),
        "{}",
        text(&out)
    );
    match submit_report(bb, &trust, "mallory", &bad, &key) {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::BadCertificate);
            assert!(
                reason.contains("revoked") && reason.contains("keyCompromise"),
                "{reason}"
            );
        }
        other => return Err(format!("revoked certificate accepted: {other:?}").into()),
    }
    // The other certificate of the same SID still works until the SID is revoked.
    assert!(submit_report(bb, &trust, "mallory", &bad2, &key).is_ok());
    let out = server.admin(&["revoke", "--sid", "mallory"])?;
    assert!(
        stdout(&out).contains("revoked 1 certificate"),
        "{}",
        text(&out)
    );
    assert!(matches!(
        submit_report(bb, &trust, "mallory", &bad2, &key),
        Err(ClientError::Refused { .. })
    ));
    assert!(
        submit_report(bb, &trust, "gina", &good, &key).is_ok(),
        "others unaffected"
    );

    // Unknown targets are an error, not a silent no-op.
    let out = server.admin(&["revoke", "--serial", "ABCDEF"])?;
    assert!(
        !out.status.success() && text(&out).contains("no certificate with serial"),
        "{}",
        text(&out)
    );
    let out = server.admin(&["revoke", "--serial", "xyz"])?;
    assert!(
        !out.status.success() && text(&out).contains("not a hexadecimal"),
        "{}",
        text(&out)
    );

    // The data dir holds every report: private to the server's user.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &str| std::fs::metadata(server.path().join(p)).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode("data")?, 0o700);
    assert_eq!(mode("data/certboard.sqlite3")?, 0o600);

    // Listings carry the SID and the status on each line.
    let certs = stdout(&server.admin(&["certs"])?);
    assert_eq!(certs.lines().count(), 3, "{certs}");
    assert!(
        certs
            .lines()
            .any(|l| l.contains("sid=gina") && l.contains("status=good")),
        "{certs}"
    );
    assert_eq!(
        certs
            .lines()
            .filter(|l| l.contains("sid=mallory") && l.contains("revoked"))
            .count(),
        2,
        "{certs}"
    );
    let reports = stdout(&server.admin(&["reports"])?);
    assert_eq!(reports.lines().count(), 3, "{reports}");
    assert!(
        reports
            .lines()
            .all(|l| l.contains("sid=") && l.contains("lines=10")),
        "{reports}"
    );

    // The CRL, PEM on stdout and DER to a file.
    let crl = server.admin(&["crl"])?;
    assert!(crl.status.success(), "{}", text(&crl));
    let dir = server.path();
    std::fs::write(dir.join("crl.pem"), &crl.stdout)?;
    let der_out = server.admin(&["crl", "--der", "--out", "crl.der"])?;
    assert!(der_out.status.success(), "{}", text(&der_out));
    let openssl = |args: &[&str]| Command::new("openssl").current_dir(dir).args(args).output();
    let root = server.root_pem();
    let root = root.to_str().ok_or("path")?;
    let v = openssl(&[
        "crl", "-in", "crl.pem", "-noout", "-verify", "-CAfile", root,
    ])?;
    assert!(
        v.status.success() && text(&v).contains("verify OK"),
        "{}",
        text(&v)
    );
    let v = openssl(&[
        "crl", "-inform", "DER", "-in", "crl.der", "-noout", "-verify", "-CAfile", root,
    ])?;
    assert!(v.status.success(), "{}", text(&v));
    let listed = openssl(&["crl", "-in", "crl.pem", "-noout", "-text"])?;
    assert!(stdout(&listed).contains(&serial), "{}", text(&listed));
    assert!(
        stdout(&listed).contains("X509v3 CRL Number"),
        "{}",
        text(&listed)
    );

    write_pem(dir, "good.pem", &good)?;
    write_pem(dir, "bad.pem", &bad)?;
    let ok = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        "crl.pem",
        "-CAfile",
        root,
        "good.pem",
    ])?;
    assert!(ok.status.success(), "{}", text(&ok));
    let refused = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        "crl.pem",
        "-CAfile",
        root,
        "bad.pem",
    ])?;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("revoked"), "{}", text(&refused));

    // A backup taken while the server runs holds the same records.
    let b = server.admin(&["backup", "--out", "backup.sqlite3"])?;
    assert!(b.status.success(), "{}", text(&b));
    let copy = rusqlite::Connection::open(dir.join("backup.sqlite3"))?;
    let n: i64 = copy.query_row(
        "SELECT count(*) FROM certs WHERE revoked_at IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(n, 2);

    let parsed = openssl::x509::X509Crl::from_pem(&crl.stdout)?;
    assert_eq!(
        parsed.get_revoked().map(|r| r.len()).unwrap_or(0),
        2,
        "both revoked serials listed"
    );
    Ok(())
}

#[test]
fn admin_commands_never_create_a_root() -> TestResult {
    let dir = tempfile::tempdir()?;
    certboard::store::SqliteStore::open(&dir.path().join("data"))?;
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(dir.path())
        .args(["crl", "--keys-dir", "nokeys", "--data-dir", "data"])
        .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no CA root in nokeys"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("nokeys").exists(), "nothing created");
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(dir.path())
        .args(["certs", "--data-dir", "nodata"])
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no database here"), "{}", text(&out));
    assert!(!dir.path().join("nodata").exists(), "nothing created");
    Ok(())
}

#[test]
fn a_database_from_the_future_is_refused_untouched() -> TestResult {
    let server = TestServer::start(&[])?;
    let dir = server.crash()?;
    let db = dir.path().join("data/certboard.sqlite3");
    rusqlite::Connection::open(&db)?.execute_batch("PRAGMA user_version = 99;")?;
    let before = std::fs::read(&db)?;
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(dir.path())
        .args([
            "--ca-listen",
            "127.0.0.1:0",
            "--blackboard-listen",
            "127.0.0.1:0",
        ])
        .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("schema version 99"), "{}", text(&out));
    assert_eq!(std::fs::read(&db)?, before);
    Ok(())
}

/// What the clients saw acknowledged before the crash.
#[derive(Default)]
struct Acked {
    serials: Vec<String>,
    receipts: Vec<u64>,
}

fn random_below(n: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let mut b = [0u8; 8];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(u64::from_le_bytes(b) % n)
}

#[test]
fn nothing_acknowledged_is_lost_when_the_server_is_killed() -> TestResult {
    const ROUNDS: usize = 3;
    const CLIENTS: usize = 4;
    // A few keys made up front: RSA key generation is slow and not what is tested.
    let keys: Vec<PKey<Private>> = (0..CLIENTS)
        .map(|_| client::make_key(KeyType::Rsa2048))
        .collect::<Result<_, _>>()?;
    let keys = Arc::new(keys);
    let mut dir = tempfile::tempdir()?;
    let mut all_serials = Vec::new();
    let mut all_receipts = Vec::new();
    for round in 0..ROUNDS {
        let server = TestServer::start_in(dir, &[])?;
        let acked = Arc::new(Mutex::new(Acked::default()));
        let ca = server.ca;
        let bb = server.blackboard;
        let trust = server.trust()?;
        let mut threads = Vec::new();
        for t in 0..CLIENTS {
            let (acked, keys, trust) = (acked.clone(), keys.clone(), trust.clone());
            threads.push(std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for i in 0..10_000 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let sid = format!("r{round}-t{t}-{i}");
                    let key = &keys[t];
                    let cert = match FramedStream::connect(&ca.to_string(), TIMEOUT)
                        .and_then(|mut c| Ok(enroll_csr(&mut c, client::make_csr(&sid, key)?)?.0))
                    {
                        Ok(c) => c,
                        Err(_) => break, // the server is gone
                    };
                    if let (Ok(serial), Ok(mut a)) = (serial_of(&cert), acked.lock()) {
                        a.serials.push(serial);
                    }
                    match submit_report(bb, &trust, &sid, &cert, key) {
                        Ok(r) => {
                            if let Ok(mut a) = acked.lock() {
                                a.receipts.push(r.receipt_id);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }));
        }
        // Kill at a random moment while the clients are busy.
        std::thread::sleep(Duration::from_millis(150 + random_below(900)?));
        dir = server.crash()?;
        for t in threads {
            t.join().map_err(|_| "client thread panicked")?;
        }
        let a = acked.lock().map_err(|_| "lock")?;
        all_serials.extend(a.serials.iter().cloned());
        all_receipts.extend(a.receipts.iter().copied());
    }
    assert!(
        !all_serials.is_empty() && !all_receipts.is_empty(),
        "the clients did some work"
    );

    // Restart on the same data dir: everything acknowledged is there.
    let server = TestServer::start_in(dir, &[])?;
    let certs = stdout(&server.admin(&["certs"])?);
    let stored: Vec<&str> = certs
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|f| f.strip_prefix("serial="))
        .collect();
    let unique: HashSet<&str> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "serials are never reused");
    for s in &all_serials {
        assert!(
            unique.contains(s.as_str()),
            "acknowledged certificate {s} lost"
        );
    }
    let reports = stdout(&server.admin(&["reports"])?);
    let receipts: HashSet<u64> = reports
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|f| f.strip_prefix("receipt="))
        .filter_map(|n| n.parse().ok())
        .collect();
    for r in &all_receipts {
        assert!(receipts.contains(r), "acknowledged report {r} lost");
    }
    // And it serves again.
    let out = server.client(&["after-crash"])?;
    assert!(out.status.success(), "{}", text(&out));
    eprintln!(
        "crash test: {ROUNDS} kills, {} acknowledged certificates and {} reports, all present",
        all_serials.len(),
        all_receipts.len()
    );
    Ok(())
}
