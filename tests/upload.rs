//! Protocol version 3 end to end (issue 20): a real file streamed to a
//! running server in authenticated chunks and read back from its store
//! byte for byte (SQLite and PostgreSQL); the announcement refused before
//! any data (size, hostile names); tampered, reordered and dropped chunks
//! refused; a cut connection and a full store leave nothing recorded and
//! nothing staged; a slow but moving upload outlives the exchange
//! deadline; version 2 still served, or refused with an upgrade message
//! under `--min-protocol 3`; `client submit` and `client enroll` as a
//! binary. Every wait is bounded.

mod common;
mod pg;

use std::time::{Duration, Instant};

use certboard::client::{self, ClientError, FramedStream};
use certboard::crypto::{self, FileCipher, SessionKeys, CHUNK_MAX};
use certboard::message::{CipherId, ErrorCode, Intent, Message};
use certboard::store::{PostgresStore, SqliteStore, Storage};
use common::{
    enroll_key, hello_v3, offered, stdout, submit_report, text, Launch, Offered, TestServer,
    NET_TIMEOUT,
};

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
    send_to(server, s, file, "lab")
}

fn send_to(
    server: &TestServer,
    s: &Student,
    file: &client::FileToSend,
    assignment: &str,
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
        assignment,
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
        (receipt.content.assignment.as_deref(), fr.file_name.as_str()),
        (Some("lab"), "data.bin")
    );
    assert_eq!(fr.size, 5 << 20);
    assert_eq!(
        (receipt.content.late, receipt.content.late_seconds),
        (Some(false), None)
    );

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

/// This client's lab run outlives the operator's `--min-protocol 3`: its
/// report, refused at the version 2 hello, goes as a file by version 3 to
/// the same assignment, byte for byte, once (a second run finds it
/// accepted and sends nothing).
#[test]
fn the_lab_run_hands_its_report_in_by_version_3_under_min_protocol_3() -> TestResult {
    let strict = TestServer::start(&["--min-protocol", "3"])?;
    let out = strict.client(&[SID])?;
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("protocol version 3 only"), "{said}");
    assert!(said.contains(client::LAB_REPORT_FILE), "{said}");
    let mut store = sqlite(&strict)?;
    let uploads = store.uploads()?;
    assert_eq!(uploads.len(), 1, "{said}");
    assert_eq!(uploads[0].sid, SID);
    assert_eq!(uploads[0].assignment, "lab");
    assert_eq!(uploads[0].file_name, client::LAB_REPORT_FILE);
    let back = read_back(&mut store, uploads[0].receipt_id)?;
    assert!(back == crypto::lab_report(SID).into_bytes());
    assert!(store.reports()?.is_empty(), "nothing by version 2");
    // The instructor's lab view counts it as her lab report.
    let status = strict.admin(&["status", "--format", "json"])?;
    assert!(status.status.success(), "{}", text(&status));
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    let hers = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["sid"] == SID))
        .ok_or("her status row")?;
    assert_eq!(hers["reports"], 1, "{rows}");
    // `reports` lists text reports only, and says where the file is.
    let listed = strict.admin(&["reports", "--sid", SID])?;
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("1 file(s) handed in by version 3"),
        "{}",
        text(&listed)
    );
    let receipts = strict.path().join("students").join(SID).join("receipts");
    assert_eq!(std::fs::read_dir(&receipts)?.count(), 1, "{said}");

    let again = strict.client(&[SID])?;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already accepted"),
        "{}",
        text(&again)
    );
    assert_eq!(store.uploads()?.len(), 1, "not handed in twice");
    Ok(())
}

/// A version 3 session driven by hand, so that chunks can be altered,
/// reordered, dropped or paced.
struct Raw {
    conn: FramedStream,
    keys: SessionKeys,
    th: [u8; 32],
}

/// An announced upload: the stream its chunks are encrypted on.
struct Announced {
    announce: Vec<u8>,
    stream: FileCipher,
    sha256: [u8; 32],
}

fn offer(server: &TestServer, s: &Student) -> Result<Raw, Box<dyn std::error::Error>> {
    let hello = hello_v3(SID, &s.cert, Intent::Upload)?;
    let Offered { conn, th, session } =
        offered(server.blackboard, &hello, &server.trust()?, &s.key)?;
    let keys = SessionKeys::derive_v3(&session, &th)?;
    Ok(Raw { conn, keys, th })
}

impl Raw {
    /// Announces `data` as `name`; what Blackboard answers.
    fn announce(
        &mut self,
        name: &str,
        data: &[u8],
    ) -> Result<(Result<Message, ClientError>, Announced), Box<dyn std::error::Error>> {
        let sha256 = openssl::sha::sha256(data);
        let iv = crypto::random::<16>()?;
        let size = data.len() as u64;
        let mac = self.keys.announce_mac_v3(
            &self.th,
            "lab",
            name,
            size,
            &sha256,
            CipherId::Aes256Ctr,
            &iv,
        )?;
        let announce = Message::FileAnnounce {
            assignment: "lab".into(),
            file_name: name.into(),
            size,
            sha256,
            cipher: CipherId::Aes256Ctr,
            iv,
            mac,
        }
        .encode();
        self.conn.send_frame(&announce)?;
        let answer = self.conn.recv();
        let stream = self.keys.file_cipher(&iv)?;
        Ok((
            answer,
            Announced {
                announce,
                stream,
                sha256,
            },
        ))
    }

