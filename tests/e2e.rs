//! End-to-end: the real server and client binaries, the whole lab workflow
//! (steps 0–6), and the refusals an honest server must make.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use certboard::client::{self, ClientError, KeyType};
use certboard::crypto::{self, SessionKeys};
use certboard::message::{CipherId, ErrorCode, Message};
use certboard::testing::{CaParams, Student};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// Enrolls `sid` with a new key; returns her key and cert.
fn enroll(
    server: &TestServer,
    sid: &str,
) -> Result<(PKey<Private>, Vec<u8>), Box<dyn std::error::Error>> {
    let key = client::make_key(KeyType::Rsa2048)?;
    let cert = enroll_key(server.ca, sid, &key)?;
    Ok((key, cert))
}

fn refused_code(r: Result<client::Receipt, ClientError>) -> Option<(ErrorCode, String)> {
    match r {
        Err(ClientError::Refused { code, reason }) => Some((code, reason)),
        _ => None,
    }
}

fn submit(
    server: &TestServer,
    sid: &str,
    cert: &[u8],
    key: &PKey<Private>,
) -> Result<client::Receipt, ClientError> {
    let trust = server
        .trust()
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    submit_report(server.blackboard, &trust, sid, cert, key)
}

/// Submits with a report whose ciphertext or MAC is altered by `tamper`.
fn submit_tampered(
    server: &TestServer,
    sid: &str,
    cert: &[u8],
    key: &PKey<Private>,
    tamper: impl Fn(&mut Vec<u8>, &mut [u8; 32]),
) -> Result<Message, Box<dyn std::error::Error>> {
    let hello = Message::SubmitOpen {
        sid: sid.into(),
        cert_der: cert.to_vec(),
        chain: vec![],
        client_nonce: crypto::random::<32>()?,
    };
    let Offered {
        mut conn,
        th,
        session,
    } = offered(server.blackboard, &hello, &server.trust()?, key)?;
    let keys = SessionKeys::derive_v2(&session, &th)?;
    let iv = crypto::random::<16>()?;
    let cipher = CipherId::Aes256Ctr;
    let mut ct = keys.apply_cipher(cipher, &iv, crypto::lab_report(sid).as_bytes())?;
    let mut mac = keys.report_mac_v2(&th, cipher, &iv, &ct)?;
    tamper(&mut ct, &mut mac);
    conn.send(&Message::Report {
        cipher,
        iv,
        ciphertext: ct,
        mac,
    })?;
    let frame = conn.recv_frame()?;
    Ok(Message::decode(&frame)?)
}

