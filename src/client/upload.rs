//! Handing in a file by protocol version 3: the file is read twice, never
//! whole in memory: once to learn its size and SHA-256 (announced first,
//! so an oversized file is refused before it is sent), once to send it in
//! chunks, each encrypted on the file's one AES-256-CTR stream and MAC'd
//! with its sequence number; the signed receipt is then checked against
//! what she sent.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};

use crate::crypto::{self, SessionKeys, DIGEST_LEN};
use crate::filename::sanitise_file_name;
use crate::message::{CipherId, Intent, Message, IV_LEN, NONCE_LEN, PROTOCOL_VERSION_3};
use crate::receipt;

use super::logcheck;
use super::submission::{
    check_receipt, checked_offer, session_key, BlackboardTrust, Expected, Receipt,
};
use super::transport::FramedStream;
use super::{unexpected, ClientError};

/// A file about to be handed in, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileToSend {
    /// Where it is read from.
    pub path: PathBuf,
    /// The name announced: the path's last component, sanitised.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; DIGEST_LEN],
}

fn io_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Io {
        what: format!("reading {}", path.display()),
        source,
    }
}

/// Reads `path` once, streaming, for its size and SHA-256; the name is its
/// file name sanitised (`filename::sanitise_file_name`).
pub fn prepare_file(path: &Path) -> Result<FileToSend, ClientError> {
    // Before opening: a FIFO's open blocks until someone writes, and a
    // device such as /dev/zero never ends. Only a regular file is handed in.
    let not_regular = || {
        io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a directory, device, FIFO or socket): hand in a file",
            ),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let mut f = File::open(path).map_err(|e| io_error(path, e))?;
    // Replaced between the two looks: checked again on what was opened.
    if !f.metadata().map_err(|e| io_error(path, e))?.is_file() {
        return Err(not_regular());
    }
    let mut hasher = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; crypto::CHUNK_MAX];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let raw = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileToSend {
        path: path.to_path_buf(),
        name: sanitise_file_name(&raw),
        size,
        sha256: hasher.finish(),
    })
}

/// Fills `buf` from `f` as far as the file goes; the bytes read.
fn fill(f: &mut File, buf: &mut [u8], path: &Path) -> Result<usize, ClientError> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    Ok(got)
}

/// Opens a version 3 exchange on an open Blackboard connection, for an
/// upload or a status request: her SID, certificate and a fresh nonce;
/// Blackboard's signed offer checked (its certificate from the pinned
/// root, its signature over this exchange); the session key unwrapped and
/// the session's keys derived. Returns them with the transcript hash.
pub(super) fn open_v3(
    conn: &mut FramedStream,
    sid: &str,
    cert_der: &[u8],
    key: &PKey<Private>,
    trust: &BlackboardTrust,
    intent: Intent,
) -> Result<(SessionKeys, [u8; DIGEST_LEN]), ClientError> {
    let hello = Message::SubmitOpen3 {
        version: PROTOCOL_VERSION_3,
        sid: sid.to_string(),
        cert_der: cert_der.to_vec(),
        chain: Vec::new(),
        client_nonce: crypto::random::<NONCE_LEN>()?,
        intent,
    }
    .encode();
    conn.send_frame(&hello)?;
    let offer = conn
        .recv()
        .map_err(|e| super::transport::at_the_ca_port(e, conn.peer()))?;
    let (wrapped_key, th) = checked_offer(&hello, offer, trust)?;
    let session = session_key(key, &wrapped_key)?;
    Ok((SessionKeys::derive_v3(&session, &th)?, th))
}

/// A send that failed mid-upload: Blackboard may have refused the upload
/// and closed (a full disk, a chunk that does not verify) while chunks were
/// still on their way, and the reset came back to the send. Its reason,
/// already in the receive queue, says more than the reset does.
fn refusal_or(conn: &mut FramedStream, failed: ClientError) -> ClientError {
    if !matches!(failed, ClientError::Network { .. }) {
        return failed;
    }
    match conn.recv() {
        Err(refused @ ClientError::Refused { .. }) => refused,
        _ => failed,
    }
}