    /// Chunk `seq` of `data`'s chunks, encrypted on `a`'s stream (so in
    /// the order they are made) and MAC'd.
    fn chunk(
        &self,
        a: &mut Announced,
        data: &[u8],
        seq: u64,
    ) -> Result<Message, Box<dyn std::error::Error>> {
        let from = seq as usize * CHUNK_MAX;
        let part = &data[from..data.len().min(from + CHUNK_MAX)];
        let ciphertext = a.stream.apply(part)?;
        let mac = self.keys.chunk_mac_v3(&self.th, seq, &ciphertext)?;
        Ok(Message::Chunk {
            seq,
            ciphertext,
            mac,
        })
    }

    fn done(&self, a: &Announced, chunks: u64) -> Result<Message, Box<dyn std::error::Error>> {
        let mac = self
            .keys
            .done_mac_v3(&self.th, &a.announce, chunks, &a.sha256)?;
        Ok(Message::UploadDone { chunks, mac })
    }
}

/// The refusal a session ends with: the next message must be an `Error`.
fn refusal(raw: &mut Raw) -> Result<(ErrorCode, String), Box<dyn std::error::Error>> {
    match raw.conn.recv() {
        Err(ClientError::Refused { code, reason }) => Ok((code, reason)),
        other => Err(format!("expected a refusal, got {other:?}").into()),
    }
}

/// Polls (bounded) until nothing is staged; then nothing must be recorded.
fn nothing_left(store: &mut dyn Storage) -> Result<(), Box<dyn std::error::Error>> {
    let until = Instant::now() + Duration::from_secs(20);
    while store.staged_chunks()? != 0 {
        if Instant::now() > until {
            return Err(format!("{} chunk(s) still staged", store.staged_chunks()?).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(store.uploads()?.is_empty(), "an upload was recorded");
    Ok(())
}

fn sqlite(server: &TestServer) -> Result<SqliteStore, Box<dyn std::error::Error>> {
    Ok(SqliteStore::open(&server.path().join("data"))?)
}

/// Reads an upload's bytes back from the store.
fn read_back(
    store: &mut dyn Storage,
    receipt_id: u64,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let uploads = store.uploads()?;
    let u = uploads
        .iter()
        .find(|u| u.receipt_id == receipt_id)
        .ok_or("no such upload")?;
    let mut back = Vec::new();
    for seq in 0..u.chunks {
        back.extend(
            store
                .upload_chunk(u.upload_id, seq)?
                .ok_or("chunk missing")?,
        );
    }
    Ok(back)
}

#[test]
fn a_5_mib_binary_file_is_stored_byte_for_byte_on_postgresql() -> TestResult {
    let url = pg::Cluster::shared()
        .map_err(|e| e.to_string())?
        .fresh_db("upload5m")
        .map_err(|e| e.to_string())?;
    let server = TestServer::start(&["--database", &url])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    let data = random_file(tmp.path(), "data.bin", 5 << 20)?;
    let file = client::prepare_file(&tmp.path().join("data.bin"))?;
    let receipt = send(&server, &s, &file)?;
    assert_eq!(receipt.content.file.as_ref().map(|f| f.size), Some(5 << 20));
    let mut store = PostgresStore::open(&url)?;
    let back = read_back(&mut store, receipt.receipt_id)?;
    assert!(back == data, "the stored file differs from the one sent");
    assert_eq!(store.staged_chunks()?, 0);
    Ok(())
}

/// An upload of eight chunks announced and three of them sent, on a
/// connection the caller then cuts.
fn three_chunks_of_eight_sent(server: &TestServer) -> Result<Raw, Box<dyn std::error::Error>> {
    let s = enroll(server)?;
    let mut data = vec![0u8; 8 * CHUNK_MAX];
    openssl::rand::rand_bytes(&mut data)?;
    let mut raw = offer(server, &s)?;
    let (ready, mut a) = raw.announce("cut.bin", &data)?;
    assert!(matches!(ready?, Message::UploadReady { .. }));
    for seq in 0..3 {
        let c = raw.chunk(&mut a, &data, seq)?;
        raw.conn.send(&c)?;
    }
    Ok(raw)
}

/// Every chunk and the end sent at once, then the client's side closed
/// (a half-close) before it reads anything: the close may be read while
/// chunks are still at the writer and the end still buffered, and the
/// server must still take the end, record the file and send the receipt,
/// not take the close for an upload cut off (`Connection::owed` is the
/// rule; its unit test pins it, this one the whole path).
#[test]
fn a_whole_upload_sent_then_half_closed_is_still_recorded_and_answered() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let mut data = vec![0u8; 8 * CHUNK_MAX + 1000];
    openssl::rand::rand_bytes(&mut data)?;
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("whole.bin", &data)?;
    assert!(matches!(ready?, Message::UploadReady { .. }));
    for seq in 0..9 {
        let c = raw.chunk(&mut a, &data, seq)?;
        raw.conn.send(&c)?;
    }
    let done = raw.done(&a, 9)?;
    raw.conn.send(&done)?;
    raw.conn.finish_sending()?;
    match raw.conn.recv()? {
        Message::SignedReceipt { .. } => {}
        other => return Err(format!("expected the receipt, got {}", other.name()).into()),
    }
    let mut store = sqlite(&server)?;
    let uploads = store.uploads()?;
    assert_eq!(uploads.len(), 1, "recorded once");
    assert_eq!((uploads[0].size, uploads[0].chunks), (data.len() as u64, 9));
    assert_eq!(read_back(&mut store, uploads[0].receipt_id)?, data);
    Ok(())
}

#[test]
fn a_connection_cut_mid_upload_leaves_nothing_recorded_or_staged() -> TestResult {
    let server = TestServer::start(&[])?;
    let raw = three_chunks_of_eight_sent(&server)?;
    // Staged first (the cut must have something to remove), then cut.
    let mut store = sqlite(&server)?;
    let until = Instant::now() + Duration::from_secs(20);
    while store.staged_chunks()? == 0 {
        assert!(Instant::now() < until, "no chunk was ever staged");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(raw);
    nothing_left(&mut store)
}

#[test]
fn a_tampered_chunk_is_refused_with_code_5_and_nothing_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let data = vec![7u8; 3 * CHUNK_MAX];
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("t.bin", &data)?;
    ready?;
    let good = raw.chunk(&mut a, &data, 0)?;
    raw.conn.send(&good)?;
    let Message::Chunk {
        seq,
        mut ciphertext,
        mac,
    } = raw.chunk(&mut a, &data, 1)?
    else {
        return Err("not a chunk".into());
    };
    ciphertext[100] ^= 1;
    raw.conn.send(&Message::Chunk {
        seq,
        ciphertext,
        mac,
    })?;
    let (code, reason) = refusal(&mut raw)?;
    assert_eq!(code, ErrorCode::BadMac, "{reason}");
    nothing_left(&mut sqlite(&server)?)
}

#[test]
fn a_reordered_chunk_is_refused_with_code_2_and_nothing_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let data = vec![9u8; 3 * CHUNK_MAX];
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("r.bin", &data)?;
    ready?;
    let zero = raw.chunk(&mut a, &data, 0)?;
    let one = raw.chunk(&mut a, &data, 1)?;
    raw.conn.send(&one)?;
    let (code, reason) = refusal(&mut raw)?;
    assert_eq!(code, ErrorCode::UnexpectedMessage, "{reason}");
    assert!(
        reason.contains("chunk 1 refused: chunk 0 was expected"),
        "{reason}"
    );
    drop(zero);
    nothing_left(&mut sqlite(&server)?)
}

/// A chunk sent twice, byte for byte (a replay within the session): the
/// second is refused as out of sequence, and nothing is recorded.
#[test]
fn a_repeated_chunk_is_refused_with_code_2_and_nothing_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let data = vec![7u8; 3 * CHUNK_MAX];
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("twice.bin", &data)?;
    ready?;
    let zero = raw.chunk(&mut a, &data, 0)?;
    raw.conn.send(&zero)?;
    raw.conn.send(&zero)?;
    let (code, reason) = refusal(&mut raw)?;
    assert_eq!(code, ErrorCode::UnexpectedMessage, "{reason}");
    assert!(
        reason.contains("chunk 0 refused: chunk 1 was expected"),
        "{reason}"
    );
    nothing_left(&mut sqlite(&server)?)
}

