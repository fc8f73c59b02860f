//! End-to-end: admission control (the course notes' HMAC challenge) both
//! ways — the right secret is served; a wrong or missing one is refused
//! with a clear reason before anything else is read; a client that never
//! answers is cut off; and the server keeps serving the others meanwhile.

mod common;
mod wire;

use std::io::Write;
use std::path::PathBuf;

use certboard::client::{self, FramedStream, KeyType};
use certboard::crypto;
use certboard::message::{ErrorCode, Message};
use common::*;
use wire::*;

const SECRET: &str = "correct admission secret, 32+ bytes";

fn secret_file(dir: &std::path::Path, name: &str, secret: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    // With a trailing newline, as `echo` writes it: it is not part of the secret.
    std::fs::write(&path, format!("{secret}\n"))?;
    Ok(path)
}

fn start() -> Result<(TestServer, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = secret_file(dir.path(), "admission.secret", SECRET)?;
    let server = TestServer::start_in(
        dir,
        &[
            "--admission-secret-file",
            "admission.secret",
            "--idle-timeout",
            "2",
        ],
    )?;
    Ok((server, path))
}

fn challenge(conn: &mut FramedStream) -> Result<[u8; 32], Box<dyn std::error::Error>> {
    match conn.recv()? {
        Message::AdmissionChallenge { challenge } => Ok(challenge),
        other => Err(format!("expected a challenge, got {other:?}").into()),
    }
}

#[test]
fn right_secret_is_served_on_both_listeners() -> TestResult {
    let (server, secret) = start()?;
    let secret = secret.to_string_lossy().into_owned();
    let out = server.client(&["--admission-secret-file", &secret, "admitted1", "admitted2"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).matches("Blackboard acknowledged").count(), 2);
    // Two students, each admitted by the CA (her enrollment, and the log's
    // consistency proof her receipt asks for, PROTOCOL.md V3.7) and once by
    // Blackboard.
    assert!(server.wait_log("admitted", 5));
    let log = server.log();
    let admitted = |listener: &str| {
        log.lines()
            .filter(|l| l.ends_with(": admitted") && l.contains(&format!("] {listener}:")))
            .count()
    };
    assert_eq!(admitted("blackboard"), 2, "{log}");
    assert!(admitted("ca") >= 2, "{log}");
    // Every connection opens with a fresh 32-byte challenge.
    let mut a = FramedStream::connect(&server.blackboard.to_string(), WAIT)?;
    let mut b = FramedStream::connect(&server.blackboard.to_string(), WAIT)?;
    assert_ne!(challenge(&mut a)?, challenge(&mut b)?);
    Ok(())
}