/// Hands `file` in for `assignment` on an open Blackboard connection and
/// checks the signed receipt (signature, her SID and serial, this
/// exchange, and the file's assignment, name, size and hash).
#[allow(clippy::too_many_arguments)]
pub fn upload(
    conn: &mut FramedStream,
    sid: &str,
    serial_hex: &str,
    cert_der: &[u8],
    key: &PKey<Private>,
    assignment: &str,
    file: &FileToSend,
    trust: &BlackboardTrust,
    progress: &mut dyn FnMut(&str),
) -> Result<Receipt, ClientError> {
    let (keys, th) = open_v3(conn, sid, cert_der, key, trust, Intent::Upload)?;
    progress("Blackboard proved itself and sent a session key (version 3)");
    let iv = crypto::random::<IV_LEN>()?;
    let cipher = CipherId::Aes256Ctr;
    let mac = keys.announce_mac_v3(
        &th,
        assignment,
        &file.name,
        file.size,
        &file.sha256,
        cipher,
        &iv,
    )?;
    let announce = Message::FileAnnounce {
        assignment: assignment.to_string(),
        file_name: file.name.clone(),
        size: file.size,
        sha256: file.sha256,
        cipher,
        iv,
        mac,
    }
    .encode();
    conn.send_frame(&announce)?;
    let chunk_max = match conn.recv()? {
        Message::UploadReady { chunk_max } => chunk_max as usize,
        other => return Err(unexpected("UploadReady", &other)),
    };
    if chunk_max == 0 || chunk_max > crypto::CHUNK_MAX {
        return Err(ClientError::Protocol(format!(
            "Blackboard asks for chunks of {chunk_max} bytes; this client sends 1 to {}",
            crypto::CHUNK_MAX
        )));
    }
    progress(&format!(
        "announced {:?} ({} bytes) for {assignment}; sending it",
        file.name, file.size
    ));
    let mut f = File::open(&file.path).map_err(|e| io_error(&file.path, e))?;
    if !f.metadata().map_err(|e| io_error(&file.path, e))?.is_file() {
        return Err(io_error(
            &file.path,
            std::io::Error::other("no longer a regular file: nothing was handed in"),
        ));
    }
    let mut stream = keys.file_cipher(&iv)?;
    let mut buf = vec![0u8; chunk_max];
    let mut seq = 0u64;
    let mut sent = 0u64;
    // What was read this time: a file written to meanwhile is said to
    // have changed, here, rather than refused by Blackboard's hash check.
    let mut hasher = openssl::sha::Sha256::new();
    let changed = |how: &str| {
        io_error(
            &file.path,
            std::io::Error::other(format!(
                "it {how} while it was being sent; nothing was handed in: send it again once \
                 nothing writes to it"
            )),
        )
    };
    // Chunks go without waiting for an answer: TCP holds her back when
    // Blackboard has not stored the last ones yet.
    while sent < file.size {
        let want = usize::try_from(file.size - sent).map_or(chunk_max, |r| r.min(chunk_max));
        let n = fill(&mut f, &mut buf[..want], &file.path)?;
        if n < want {
            return Err(changed("shrank"));
        }
        hasher.update(&buf[..n]);
        let ciphertext = stream.apply(&buf[..n])?;
        let mac = keys.chunk_mac_v3(&th, seq, &ciphertext)?;
        conn.send(&Message::Chunk {
            seq,
            ciphertext,
            mac,
        })
        .map_err(|e| refusal_or(conn, e))?;
        seq += 1;
        sent += n as u64;
    }
    if hasher.finish() != file.sha256 {
        return Err(changed("changed"));
    }
    let mac = keys.done_mac_v3(&th, &announce, seq, &file.sha256)?;
    conn.send(&Message::UploadDone { chunks: seq, mac })
        .map_err(|e| refusal_or(conn, e))?;
    let (receipt_id, serial, signed_receipt) = match conn.recv()? {
        Message::SignedReceipt {
            receipt_id,
            serial_hex,
            signed_receipt,
        } => (receipt_id, serial_hex, signed_receipt),
        other => return Err(unexpected("SignedReceipt", &other)),
    };
    let want = Expected {
        sid,
        serial: serial_hex,
        receipt: Some(receipt_id),
        report: None,
        transcript: Some(&th),
    };
    let content = check_receipt(&signed_receipt, trust, &want)?;
    let hex: String = file.sha256.iter().map(|b| format!("{b:02x}")).collect();
    let Some(fr) = content.file.as_ref() else {
        return Err(ClientError::Protocol(
            "the receipt names no file (not a version 3 receipt)".into(),
        ));
    };
    let check = |field, found: &str, expected: &str| {
        receipt::expect_field(field, found, expected).map_err(ClientError::Receipt)
    };
    let assignment_found = content.assignment.as_deref().unwrap_or_default();
    check("assignment", assignment_found, assignment)?;
    check(
        "version",
        &content.version.to_string(),
        &receipt::RECEIPT_VERSION_3.to_string(),
    )?;
    check("file_name", &fr.file_name, &file.name)?;
    check("size", &fr.size.to_string(), &file.size.to_string())?;
    check("file_sha256", &fr.file_sha256, &hex)?;
    check("report_sha256", &content.report_sha256, &hex)?;
    // Lateness is Blackboard's to decide, but said one way only: `late`
    // present, and `late_seconds` exactly when late.
    match (content.late, content.late_seconds) {
        (Some(false), None) => {}
        (Some(true), Some(s)) if s > 0 => {}
        (late, seconds) => {
            return Err(ClientError::Receipt(receipt::ReceiptError::Content(
                format!("late {late:?} and late_seconds {seconds:?} do not agree"),
            )))
        }
    }
    // Her log entry rebuilt from the file she sent, not from the receipt.
    let log_checkpoint = logcheck::check_file_inclusion(&content, &file.sha256, file.size)
        .map_err(|e| ClientError::Receipt(receipt::ReceiptError::Content(e.to_string())))?;
    Ok(Receipt {
        receipt_id,
        serial_hex: serial,
        signed_receipt,
        content,
        log_checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_prepared_and_a_fifo_never_blocks(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        for path in [
            fifo.as_path(),
            Path::new("/dev/zero"),
            Path::new("/dev/null"),
            dir.path(),
        ] {
            let e = prepare_file(path).err().ok_or("prepared")?;
            assert!(
                e.to_string().contains("not a regular file"),
                "{}: {e}",
                path.display()
            );
        }
        let file = dir.path().join("essay.txt");
        std::fs::write(&file, b"hello")?;
        let f = prepare_file(&file)?;
        assert_eq!((f.size, f.name.as_str()), (5, "essay.txt"));
        Ok(())
    }
}