#[test]
fn a_dropped_chunk_is_refused_with_code_2_and_nothing_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let data = vec![3u8; 3 * CHUNK_MAX];
    // The end after a skipped last chunk.
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("d.bin", &data)?;
    ready?;
    for seq in 0..2 {
        let c = raw.chunk(&mut a, &data, seq)?;
        raw.conn.send(&c)?;
    }
    let end = raw.done(&a, 3)?;
    raw.conn.send(&end)?;
    let (code, reason) = refusal(&mut raw)?;
    assert_eq!(code, ErrorCode::UnexpectedMessage, "{reason}");
    assert!(reason.contains("upload incomplete"), "{reason}");
    // A skipped chunk in the middle: the next one is out of sequence.
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("d.bin", &data)?;
    ready?;
    let zero = raw.chunk(&mut a, &data, 0)?;
    raw.conn.send(&zero)?;
    let _skipped = raw.chunk(&mut a, &data, 1)?;
    let two = raw.chunk(&mut a, &data, 2)?;
    raw.conn.send(&two)?;
    let (code, reason) = refusal(&mut raw)?;
    assert_eq!(code, ErrorCode::UnexpectedMessage, "{reason}");
    nothing_left(&mut sqlite(&server)?)
}

/// A file written to between its hashing and its sending is said to have
/// changed by the client, which sends no end: nothing is recorded.
#[test]
fn a_file_changed_while_it_is_sent_is_said_and_nothing_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    let mut data = random_file(tmp.path(), "essay.bin", 2 * CHUNK_MAX + 10)?;
    let prepared = client::prepare_file(&tmp.path().join("essay.bin"))?;
    data[CHUNK_MAX + 5] ^= 0xff;
    std::fs::write(tmp.path().join("essay.bin"), &data)?;
    let e = send(&server, &s, &prepared).err().ok_or("handed in")?;
    assert!(
        e.to_string().contains("changed while it was being sent"),
        "{e}"
    );
    nothing_left(&mut sqlite(&server)?)
}

