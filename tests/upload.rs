//! Protocol version 3 end to end (issue 20): a real file streamed to a
//! running server in authenticated chunks and read back from its store
//! byte for byte; the announcement refused before any data; version 2
//! still served, or refused with an upgrade message under
//! `--min-protocol 3`.

mod common;

use certboard::client::{self, ClientError, FramedStream};
use certboard::message::ErrorCode;
use certboard::store::{SqliteStore, Storage};
use common::{enroll_key, submit_report, TestServer, NET_TIMEOUT};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SID: &str = "1155000042";

struct Student {
    key: openssl::pkey::PKey<openssl::pkey::Private>,
    cert: Vec<u8>,
    serial: String,
}

fn enroll(server: &TestServer) -> Result<Student, Box<dyn std::error::Error>> {
    let key = certboard::testing::rsa_key()?;
    let cert = enroll_key(server.ca, SID, &key)?;
    let serial = openssl::x509::X509::from_der(&cert)?
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string();
    Ok(Student { key, cert, serial })
}

fn random_file(dir: &std::path::Path, name: &str, len: usize) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; len];
    openssl::rand::rand_bytes(&mut data).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(name), &data)?;
    Ok(data)
}

fn send(
    server: &TestServer,
    s: &Student,
    file: &client::FileToSend,
) -> Result<client::Receipt, ClientError> {
    let trust = server
        .trust()
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut conn = FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
    client::upload(
        &mut conn,
        SID,
        &s.serial,
        &s.cert,
        &s.key,
        "lab",
        file,
        &trust,
        &mut |_| {},
    )
}

#[test]
fn a_5_mib_binary_file_is_stored_byte_for_byte_on_sqlite() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    let data = random_file(tmp.path(), "data.bin", 5 << 20)?;
    let file = client::prepare_file(&tmp.path().join("data.bin"))?;
    assert_eq!(file.size, 5 << 20);
    let receipt = send(&server, &s, &file)?;
    let fr = receipt.content.file.clone().ok_or("no file fields")?;
    assert_eq!(receipt.content.version, 3);
    assert_eq!(
        (fr.assignment.as_str(), fr.file_name.as_str()),
        ("lab", "data.bin")
    );
    assert_eq!(fr.size, 5 << 20);
    assert!(!fr.late);

    let mut store = SqliteStore::open(&server.path().join("data"))?;
    let uploads = store.uploads()?;
    assert_eq!(uploads.len(), 1);
    let u = &uploads[0];
    assert_eq!(u.receipt_id, receipt.receipt_id);
    let mut back = Vec::new();
    for seq in 0..u.chunks {
        back.extend(
            store
                .upload_chunk(u.upload_id, seq)?
                .ok_or("chunk missing")?,
        );
    }
    assert!(back == data, "the stored file differs from the one sent");
    assert_eq!(store.staged_chunks()?, 0);
    Ok(())
}

#[test]
fn an_oversized_announcement_is_refused_before_any_chunk() -> TestResult {
    let server = TestServer::start(&["--max-submission", "1000"])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    random_file(tmp.path(), "big.bin", 1001)?;
    let file = client::prepare_file(&tmp.path().join("big.bin"))?;
    match send(&server, &s, &file) {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::Limit);
            assert!(reason.contains("at most 1000 bytes"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut store = SqliteStore::open(&server.path().join("data"))?;
    assert!(store.uploads()?.is_empty());
    assert_eq!(store.staged_chunks()?, 0);
    // At the limit it passes.
    random_file(tmp.path(), "ok.bin", 1000)?;
    let ok = client::prepare_file(&tmp.path().join("ok.bin"))?;
    send(&server, &s, &ok)?;
    assert_eq!(store.uploads()?.len(), 1);
    Ok(())
}

#[test]
fn version_2_still_works_unless_min_protocol_is_3() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let trust = server.trust()?;
    submit_report(server.blackboard, &trust, SID, &s.cert, &s.key)?;

    let strict = TestServer::start(&["--min-protocol", "3"])?;
    let s = enroll(&strict)?;
    let trust = strict.trust()?;
    match submit_report(strict.blackboard, &trust, SID, &s.cert, &s.key) {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
            assert!(reason.contains("upgrade the client"), "{reason}");
        }
        other => panic!("expected the upgrade refusal, got {other:?}"),
    }
    // Version 3 is served there.
    let tmp = tempfile::tempdir()?;
    random_file(tmp.path(), "a.txt", 10)?;
    let file = client::prepare_file(&tmp.path().join("a.txt"))?;
    send(&strict, &s, &file)?;
    Ok(())
}