/// The one receipt saved for `sid`.
fn saved_receipt(
    server: &TestServer,
    sid: &str,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let dir = server.path().join("students").join(sid).join("receipts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().ok_or_else(|| "no receipt".into())
}

/// `openssl cms -verify` with `-purpose any`: only that the CMS signature and
/// chain hold (README's command adds the Blackboard-only checks, tested in
/// tests/receipts_openssl.rs); returns (success, content).
fn openssl_cms_verify(
    file: &std::path::Path,
    root: &std::path::Path,
) -> Result<(bool, Vec<u8>), Box<dyn std::error::Error>> {
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-in"])
        .arg(file)
        .arg("-CAfile")
        .arg(root)
        .args(["-purpose", "any"])
        .output()?;
    Ok((out.status.success(), out.stdout))
}

#[test]
fn the_signed_receipt_verifies_with_stock_openssl_and_a_flipped_bit_does_not() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&["receipted"])?;
    assert!(out.status.success(), "{}", text(&out));
    let file = saved_receipt(&server, "receipted")?;
    let (ok, content) = openssl_cms_verify(&file, &server.root_pem())?;
    assert!(ok, "openssl cms -verify refused {}", file.display());
    let json: serde_json::Value = serde_json::from_slice(&content)?;
    let report = certboard::crypto::lab_report("receipted");
    assert_eq!(json["sid"], "receipted");
    assert_eq!(json["version"], 2);
    assert_eq!(
        json["report_sha256"],
        certboard::crypto::sha256_hex(report.as_bytes())
    );
    let receipt_id = file
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("name")?
        .to_string();
    assert_eq!(json["receipt"], receipt_id.as_str());
    // The instructor's record has the same hash.
    let reports = server.admin(&["reports"])?;
    assert!(stdout(&reports).contains(&receipt_id), "{}", text(&reports));

    // verify-receipt agrees, with the report text and without.
    let report_file = server.path().join("report.txt");
    std::fs::write(&report_file, &report)?;
    let check = |receipt: &std::path::Path, report: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_client"))
            .current_dir(server.path())
            .arg("verify-receipt")
            .arg(receipt)
            .arg("--report")
            .arg(report)
            .output()
    };
    let v = check(&file, &report_file)?;
    assert!(v.status.success(), "{}", text(&v));
    assert!(stdout(&v).contains("valid receipt"), "{}", text(&v));
    // Another text: refused.
    let other = server.path().join("other.txt");
    std::fs::write(&other, "not what she sent\n")?;
    let v = check(&file, &other)?;
    assert!(!v.status.success(), "{}", text(&v));
    assert!(stdout(&v).contains("INVALID"), "{}", text(&v));

    // A flipped bit anywhere in the signed content: both refuse.
    let der = std::fs::read(&file)?;
    let at = der
        .windows(b"receipted".len())
        .position(|w| w == b"receipted")
        .ok_or("sid not in the content")?;
    let mut flipped = der.clone();
    flipped[at] ^= 0x01;
    let bad = server.path().join("flipped.p7m");
    std::fs::write(&bad, &flipped)?;
    let (ok, _) = openssl_cms_verify(&bad, &server.root_pem())?;
    assert!(!ok, "openssl cms -verify accepted a flipped bit");
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .current_dir(server.path())
        .arg("verify-receipt")
        .arg(&bad)
        .arg("--ca-cert")
        .arg(server.root_pem())
        .output()?;
    assert!(!v.status.success(), "{}", text(&v));
    assert!(stdout(&v).contains("INVALID"), "{}", text(&v));
    Ok(())
}