/// A whole chunk carrying bytes beyond the announced size is refused at
/// once (code 1), before it is decrypted or written: an announcement of a
/// few bytes cannot be followed by megabytes staged on the server.
#[test]
fn a_whole_chunk_past_the_announced_size_is_refused_at_once() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    for announced in [0usize, 100, CHUNK_MAX + 100] {
        let data = vec![5u8; 3 * CHUNK_MAX];
        let mut raw = offer(&server, &s)?;
        let (ready, mut a) = raw.announce("over.bin", &data[..announced])?;
        ready?;
        let mut sent = 0;
        let (code, reason) = loop {
            let c = raw.chunk(&mut a, &data, sent)?;
            raw.conn.send(&c)?;
            sent += 1;
            if (sent as usize) * CHUNK_MAX > announced {
                break refusal(&mut raw)?;
            }
        };
        assert_eq!(code, ErrorCode::Malformed, "{announced}: {reason}");
        assert!(
            reason.contains(&format!("more bytes than the {announced} announced")),
            "{announced}: {reason}"
        );
        nothing_left(&mut sqlite(&server)?)?;
    }
    Ok(())
}

/// One SID may have at most MAX_UPLOADS_PER_SID uploads in progress: the
/// next announcement is refused with code 6 until one of hers ends.
#[test]
fn a_student_has_at_most_a_few_uploads_in_progress() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let data = vec![1u8; 2 * CHUNK_MAX];
    let mut open = Vec::new();
    for _ in 0..certboard::protocol::MAX_UPLOADS_PER_SID {
        let mut raw = offer(&server, &s)?;
        let (ready, a) = raw.announce("part.bin", &data)?;
        ready?;
        open.push((raw, a));
    }
    let mut raw = offer(&server, &s)?;
    let (ready, _) = raw.announce("one-too-many.bin", &data)?;
    match ready {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::Limit, "{reason}");
            assert!(reason.contains("already in progress"), "{reason}");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    // One of hers cut off: her place comes back.
    drop(open.pop());
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut raw = offer(&server, &s)?;
        match raw.announce("next.bin", &data)?.0 {
            Ok(_) => break,
            Err(ClientError::Refused {
                code: ErrorCode::Limit,
                ..
            }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[test]
fn hostile_file_names_are_refused_at_the_announcement() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let long = "x".repeat(256);
    for name in [
        "../etc/passwd",
        "a/b",
        "..",
        "a\0b",
        "bell\u{7}.txt",
        "report\u{202E}fdp.exe",
        long.as_str(),
    ] {
        let mut raw = offer(&server, &s)?;
        let (answer, _) = raw.announce(name, b"hello")?;
        match answer {
            Err(ClientError::Refused { code, reason }) => {
                assert_eq!(code, ErrorCode::BadRequest, "{name:?}: {reason}");
                assert!(reason.contains("file name"), "{name:?}: {reason}");
            }
            other => panic!("{name:?}: expected a refusal, got {other:?}"),
        }
    }
    // The longest name allowed passes.
    let mut raw = offer(&server, &s)?;
    let (answer, _) = raw.announce(&"y".repeat(255), b"hello")?;
    assert!(matches!(answer?, Message::UploadReady { .. }));
    drop(raw);
    nothing_left(&mut sqlite(&server)?)
}

/// A small file handed in, then a 3 MiB one refused as "storage is full";
/// then the refused upload's staged chunks go, and only the small file is
/// left, byte for byte, in `store` (opened by `open`).
fn full_store_refuses_the_second_file<S: Storage>(
    server: &TestServer,
    open: impl Fn() -> Result<S, Box<dyn std::error::Error>>,
) -> TestResult {
    let s = enroll(server)?;
    let tmp = tempfile::tempdir()?;
    let small = random_file(tmp.path(), "small.bin", 10_000)?;
    let first = send(
        server,
        &s,
        &client::prepare_file(&tmp.path().join("small.bin"))?,
    )?;
    random_file(tmp.path(), "big.bin", 3 << 20)?;
    match send(
        server,
        &s,
        &client::prepare_file(&tmp.path().join("big.bin"))?,
    ) {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::Internal, "{reason}");
            assert!(reason.contains("storage is full"), "{reason}");
            assert!(reason.contains("nothing was acknowledged"), "{reason}");
        }
        other => panic!("expected the storage-full refusal, got {other:?}"),
    }
    let mut store = open()?;
    let until = Instant::now() + Duration::from_secs(20);
    while store.staged_chunks()? != 0 {
        assert!(Instant::now() < until, "the refused upload's chunks stay");
        std::thread::sleep(Duration::from_millis(50));
    }
    let uploads = store.uploads()?;
    assert_eq!(uploads.len(), 1, "only the acknowledged upload");
    assert!(read_back(&mut store, first.receipt_id)? == small);
    Ok(())
}