#[test]
fn wrong_secret_is_refused_and_others_are_still_served() -> TestResult {
    let (server, secret) = start()?;
    let wrong = secret_file(
        server.path(),
        "wrong.secret",
        "not the admission secret at all",
    )?;
    let wrong = wrong.to_string_lossy().into_owned();
    let out = server.client(&["--admission-secret-file", &wrong, "intruder"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("admission refused: wrong response"),
        "{}",
        text(&out)
    );
    assert!(server.wait_log("admission refused: wrong response to the challenge", 5));

    // A wrong answer immediately followed by a valid request: the request is
    // never read, let alone acted on.
    let key = client::make_key(KeyType::Rsa2048)?;
    let csr_der = client::make_csr("smuggled", &key)?;
    let mut s = connect(server.ca)?;
    let mut wire = frame(&Message::AdmissionResponse { mac: [0x5a; 32] });
    wire.extend(frame(&Message::CertRequest {
        csr_der,
        auth: certboard::message::EnrollAuth::Open,
    }));
    s.write_all(&wire)?;
    let got = read_to_close(&mut s, WAIT).ok_or("not closed")?;
    let msgs = messages(&got);
    assert!(
        matches!(msgs.first(), Some(Message::AdmissionChallenge { .. })),
        "{msgs:?}"
    );
    assert!(
        matches!(
            msgs.get(1),
            Some(Message::Error {
                code: ErrorCode::AdmissionRefused,
                ..
            })
        ),
        "{msgs:?}"
    );
    assert_eq!(msgs.len(), 2, "nothing but the refusal after it: {msgs:?}");
    let certs = server.admin(&["certs"])?;
    assert_eq!(stdout(&certs), "", "nothing issued: {}", text(&certs));

    // The right secret still works after the refusals.
    let secret = secret.to_string_lossy().into_owned();
    let out = server.client(&["--admission-secret-file", &secret, "honest"])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[test]
fn missing_secret_is_refused_with_a_clear_reason() -> TestResult {
    let (server, _) = start()?;
    // The client binary without the secret does not get through.
    let out = server.client(&["nosecret"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("requires admission control")
            && stdout(&out).contains("--admission-secret-file"),
        "the client says what is missing: {}",
        text(&out)
    );
    // On the wire: a client that skips the challenge and sends its request
    // is told why it is refused.
    for addr in [server.ca, server.blackboard] {
        let mut s = connect(addr)?;
        let msg = Message::SubmitOpen {
            sid: "nosecret".into(),
            cert_der: vec![0x30, 0x00],
            chain: vec![],
            client_nonce: [0; 32],
        };
        s.write_all(&frame(&msg))?;
        let got = read_to_close(&mut s, WAIT).ok_or("not closed")?;
        let (code, reason) = refusal(&got)?;
        assert_eq!(code, ErrorCode::AdmissionRefused, "{reason}");
        assert!(
            reason.contains("requires the answer to its admission challenge")
                && reason.contains("--admission-secret-file"),
            "{reason}"
        );
    }
    assert!(server.wait_log("admission refused: SubmitOpen instead of the answer", 5));
    let reports = server.admin(&["reports"])?;
    assert_eq!(stdout(&reports), "", "{}", text(&reports));
    Ok(())
}

#[test]
fn a_client_that_never_answers_is_cut_off_while_others_are_served() -> TestResult {
    let (server, secret) = start()?;
    let mut silent = connect(server.blackboard)?;
    // The honest client is served while the silent one holds its slot.
    let secret_path = secret.to_string_lossy().into_owned();
    let out = server.client(&["--admission-secret-file", &secret_path, "patient"])?;
    assert!(out.status.success(), "{}", text(&out));
    let got = read_to_close(&mut silent, WAIT).ok_or("the silent client was never cut off")?;
    let msgs = messages(&got);
    assert!(
        matches!(msgs.first(), Some(Message::AdmissionChallenge { .. })),
        "{msgs:?}"
    );
    let (code, reason) = refusal(&got)?;
    assert_eq!(code, ErrorCode::AdmissionRefused);
    assert!(
        reason.contains("no answer to the challenge") && reason.contains("idle timeout of 2 s"),
        "{reason}"
    );
    assert!(server.wait_log("no answer to the challenge", 5));

    // An answer computed with the right secret over the challenge, by hand,
    // is admitted (the protocol is what PROTOCOL.md says, not just what
    // our client does).
    let mut conn = FramedStream::connect(&server.ca.to_string(), WAIT)?;
    let c = challenge(&mut conn)?;
    let mac = crypto::hmac_sha256(SECRET.as_bytes(), &c)?;
    conn.send(&Message::AdmissionResponse { mac })?;
    let key = client::make_key(KeyType::Rsa2048)?;
    let issued = enroll_csr(&mut conn, client::make_csr("byhand", &key)?)?;
    assert!(!issued.0.is_empty());
    // And an answer to an older challenge is not.
    let mut conn = FramedStream::connect(&server.ca.to_string(), WAIT)?;
    let _ = challenge(&mut conn)?;
    conn.send(&Message::AdmissionResponse { mac })?;
    match conn.recv() {
        Err(client::ClientError::Refused { code, .. }) => {
            assert_eq!(code, ErrorCode::AdmissionRefused)
        }
        other => return Err(format!("replayed answer: {other:?}").into()),
    }
    Ok(())
}

#[test]
fn a_secret_given_to_a_server_without_admission_control_gets_a_hint() -> TestResult {
    let server = TestServer::start(&["--idle-timeout", "1"])?;
    let secret = secret_file(server.path(), "admission.secret", SECRET)?;
    let secret = secret.to_string_lossy().into_owned();
    let out = server.client(&["--admission-secret-file", &secret, "eager"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("no admission challenge came")
            && stdout(&out).contains("drop --admission-secret-file"),
        "{}",
        text(&out)
    );
    Ok(())
}