#[test]
fn the_root_is_pinned_on_first_use_and_a_changed_root_is_refused() -> TestResult {
    let first = TestServer::start(&[])?;
    let out = first.client(&["pinned"])?;
    assert!(out.status.success(), "{}", text(&out));
    let fp_file = first.path().join("students").join("root-fingerprint");
    let pinned = std::fs::read_to_string(&fp_file)?;
    let root_der = X509::from_pem(&std::fs::read(first.root_pem())?)?.to_der()?;
    assert_eq!(pinned.trim(), certboard::crypto::fingerprint(&root_der));
    assert!(
        stdout(&out).contains(pinned.trim()),
        "printed on first contact"
    );

    // Another server (another root) in front of the same students dir.
    let second = TestServer::start(&[])?;
    std::fs::create_dir_all(second.path().join("students"))?;
    std::fs::copy(
        &fp_file,
        second.path().join("students").join("root-fingerprint"),
    )?;
    let out = second.client(&["newcomer"])?;
    assert!(!out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    assert!(s.contains("the CA presented a different root"), "{s}");
    assert!(s.contains("fingerprint your instructor published"), "{s}");
    assert!(
        !second
            .path()
            .join("students")
            .join("newcomer")
            .join("cert.pem")
            .exists(),
        "nothing from the new root is saved"
    );
    // --ca-fingerprint pins it from the start: the right one passes, the
    // old one is refused.
    let second_root = X509::from_pem(&std::fs::read(second.root_pem())?)?.to_der()?;
    let right = certboard::crypto::fingerprint(&second_root);
    let out = second.client(&["--out-dir", "fresh", "--ca-fingerprint", &right, "fp-right"])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = second.client(&[
        "--out-dir",
        "fresh2",
        "--ca-fingerprint",
        pinned.trim(),
        "fp-wrong",
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("different root"), "{}", text(&out));
    Ok(())
}

#[test]
fn three_students_enroll_submit_and_every_certificate_verifies() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&[
        "--ca-cert",
        server.root_pem().to_str().ok_or("path")?,
        "1155000001",
        "alice",
        "bob-2",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    for sid in ["1155000001", "alice", "bob-2"] {
        assert!(s.contains(&format!("SID{sid} sign finished")), "{s}");
        let dir = server.path().join("students").join(sid);
        let mode = std::fs::metadata(dir.join("key.pem"))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem is private");
        // The saved certificate verifies with the openssl command against the root.
        let v = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(server.root_pem())
            .arg(dir.join("cert.pem"))
            .output()?;
        assert!(v.status.success(), "{}", text(&v));
        // It certifies her own key.
        let cert = X509::from_pem(&std::fs::read(dir.join("cert.pem"))?)?;
        let key = PKey::private_key_from_pem(&std::fs::read(dir.join("key.pem"))?)?;
        assert!(cert.public_key()?.public_eq(&key));
    }
    for step in [
        "step 1:",
        "step 2:",
        "step 3:",
        "step 4:",
        "step 5:",
        "step 6:",
        "Blackboard acknowledged: receipt",
    ] {
        assert_eq!(s.matches(step).count(), 3, "{step} once per student:\n{s}");
    }
    // Blackboard printed each report, ten lines as they are, with SID and serial.
    let mut reports = String::new();
    while let Ok(line) = server.stdout.recv_timeout(Duration::from_secs(5)) {
        reports.push_str(&line);
        reports.push('\n');
        if reports.matches("This is submission from SIDbob-2.").count() == 10 {
            break;
        }
    }
    for sid in ["1155000001", "alice", "bob-2"] {
        assert!(
            reports.contains(&format!("report SID{sid} serial ")),
            "{reports}"
        );
        assert_eq!(
            reports
                .matches(&format!("This is submission from SID{sid}.\n"))
                .count(),
            10,
            "{reports}"
        );
    }
    let status = server.stop()?;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    Ok(())
}

/// A server told to stop tells a client in the middle of an exchange why
/// it is cut off (code 6, "shutting down"), rather than only closing.
#[test]
fn a_client_mid_exchange_is_told_the_server_is_shutting_down() -> TestResult {
    let server = TestServer::start(&[])?;
    let mut conn = client::FramedStream::connect(&server.ca.to_string(), NET_TIMEOUT)?;
    // Challenged: the server now owes her an answer to a request.
    let _session = client::CaSession::open(&mut conn)?;
    let status = server.stop()?;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    match conn.recv() {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::Limit, "{reason}");
            assert!(reason.contains("shutting down"), "{reason}");
        }
        other => panic!("expected an Error frame, got {other:?}"),
    }
    Ok(())
}