#[test]
fn a_full_store_refuses_with_storage_full_and_keeps_what_it_acknowledged() -> TestResult {
    let dir = tempfile::tempdir()?;
    let how = Launch {
        // 1 MiB of 4 KiB pages: room for the server and a small file.
        wrapper: vec!["env".into(), "CERTBOARD_SQLITE_MAX_PAGES=256".into()],
        ..Launch::default()
    };
    let server = TestServer::launch(dir, &[], &how)?;
    full_store_refuses_the_second_file(&server, || sqlite(&server))
}

/// PostgreSQL says a full disk by SQLSTATE 53100 (`disk_full`), whatever
/// the words of its message (they follow the server's `lc_messages`): a
/// trigger raises exactly that, with other words, for every chunk after
/// the first of an upload.
#[test]
fn a_full_postgresql_refuses_with_storage_full_and_keeps_what_it_acknowledged() -> TestResult {
    let cluster = pg::Cluster::shared().map_err(|e| e.to_string())?;
    let url = cluster.fresh_db("full").map_err(|e| e.to_string())?;
    let server = TestServer::start(&["--database", &url])?;
    let db = url
        .rsplit('/')
        .next()
        .and_then(|t| t.split('?').next())
        .ok_or("no database in the url")?;
    cluster
        .client(db)
        .map_err(|e| e.to_string())?
        .batch_execute(
            "CREATE FUNCTION simulated_full() RETURNS trigger AS $$ BEGIN
                 IF NEW.seq >= 1 THEN
                     RAISE EXCEPTION 'simulated: the volume has no room' USING ERRCODE = 'disk_full';
                 END IF;
                 RETURN NEW;
             END $$ LANGUAGE plpgsql;
             CREATE TRIGGER simulated_full BEFORE INSERT ON upload_chunks
                 FOR EACH ROW EXECUTE FUNCTION simulated_full();",
        )?;
    full_store_refuses_the_second_file(&server, || Ok(PostgresStore::open(&url)?))
}