#[test]
fn second_run_reuses_credentials_and_renew_enrolls_again() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&["carol"])?;
    assert!(out.status.success(), "{}", text(&out));
    let cert1 = std::fs::read(server.path().join("students/carol/cert.pem"))?;

    let out = server.client(&["--cipher", "rc4", "carol"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("reusing"), "{}", text(&out));
    assert!(!stdout(&out).contains("sign finished"), "{}", text(&out));
    assert_eq!(
        std::fs::read(server.path().join("students/carol/cert.pem"))?,
        cert1
    );

    let out = server.client(&["--renew", "carol"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("SIDcarol sign finished"),
        "{}",
        text(&out)
    );
    assert_ne!(
        std::fs::read(server.path().join("students/carol/cert.pem"))?,
        cert1
    );
    Ok(())
}

#[test]
fn client_refuses_a_ca_whose_root_differs_from_the_pinned_one() -> TestResult {
    let server = TestServer::start(&[])?;
    let other = tempfile::tempdir()?;
    CaParams::default().create(other.path())?;
    let out = server.client(&[
        "--ca-cert",
        other.path().join("ca-cert.pem").to_str().ok_or("path")?,
        "dave",
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pinned"), "{}", text(&out));
    Ok(())
}

#[test]
fn certificate_from_another_ca_with_the_same_subject_is_refused() -> TestResult {
    let server = TestServer::start(&[])?;
    let other = tempfile::tempdir()?;
    let evil = CaParams::default().create(other.path())?;
    let Student {
        key,
        issued: forged,
        ..
    } = Student::enroll(&evil, "erin")?;
    let (code, reason) =
        refused_code(submit(&server, "erin", &forged.der, &key)).ok_or("forged cert accepted")?;
    assert_eq!(code, ErrorCode::BadCertificate);
    assert!(
        reason.contains("does not chain to the CUHK root"),
        "{reason}"
    );
    assert!(
        server.wait_log("certificate refused for SID \"erin\"", 5),
        "{}",
        server.log()
    );

    // The next honest client is still served.
    let out = server.client(&["erin"])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[test]
fn sid_that_does_not_match_the_certificate_is_refused() -> TestResult {
    let server = TestServer::start(&[])?;
    let (key, cert) = enroll(&server, "frank")?;
    let (code, reason) = refused_code(submit(&server, "grace", &cert, &key)).ok_or("accepted")?;
    assert_eq!(code, ErrorCode::BadCertificate);
    assert!(reason.contains("not for the claimed SID"), "{reason}");
    assert!(submit(&server, "frank", &cert, &key).is_ok());
    Ok(())
}

#[test]
fn flipped_bits_in_ciphertext_or_mac_are_refused_and_nothing_is_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    let (key, cert) = enroll(&server, "heidi")?;
    let flipped_ct = submit_tampered(&server, "heidi", &cert, &key, |ct, _| ct[5] ^= 0x04)?;
    let flipped_mac = submit_tampered(&server, "heidi", &cert, &key, |_, mac| mac[31] ^= 0x80)?;
    for reply in [flipped_ct, flipped_mac] {
        match reply {
            Message::Error { code, reason } => {
                assert_eq!(code, ErrorCode::BadMac);
                assert!(reason.contains("MAC"), "{reason}");
            }
            other => return Err(format!("tampered report accepted: {other:?}").into()),
        }
    }
    let reports = server.admin(&["reports"])?;
    assert!(reports.status.success(), "{}", text(&reports));
    assert!(!stdout(&reports).contains("heidi"), "{}", text(&reports));
    // An untampered one goes through and is recorded.
    let receipt = submit_tampered(&server, "heidi", &cert, &key, |_, _| {})?;
    assert!(
        matches!(receipt, Message::SignedReceipt { .. }),
        "{receipt:?}"
    );
    assert!(stdout(&server.admin(&["reports"])?).contains("sid=heidi"));
    Ok(())
}

#[test]
fn wrong_or_missing_passphrase_stops_the_server_and_overwrites_nothing() -> TestResult {
    let server = TestServer::start(&[])?;
    let dir = server.crash()?;
    let key_before = std::fs::read(dir.path().join("keys/ca-key.pem"))?;
    let run = |pass: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_server"));
        cmd.current_dir(dir.path())
            .args([
                "--ca-listen",
                "127.0.0.1:0",
                "--blackboard-listen",
                "127.0.0.1:0",
            ])
            .env_remove("CERTBOARD_CA_PASSPHRASE")
            .stdin(std::process::Stdio::null());
        if let Some(p) = pass {
            cmd.env("CERTBOARD_CA_PASSPHRASE", p);
        }
        cmd.output()
    };
    let wrong = run(Some("not the passphrase"))?;
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("wrong passphrase"),
        "{}",
        text(&wrong)
    );
    let none = run(None)?;
    assert!(!none.status.success());
    assert!(text(&none).contains("no CA passphrase"), "{}", text(&none));
    assert_eq!(
        std::fs::read(dir.path().join("keys/ca-key.pem"))?,
        key_before
    );
    Ok(())
}

#[test]
fn root_key_is_encrypted_private_and_reloaded_across_restarts() -> TestResult {
    let server = TestServer::start(&[])?;
    let key_path = server.path().join("keys/ca-key.pem");
    assert_eq!(
        std::fs::metadata(&key_path)?.permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&key_path)?.contains("ENCRYPTED PRIVATE KEY"));
    let root = std::fs::read(server.root_pem())?;
    let out = server.client(&["ivan"])?;
    assert!(out.status.success(), "{}", text(&out));
    let dir = server.crash()?;
    let server = TestServer::start_in(dir, &[])?;
    assert_eq!(
        std::fs::read(server.root_pem())?,
        root,
        "same root after restart"
    );
    // Her saved certificate is still accepted by the restarted Blackboard.
    let out = server.client(&["ivan"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("reusing"), "{}", text(&out));
    Ok(())
}

#[test]
fn demo_script_runs_the_whole_lab() -> TestResult {
    let out = common::run_example("demo.sh")?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    assert_eq!(
        s.matches(": OK").count(),
        3,
        "three certificates verified by openssl:\n{s}"
    );
    assert!(s.contains("all 3 student(s) submitted"), "{s}");
    assert!(s.contains("TLS Web Client Authentication"), "{s}");
    Ok(())
}

#[test]
fn ca_and_blackboard_can_run_as_separate_processes_on_the_same_files() -> TestResult {
    // Start a CA-only server, then a Blackboard-only server on the same
    // keys and data dirs (it reads the root certificate, never the key).
    let ca_only = TestServer::start(&["--role", "ca"])?;
    let dir = ca_only.path().to_path_buf();
    // Without a Blackboard certificate of its own, and no root key to make
    // one, it refuses to start and says how to get one.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(&dir)
        .args(["--role", "blackboard", "--blackboard-listen", "127.0.0.1:0"])
        .env_remove("CERTBOARD_CA_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("server blackboard-cert --out DIR"),
        "{}",
        text(&refused)
    );
    // The admin command, where the root key is, makes one.
    let made = ca_only.admin(&["blackboard-cert", "--out", "keys"])?;
    assert!(made.status.success(), "{}", text(&made));
    let mut bb = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(&dir)
        .args(["--role", "blackboard", "--blackboard-listen", "127.0.0.1:0"])
        .env_remove("CERTBOARD_CA_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> TestResult {
        use std::io::BufRead;
        let out = bb.stdout.take().ok_or("stdout")?;
        let mut out = std::io::BufReader::new(out);
        let mut line = String::new();
        // The root's fingerprint comes first.
        for _ in 0..2 {
            line.clear();
            out.read_line(&mut line)?;
            if line.starts_with("listening") {
                break;
            }
        }
        let addr: std::net::SocketAddr = line
            .strip_prefix("listening blackboard ")
            .ok_or(format!("unexpected line {line:?}"))?
            .trim()
            .parse()?;
        let (key, cert) = enroll(&ca_only, "split")?;
        let receipt = submit_report(addr, &trust_in(&dir.join("keys"))?, "split", &cert, &key)?;
        assert!(!receipt.serial_hex.is_empty());
        Ok(())
    })();
    let _ = bb.kill();
    let _ = bb.wait();
    result
}

#[test]
fn a_second_server_cannot_share_the_ports_of_a_multi_reactor_one() -> TestResult {
    let first = TestServer::start(&["--reactors", "2"])?;
    // Both reactors serve.
    for sid in ["r-1", "r-2", "r-3"] {
        let out = first.client(&[sid])?;
        assert!(out.status.success(), "{}", text(&out));
    }
    let other = tempfile::tempdir()?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(other.path())
        .args(["--reactors", "2", "--ca-listen", &first.ca.to_string()])
        .args(["--blackboard-listen", &first.blackboard.to_string()])
        .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // It must fail at once; one that binds and serves is killed and fails
    // the test.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait()?.is_none() {
        child.kill()?;
    }
    let second = child.wait_with_output()?;
    assert!(!second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("cannot listen on"),
        "{}",
        text(&second)
    );
    Ok(())
}