#[test]
fn a_slow_upload_that_keeps_moving_outlives_the_exchange_deadline() -> TestResult {
    let server = TestServer::start(&["--deadline", "3", "--idle-timeout", "3"])?;
    let s = enroll(&server)?;
    let mut data = vec![0u8; 10 * CHUNK_MAX];
    openssl::rand::rand_bytes(&mut data)?;
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("slow.bin", &data)?;
    ready?;
    // Ten chunks half a second apart: five seconds, past the deadline.
    for seq in 0..10 {
        let c = raw.chunk(&mut a, &data, seq)?;
        raw.conn.send(&c)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let end = raw.done(&a, 10)?;
    raw.conn.send(&end)?;
    let Message::SignedReceipt { receipt_id, .. } = raw.conn.recv()? else {
        return Err("no receipt".into());
    };
    let mut store = sqlite(&server)?;
    assert!(read_back(&mut store, receipt_id)? == data);

    // One that stops moving is still cut.
    let mut raw = offer(&server, &s)?;
    let (ready, mut a) = raw.announce("stuck.bin", &data)?;
    ready?;
    let c = raw.chunk(&mut a, &data, 0)?;
    raw.conn.send(&c)?;
    let (code, reason) = refusal(&mut raw)?;
    assert_eq!(code, ErrorCode::Limit, "{reason}");
    assert_eq!(store.uploads()?.len(), 1);
    Ok(())
}

#[test]
fn client_submit_hands_in_a_file_and_saves_its_receipt() -> TestResult {
    let server = TestServer::start(&[])?;
    let sid = "1155000077";
    std::fs::write(server.path().join("essay.pdf"), b"%PDF-1.4 not really")?;
    // Common options after the subcommand's name too.
    let out = server.client(&["enroll", sid, "--out-dir", "students"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("new key and certificate"),
        "{}",
        text(&out)
    );
    let out = server.client(&[
        "submit",
        "--assignment",
        "lab",
        "--file",
        "essay.pdf",
        sid,
        "--timeout",
        "20",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    let hash = crypto::sha256_hex(b"%PDF-1.4 not really");
    assert!(said.contains("\"essay.pdf\""), "{said}");
    assert!(said.contains("19 bytes"), "{said}");
    assert!(said.contains(&hash), "{said}");
    assert!(said.contains("on time"), "{said}");
    assert!(said.contains("reusing her key"), "{said}");
    // The receipt's log proof checked, its checkpoint kept.
    assert!(said.contains("of the transparency log"), "{said}");
    assert!(server
        .path()
        .join("students")
        .join("log-checkpoint")
        .is_file());
    let receipts: Vec<_> =
        std::fs::read_dir(server.path().join("students").join(sid).join("receipts"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
    assert_eq!(receipts.len(), 1);
    let mut store = sqlite(&server)?;
    let uploads = store.uploads()?;
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].file_name, "essay.pdf");
    let id = uploads[0].receipt_id;
    assert!(said.contains(&format!("receipt {id}")), "{said}");
    assert!(receipts[0].ends_with(format!("{id}.p7m")));
    // The lab's run is unchanged beside it; --cipher with a subcommand is refused.
    let out = server.client(&["--", sid])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = server.client(&["--cipher", "rc4", "enroll", sid])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    Ok(())
}

/// PROTOCOL.md §1: the frame limit is checked before the report's size, so
/// at the default a report over 64 KiB is refused as a frame (code 1);
/// code 6 comes only with a larger `--max-frame`.
#[test]
fn an_oversized_report_is_a_frame_refusal_at_the_default_limit() -> TestResult {
    let report = "a".repeat(65_537);
    for (flags, want) in [
        (&[][..], ErrorCode::Malformed),
        (&["--max-frame", "70000"][..], ErrorCode::Limit),
    ] {
        let server = TestServer::start(flags)?;
        let s = enroll(&server)?;
        let trust = server.trust()?;
        let mut conn = FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
        let got = client::submit(
            &mut conn,
            SID,
            &s.cert,
            &s.key,
            CipherId::Aes256Ctr,
            &report,
            &trust,
            &mut |_| {},
        );
        match got {
            Err(ClientError::Refused { code, reason }) => {
                assert_eq!(code, want, "{flags:?}: {reason}")
            }
            other => panic!("{flags:?}: expected a refusal, got {other:?}"),
        }
    }
    Ok(())
}

/// PROTOCOL.md §1: a client's receive limit is 65,590 bytes, checked
/// before the payload is read.
#[test]
fn the_client_refuses_a_frame_over_its_receive_limit() -> TestResult {
    use std::io::Write;
    for (len, refused) in [(65_590usize, false), (65_591, true)] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            // A frame whose payload is an Error message padded to `len`.
            let mut payload = Message::error(ErrorCode::Internal, "x").encode();
            payload.resize(len, b'x');
            s.write_all(&(len as i32).to_le_bytes())?;
            if !refused {
                s.write_all(&payload)?;
            }
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        });
        let mut conn = FramedStream::connect(&addr.to_string(), NET_TIMEOUT)?;
        let got = conn.recv_frame();
        assert_eq!(got.is_err(), refused, "{len}: {got:?}");
        if refused {
            let said = got.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(said.contains("65590") || said.contains("65,590"), "{said}");
        }
        let _ = server.join();
    }
    Ok(())
}

/// An upload is one submission entry of the transparency log, written with
/// its record: its receipt carries the entry's index and a proof the client
/// checked, which verifies for the entry rebuilt from the file's SHA-256
/// and size (and for nothing else), and `server log verify` matches the
/// file's record to it.
#[test]
fn an_uploads_receipt_carries_a_verifying_log_proof() -> TestResult {
    use certboard::tlog::{merkle, note::SignedNote, Checkpoint, Leaf, TlogProof};
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    let data = random_file(tmp.path(), "data.bin", 200_000)?;
    let file = client::prepare_file(&tmp.path().join("data.bin"))?;
    let receipt = send(&server, &s, &file)?;
    let c = &receipt.content;
    let index = c.log_index.ok_or("no log_index")?;
    let proof = TlogProof::parse(c.log_proof.as_deref().ok_or("no log_proof")?)?;
    assert_eq!(proof.index, index);
    assert_eq!(
        receipt.log_checkpoint.as_deref(),
        Some(proof.checkpoint.as_str()),
        "the client checked the proof and kept its checkpoint"
    );
    let note = SignedNote::parse(&proof.checkpoint)?;
    let cp = Checkpoint::parse_text(note.text)?;
    let leaf = |sha256: [u8; 32], size: u64| Leaf::Submission {
        sid: SID.into(),
        assignment: "lab".into(),
        receipt_id: receipt.receipt_id,
        sha256,
        size,
        received_at: certboard::time::parse_rfc3339(&c.received_at).unwrap_or(0) as u64,
        late: false,
        serial: c.serial.clone(),
    };
    let proves = |l: &Leaf| {
        merkle::verify_inclusion(
            &merkle::leaf_hash(&l.encode()),
            index,
            cp.size,
            &proof.path,
            &cp.root,
        )
    };
    let sha = openssl::sha::sha256(&data);
    assert!(proves(&leaf(sha, data.len() as u64)));
    assert!(!proves(&leaf(sha, data.len() as u64 + 1)), "another size");
    assert!(!proves(&leaf([0; 32], data.len() as u64)), "another hash");
    let mut store = sqlite(&server)?;
    assert_eq!(
        store.log_index_of(&certboard::store::tlog::upload_record_key(
            receipt.receipt_id
        ))?,
        Some(index)
    );
    // Her certificate's entry, then the file's: nothing for its chunks.
    assert_eq!(store.log_head()?.size, index + 1);
    drop(store);
    let out = server.admin(&["log", "verify"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("1 certificate(s), 0 report(s), 1 file(s)"),
        "{}",
        text(&out)
    );
    Ok(())
}

/// The announced assignment goes through the course's rules: one the
/// course does not have is refused at the announcement (code 3, nothing
/// staged); after the due time the file is taken late (receipt and leaf
/// say so); after late-until it is refused with code 17 naming the time in
/// the course's zone.
#[test]
fn an_upload_follows_its_assignments_deadlines() -> TestResult {
    use certboard::time::{now_unix, rfc3339};
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    random_file(tmp.path(), "hw.bin", 70_000)?;
    let file = client::prepare_file(&tmp.path().join("hw.bin"))?;
    match send_to(&server, &s, &file, "hw9") {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::BadRequest);
            assert!(reason.contains("hw9"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    nothing_left(&mut sqlite(&server)?)?;

    let now = now_unix();
    server.course_with_hw1(&[
        "--due",
        &rfc3339(now - 600),
        "--late-until",
        &rfc3339(now + 3600),
        "--force",
    ])?;
    let receipt = send_to(&server, &s, &file, "hw1")?;
    let c = &receipt.content;
    assert_eq!((c.assignment.as_deref(), c.late), (Some("hw1"), Some(true)));
    assert!(c.late_seconds.is_some_and(|l| l >= 600), "{c:?}");
    let mut store = sqlite(&server)?;
    let u = store.uploads()?;
    assert_eq!(
        (u[0].assignment.as_str(), u[0].late_seconds >= 600),
        ("hw1", true)
    );
    let leaf = certboard::tlog::Leaf::decode(
        &store.log_entries(
            c.log_index.ok_or("no index")?,
            c.log_index.ok_or("no index")? + 1,
        )?[0],
    )?;
    assert!(
        matches!(&leaf, certboard::tlog::Leaf::Submission { late: true, assignment, .. } if assignment == "hw1"),
        "{leaf:?}"
    );
    drop(store);

    let closed = now - 300;
    server.admin_ok(&[
        "assignment",
        "edit",
        "hw1",
        "--due",
        &rfc3339(now - 900),
        "--late-until",
        &rfc3339(closed),
        "--force",
    ])?;
    match send_to(&server, &s, &file, "hw1") {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::SubmissionsClosed);
            let shown = certboard::assignment::show_time(closed, Some("Asia/Hong_Kong"));
            assert!(
                reason.contains(&format!("assignment hw1: submissions closed at {shown}")),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut store = sqlite(&server)?;
    assert_eq!(store.uploads()?.len(), 1);
    assert_eq!(store.staged_chunks()?, 0);
    Ok(())
}

/// `server reports --assignment ID --extract DIR`: each student's latest
/// submission byte for byte (a binary file and a version 2 report), every
/// version with `--all`; a link planted in DIR is refused, nothing is
/// written through it, and an existing file is never written over.
#[test]
fn extract_writes_what_was_handed_in_and_follows_no_link() -> TestResult {
    let server = TestServer::start(&[])?;
    // A binary file of every byte value, over several chunks.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(server.path().join("data.bin"), &data)?;
    for (sid, file) in [("1155000081", "data.bin"), ("1155000081", "data.bin")] {
        let out = server.client(&["submit", "--assignment", "lab", "--file", file, sid])?;
        assert!(out.status.success(), "{}", text(&out));
    }
    // A version 2 lab report by another student.
    let out = server.client(&["1155000082"])?;
    assert!(out.status.success(), "{}", text(&out));
    let dir = server.path().join("graded");
    let dir_s = dir.to_string_lossy().to_string();
    let out = server.admin(&["reports", "--assignment", "lab", "--extract", &dir_s])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("extracted 2 file(s)"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(dir.join("lab/1155000081/data.bin"))?, data);
    let report = std::fs::read_to_string(dir.join("lab/1155000082/report.txt"))?;
    assert!(
        report.starts_with("This is submission from SID1155000082."),
        "{report}"
    );
    // Again into the same place: nothing written over.
    let again = server.admin(&["reports", "--assignment", "lab", "--extract", &dir_s])?;
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("extract into a new or empty directory"),
        "{}",
        text(&again)
    );
    // Every version.
    let every = server.path().join("every");
    let every_s = every.to_string_lossy().to_string();
    let out = server.admin(&[
        "reports",
        "--assignment",
        "lab",
        "--extract",
        &every_s,
        "--all",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_dir(every.join("lab/1155000081"))?.count(), 2);
    // A link planted where a student's folder goes, pointing outside.
    let trap = server.path().join("trap");
    let outside = server.path().join("outside");
    std::fs::create_dir_all(trap.join("lab"))?;
    std::fs::create_dir_all(&outside)?;
    std::os::unix::fs::symlink(&outside, trap.join("lab/1155000081"))?;
    let trap_s = trap.to_string_lossy().to_string();
    let out = server.admin(&["reports", "--assignment", "lab", "--extract", &trap_s])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("never followed"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&outside)?.count(), 0);
    // An assignment id that is no id, and one that is no assignment:
    // refused, and no folder made for it.
    let out = server.admin(&["reports", "--assignment", "../x", "--extract", &dir_s])?;
    assert!(!out.status.success(), "{}", text(&out));
    let out = server.admin(&["reports", "--assignment", "nosuch", "--extract", &dir_s])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no assignment \"nosuch\""),
        "{}",
        text(&out)
    );
    assert!(!dir.join("nosuch").exists());
    Ok(())
}

/// The files of a SQLite store's uploads directory.
fn upload_files(server: &TestServer) -> std::io::Result<Vec<String>> {
    let dir = server.path().join("data/uploads");
    let mut v: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
}

/// On SQLite an upload's bytes are a file of its own (0600) beside the
/// database, named by its record, not rows; extraction gives them back
/// byte for byte.
#[test]
fn on_sqlite_an_uploads_bytes_are_a_private_file_and_extract_byte_for_byte() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    let data = random_file(tmp.path(), "data.bin", 3 * CHUNK_MAX + 1234)?;
    let receipt = send(
        &server,
        &s,
        &client::prepare_file(&tmp.path().join("data.bin"))?,
    )?;
    let mut store = sqlite(&server)?;
    let u = store
        .uploads()?
        .into_iter()
        .find(|u| u.receipt_id == receipt.receipt_id)
        .ok_or("not recorded")?;
    assert_eq!(upload_files(&server)?, [u.upload_id.to_string()]);
    let path = server.path().join(format!("data/uploads/{}", u.upload_id));
    assert_eq!(std::fs::read(&path)?, data);
    assert_eq!(
        std::fs::metadata(&path)?.permissions().mode() & 0o777,
        0o600
    );
    let rows: i64 = rusqlite::Connection::open(server.path().join("data/certboard.sqlite3"))?
        .query_row("SELECT count(*) FROM upload_chunks", [], |r| r.get(0))?;
    assert_eq!(rows, 0, "no chunk is a row");
    assert!(read_back(&mut store, receipt.receipt_id)? == data);
    let out_dir = server.path().join("graded");
    let out = server.admin(&[
        "reports",
        "--assignment",
        "lab",
        "--extract",
        &out_dir.to_string_lossy(),
        "--all",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    let lab = out_dir.join("lab").join(SID);
    let extracted: Vec<_> = std::fs::read_dir(&lab)?.collect::<Result<_, _>>()?;
    assert_eq!(extracted.len(), 1);
    assert!(std::fs::read(extracted[0].path())? == data);
    Ok(())
}

/// Waits (20 s at most) until the server has written part of an upload.
fn wait_for_part_file(server: &TestServer) -> TestResult {
    let until = Instant::now() + Duration::from_secs(20);
    while !upload_files(server)?.iter().any(|f| f.ends_with(".part")) {
        assert!(Instant::now() < until, "no part file was ever written");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A connection cut mid-upload leaves no file behind, partial or whole.
#[test]
fn a_connection_cut_mid_upload_leaves_no_file() -> TestResult {
    let server = TestServer::start(&[])?;
    let raw = three_chunks_of_eight_sent(&server)?;
    wait_for_part_file(&server)?;
    drop(raw);
    nothing_left(&mut sqlite(&server)?)?;
    let until = Instant::now() + Duration::from_secs(20);
    while !upload_files(&server)?.is_empty() {
        assert!(
            Instant::now() < until,
            "left behind: {:?}",
            upload_files(&server)?
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A server stopped (SIGTERM) in the middle of an upload removes its part
/// file on the way out: nothing is left for a later start to find.
#[test]
fn a_server_stopped_mid_upload_leaves_no_part_file() -> TestResult {
    let server = TestServer::start(&[])?;
    let raw = three_chunks_of_eight_sent(&server)?;
    wait_for_part_file(&server)?;
    let (status, dir) = server.stop_keeping()?;
    assert!(status.success(), "{status:?}");
    drop(raw);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/uploads"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// At start-up the files of uploads a crash cut off go (a `.part`, and a
/// whole file whose record never committed); a recorded file stays.
#[test]
fn orphan_upload_files_are_removed_at_start_up() -> TestResult {
    let server = TestServer::start(&[])?;
    let s = enroll(&server)?;
    let tmp = tempfile::tempdir()?;
    let data = random_file(tmp.path(), "kept.bin", CHUNK_MAX + 7)?;
    let receipt = send(
        &server,
        &s,
        &client::prepare_file(&tmp.path().join("kept.bin"))?,
    )?;
    let dir = server.crash()?;
    let uploads = dir.path().join("data/uploads");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for name in ["111.part", "222"] {
        let f = std::fs::File::create(uploads.join(name))?;
        std::io::Write::write_all(&mut &f, b"cut off")?;
        f.set_modified(old)?;
    }
    let server = TestServer::start_in(dir, &[])?;
    let log = server.log();
    assert!(
        log.contains("removed 2 file(s)") && log.contains("of uploads never recorded"),
        "{log}"
    );
    let left = upload_files(&server)?;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left[0].ends_with(".part"));
    assert!(read_back(&mut sqlite(&server)?, receipt.receipt_id)? == data);
    Ok(())
}

/// `server migrate` into PostgreSQL carries a SQLite store's uploaded
/// files (kept as files there) into PostgreSQL's chunk rows, byte for byte.
#[test]
fn migrating_a_store_holding_files_to_postgresql_keeps_every_byte() -> TestResult {
    use certboard::store::MAX_CHUNK_ROW;
    let url = pg::Cluster::shared()
        .map_err(|e| e.to_string())?
        .fresh_db("migrate_files")
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir()?;
    let data: Vec<u8> = (0..(2 * MAX_CHUNK_ROW + 99))
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    {
        let mut s = SqliteStore::open(dir.path())?;
        let batch = certboard::testing::upload_file_records(4, 31, &data);
        s.commit(&batch)?;
        assert!(dir.path().join("uploads/31").exists());
    }
    let done = certboard::store::migrate(dir.path(), &url)?;
    assert!(
        done.tables.contains(&("upload_chunks".to_string(), 3)),
        "{:?}",
        done.tables
    );
    let mut pg = PostgresStore::open(&url)?;
    assert!(read_back(&mut pg, 4)? == data);
    assert_eq!(pg.staged_chunks()?, 0);
    Ok(())
}
