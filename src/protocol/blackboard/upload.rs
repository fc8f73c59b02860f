//! Blackboard's side of protocol version 3 (PROTOCOL.md, "Version 3"): a
//! signed offer like version 2's under version 3's labels, then a file
//! announced (name, size, SHA-256, MAC'd) and checked before any of it is
//! sent, then chunks, each MAC'd with its sequence number, decrypted and
//! staged in the store one by one (the connection reads its next chunk
//! only once the last is durable, so no file is ever whole in memory),
//! then an end that binds the announcement, the count and the hash; the
//! file becomes a submission in one transaction and the signed receipt
//! follows.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use log::info;
use openssl::sha::Sha256;

use crate::assignment::{AdmitError, Refused, Timing};
use crate::crypto::{self, ChunkMac, FileCipher, SessionKeys, CHUNK_MAX};
use crate::filename::{check_file_name, FileNameError};
use crate::message::{CipherId, Intent, Message, IV_LEN};
use crate::receipt::{FileReceipt, ReceiptContent, RECEIPT_VERSION_3};
use crate::store::{ChunkRecord, Origin, Record, UploadRecord};
use crate::time::{now_unix, rfc3339};

use super::super::error::{Internal, ProtocolError};
use super::super::submission::{check_certificate, check_mac, check_still_good, PendingReport};
use super::super::{After, Output, Shared, State, Step};
use super::{signed_offer, Blackboard, OfferKeys, OfferVersion, ReceiptToSign};

/// Default of `--max-submission`: the largest file accepted, 20 MiB.
pub const DEFAULT_MAX_SUBMISSION: u64 = 20 << 20;

/// Uploads one SID may have in progress at once, over every connection and
/// reactor of the process: a student hands in one file at a time, perhaps
/// two assignments at once; without a cap, one certificate could keep
/// thousands of connections each staging a file (`--max-connections` x
/// `--max-submission` of disk).
pub const MAX_UPLOADS_PER_SID: usize = 4;

/// The uploads in progress per SID, shared by every reactor of a process.
#[derive(Debug, Clone, Default)]
pub struct UploadsInProgress(Arc<Mutex<HashMap<String, usize>>>);

impl UploadsInProgress {
    /// A place for one more upload of `sid`, if she has fewer than
    /// [`MAX_UPLOADS_PER_SID`] under way; given back when dropped.
    fn take(&self, sid: &str) -> Option<UploadSlot> {
        // A poisoned lock only means a panic elsewhere while counting: the
        // counts themselves are whole.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(sid.to_string()).or_insert(0);
        if *n >= MAX_UPLOADS_PER_SID {
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            sid: sid.to_string(),
            of: self.clone(),
        })
    }

    /// How many uploads of `sid` are under way.
    pub fn of(&self, sid: &str) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(sid).copied().unwrap_or(0)
    }
}

/// One upload's place among her uploads in progress: held by the receiving
/// state, so that however the upload ends (recorded, refused, cut off) the
/// place is given back.
#[derive(Debug)]
struct UploadSlot {
    sid: String,
    of: UploadsInProgress,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut map = self.of.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.sid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.sid);
            }
        }
    }
}

/// What a server accepts of version 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPolicy {
    /// The oldest protocol version served at Blackboard: 2 (default) also
    /// takes version 2's `SubmitOpen`; 3 refuses it with code 10.
    pub min_protocol: u16,
    /// The largest file accepted, in bytes (`--max-submission`).
    pub max_submission: u64,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            min_protocol: 2,
            max_submission: DEFAULT_MAX_SUBMISSION,
        }
    }
}

/// Why Blackboard refused a version 3 exchange.
#[derive(Debug)]
#[non_exhaustive]
pub enum UploadError {
    /// A version 2 `SubmitOpen` at a server run with `--min-protocol 3`.
    Upgrade,
    /// `SubmitOpen3` named a version other than 3.
    Version(u16),
    /// Her status answer would be over [`crate::message::MAX_STATUS_BODY`].
    StatusTooLarge {
        /// Its size, in bytes.
        len: usize,
    },
    /// An assignment this server does not know.
    UnknownAssignment(String),
    /// The file name breaks the rule.
    FileName(FileNameError),
    /// The announced size is over `--max-submission`.
    TooLarge {
        /// Announced.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A MAC (of the announcement, a chunk or the end) does not verify.
    BadMac(&'static str),
    /// A chunk out of sequence (dropped, repeated or reordered).
    Sequence {
        /// The number it carried.
        got: u64,
        /// The number expected.
        want: u64,
    },
    /// A chunk of the wrong size: over `chunk_max`, or short but not last.
    ChunkSize {
        /// Its ciphertext length.
        len: usize,
    },
    /// More bytes than announced.
    Overrun {
        /// The announced size.
        size: u64,
    },
    /// The end came before every announced byte, or with another count.
    Incomplete {
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        size: u64,
        /// Chunks received.
        chunks: u64,
        /// Chunks the end claims.
        claimed: u64,
    },
    /// The bytes received do not hash to the announced SHA-256.
    HashMismatch,
    /// She already has [`MAX_UPLOADS_PER_SID`] uploads in progress.
    TooManyInProgress {
        /// The cap.
        max: usize,
    },
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::Upgrade => write!(
                f,
                "this server requires protocol version 3: upgrade the client \
                 (`client submit --assignment ID --file PATH SID`)"
            ),
            UploadError::Version(v) => write!(
                f,
                "SubmitOpen3 names protocol version {v}; this server speaks version 3"
            ),
            UploadError::StatusTooLarge { len } => write!(
                f,
                "her status answer would be {len} bytes; at most {} are sent (ask the \
                 instructor for `server gradebook`)",
                crate::message::MAX_STATUS_BODY
            ),
            UploadError::UnknownAssignment(a) => {
                // No id is longer than MAX_ID_LEN: a longer name is shown
                // cut, not echoed whole into the answer and the log.
                let mut end = a.len().min(crate::assignment::MAX_ID_LEN + 1);
                while !a.is_char_boundary(end) {
                    end -= 1;
                }
                let more = if end < a.len() { "..." } else { "" };
                write!(
                    f,
                    "no assignment {:?}{more} on this server",
                    crate::escape::escaped(&a[..end])
                )
            }
            UploadError::FileName(e) => write!(f, "file refused: {e}"),
            UploadError::TooLarge { size, max } => write!(
                f,
                "file refused: {size} bytes; at most {max} bytes are accepted (--max-submission)"
            ),
            UploadError::TooManyInProgress { max } => write!(
                f,
                "{max} uploads of this SID are already in progress: let one finish (or end it) \
                 before the next"
            ),
            UploadError::BadMac(what) => write!(
                f,
                "{what} refused: the MAC does not verify (altered, or not this session's)"
            ),
            UploadError::Sequence { got, want } => write!(
                f,
                "chunk {got} refused: chunk {want} was expected (a chunk was dropped, repeated \
                 or reordered)"
            ),
            UploadError::ChunkSize { len } => write!(
                f,
                "a chunk of {len} bytes: every chunk but the last carries exactly {CHUNK_MAX} \
                 bytes"
            ),
            UploadError::Overrun { size } => {
                write!(f, "more bytes than the {size} announced")
            }
            UploadError::Incomplete {
                received,
                size,
                chunks,
                claimed,
            } => write!(
                f,
                "upload incomplete: {received} of {size} bytes in {chunks} chunk(s), the end \
                 claims {claimed}"
            ),
            UploadError::HashMismatch => {
                write!(
                    f,
                    "file refused: its bytes do not hash to the announced SHA-256"
                )
            }
        }
    }
}

impl std::error::Error for UploadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UploadError::FileName(e) => Some(e),
            _ => None,
        }
    }
}

fn refused(sid: &str, source: UploadError) -> ProtocolError {
    ProtocolError::Upload {
        sid: sid.to_string(),
        source,
    }
}

fn internal(what: &'static str, e: openssl::error::ErrorStack) -> ProtocolError {
    ProtocolError::Internal(Internal::new(what, e))
}

/// Whether `assignment` takes a submission from `sid` at `now`, and how
/// late it is: the course's rules ([`crate::assignment::admit`]: its
/// times, her extension, the course's zone), read from the store each
/// time, as version 2's reports are. An assignment the course does not
/// have is refused with code 3, any other refusal is code 17.
pub(in crate::protocol) fn admit_assignment(
    shared: &mut Shared,
    sid: &str,
    assignment: &str,
    now: i64,
) -> Result<Timing, ProtocolError> {
    super::super::submission::check_on_roster(shared, sid)?;
    match crate::assignment::admit(&mut *shared.store, &shared.window, sid, assignment, now) {
        Ok(t) => Ok(t),
        Err(AdmitError::Refused(Refused::Unknown { id })) => {
            Err(refused(sid, UploadError::UnknownAssignment(id)))
        }
        Err(AdmitError::Refused(Refused::Window(e))) => Err(ProtocolError::Closed(e)),
        Err(AdmitError::Refused(e)) => Err(ProtocolError::Deadline(e)),
        Err(AdmitError::Store(e)) => Err(ProtocolError::store("reading the assignment", e)),
    }
}

/// A version 2 hello at a server that serves version 3 only.
pub(super) fn refuse_v2(shared: &Shared, sid: &str) -> Result<(), ProtocolError> {
    if shared.upload.min_protocol >= 3 {
        Err(refused(sid, UploadError::Upgrade))
    } else {
        Ok(())
    }
}

/// `SubmitOpen3`: the certificate checked as for version 2, then the
/// signed offer under version 3's transcript and keys.
#[allow(clippy::too_many_arguments)]
pub(super) fn open(
    hello: &[u8],
    version: u16,
    sid: &str,
    cert_der: &[u8],
    chain: &[Vec<u8>],
    intent: Intent,
    shared: &mut Shared,
    peer: &str,
) -> Step {
    if version != crate::message::PROTOCOL_VERSION_3 {
        return Err(refused(sid, UploadError::Version(version)));
    }
    let student = check_certificate(shared, sid, cert_der, chain, Origin::Certboard)
        .map_err(|e| ProtocolError::certificate(sid, e))?;
    let (reply, keys) = signed_offer(shared, hello, &student, OfferVersion::V3)?;
    info!(
        "{peer}: certificate serial {} verified for SID {}; version 3 offer sent ({intent:?})",
        student.serial, student.sid
    );
    let pending = Box::new(PendingReport::new(student, keys));
    let next = match intent {
        Intent::Upload => Blackboard::AwaitAnnounce(pending),
        Intent::Status => Blackboard::AwaitStatusRequest(pending),
    };
    Ok((State::Blackboard(next), Output::reply(reply)))
}

/// An upload under way: what was announced, the stream and hash so far.
pub(in crate::protocol) struct Receiving {
    p: PendingReport<OfferKeys>,
    /// The `FileAnnounce` payload as received (the end's MAC covers it).
    announce: Vec<u8>,
    assignment: String,
    file_name: String,
    size: u64,
    sha256: [u8; 32],
    cipher: FileCipher,
    /// The chunks' MAC, its key set up once for the whole upload.
    chunk_mac: ChunkMac,
    hasher: Sha256,
    upload_id: i64,
    next_seq: u64,
    received: u64,
    /// Her place among her uploads in progress, given back with the state.
    _slot: UploadSlot,
}

impl fmt::Debug for Receiving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiving")
            .field("sid", &self.p.sid)
            .field("upload_id", &self.upload_id)
            .field("next_seq", &self.next_seq)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Receiving {
    /// The staged upload's id: its chunks go if the connection ends first.
    pub(super) fn upload_id(&self) -> i64 {
        self.upload_id
    }

    /// Bytes and frames the rest of this upload may take beyond the
    /// connection's ordinary limits: the whole file once, in full chunks.
    pub(super) fn allowance(&self) -> (u64, u32) {
        let chunks = self.size.div_ceil(CHUNK_MAX as u64);
        let per_frame = 4 + 1 + 8 + 4 + 32;
        (
            self.size.saturating_add(chunks.saturating_mul(per_frame)),
            u32::try_from(chunks).unwrap_or(u32::MAX),
        )
    }
}

/// The file's announcement: MAC first, then name, size and assignment;
/// any refusal comes before a single byte of the file is read.
pub(super) fn announce(
    p: PendingReport<OfferKeys>,
    msg: Message,
    payload: &[u8],
    shared: &mut Shared,
    peer: &str,
) -> Step {
    let Message::FileAnnounce {
        assignment,
        file_name,
        size,
        sha256,
        cipher,
        iv,
        mac,
    } = msg
    else {
        return Err(ProtocolError::Internal(Internal::new(
            "announcement",
            "not a FileAnnounce",
        )));
    };
    let sid = p.sid.clone();
    let k = &p.keys;
    let expected = k
        .keys
        .announce_mac_v3(&k.th, &assignment, &file_name, size, &sha256, cipher, &iv)
        .map_err(|e| internal("MAC", e))?;
    check_mac(&expected, &mac).map_err(|_| refused(&sid, UploadError::BadMac("announcement")))?;
    check_file_name(&file_name).map_err(|e| refused(&sid, UploadError::FileName(e)))?;
    let max = shared.upload.max_submission;
    if size > max {
        return Err(refused(&sid, UploadError::TooLarge { size, max }));
    }
    check_still_good(shared, &p).map_err(|e| ProtocolError::certificate(&sid, e))?;
    admit_assignment(shared, &sid, &assignment, now_unix())?;
    let slot = shared.uploads.take(&sid).ok_or_else(|| {
        refused(
            &sid,
            UploadError::TooManyInProgress {
                max: MAX_UPLOADS_PER_SID,
            },
        )
    })?;
    let cipher_state = file_cipher(&p.keys.keys, cipher, &iv)?;
    let chunk_mac = p
        .keys
        .keys
        .chunk_mac(&p.keys.th)
        .map_err(|e| internal("MAC", e))?;
    let upload_id = random_id().map_err(|e| internal("upload id", e))?;
    info!(
        "{peer}: SID {sid} announces {file_name:?} ({size} bytes) for {assignment}; upload {upload_id}"
    );
    let r = Receiving {
        p,
        announce: payload.to_vec(),
        assignment,
        file_name,
        size,
        sha256,
        cipher: cipher_state,
        chunk_mac,
        hasher: Sha256::new(),
        upload_id,
        next_seq: 0,
        received: 0,
        _slot: slot,
    };
    Ok((
        State::Blackboard(Blackboard::Receiving(Box::new(r))),
        Output::reply(Message::UploadReady {
            chunk_max: CHUNK_MAX as u32,
        }),
    ))
}

fn file_cipher(
    keys: &SessionKeys,
    cipher: CipherId,
    iv: &[u8; IV_LEN],
) -> Result<FileCipher, ProtocolError> {
    // Decoding admits AES-256-CTR only; RC4 never reaches here.
    debug_assert_eq!(cipher, CipherId::Aes256Ctr);
    keys.file_cipher(iv).map_err(|e| internal("file cipher", e))
}

/// A positive random 63-bit id.
fn random_id() -> Result<i64, openssl::error::ErrorStack> {
    Ok((u64::from_le_bytes(crypto::random::<8>()?) >> 1) as i64)
}

/// One chunk: in sequence, of the agreed size, its MAC right, within the
/// announced size; decrypted where it lies (the decoded frame's own
/// buffer becomes the staged record: no copy of the file's bytes here),
/// hashed, and staged: handed to the writer, which appends it while the
/// next is read.
pub(super) fn chunk(mut r: Receiving, seq: u64, mut data: Vec<u8>, mac: &[u8], peer: &str) -> Step {
    let ciphertext = &data;
    let sid = r.p.sid.clone();
    if seq != r.next_seq {
        return Err(refused(
            &sid,
            UploadError::Sequence {
                got: seq,
                want: r.next_seq,
            },
        ));
    }
    let len = ciphertext.len() as u64;
    let last = r.received.saturating_add(len) == r.size;
    // Bytes beyond the announced size are refused at the first chunk that
    // carries them, whole or short: nothing past `size` is ever decrypted
    // or written (PROTOCOL.md V3.2).
    if !ciphertext.is_empty()
        && ciphertext.len() <= CHUNK_MAX
        && r.received.saturating_add(len) > r.size
    {
        return Err(refused(&sid, UploadError::Overrun { size: r.size }));
    }
    if ciphertext.is_empty()
        || ciphertext.len() > CHUNK_MAX
        || (!last && ciphertext.len() != CHUNK_MAX)
    {
        return Err(refused(
            &sid,
            UploadError::ChunkSize {
                len: ciphertext.len(),
            },
        ));
    }
    let expected = r
        .chunk_mac
        .mac(seq, ciphertext)
        .map_err(|e| internal("MAC", e))?;
    check_mac(&expected, mac).map_err(|_| refused(&sid, UploadError::BadMac("chunk")))?;
    r.cipher
        .apply_in_place(&mut data)
        .map_err(|e| internal("decryption", e))?;
    r.hasher.update(&data);
    r.received += len;
    r.next_seq += 1;
    log::debug!("{peer}: upload {} chunk {seq} ({len} bytes)", r.upload_id);
    let record = Record::Chunk(ChunkRecord {
        upload_id: r.upload_id,
        seq,
        data,
    });
    Ok((
        State::Blackboard(Blackboard::Receiving(Box::new(r))),
        Output {
            then: After::Persist(record),
            ..Output::default()
        },
    ))
}

/// The end: its MAC, the count, the size and the hash; then the file is
/// recorded, atomically with its staged chunks, and the receipt signed
/// once that is durable.
pub(super) fn done(r: Receiving, chunks: u64, mac: &[u8], shared: &mut Shared, peer: &str) -> Step {
    let sid = r.p.sid.clone();
    let k = &r.p.keys;
    let expected = k
        .keys
        .done_mac_v3(&k.th, &r.announce, chunks, &r.sha256)
        .map_err(|e| internal("MAC", e))?;
    check_mac(&expected, mac)
        .map_err(|_| refused(&sid, UploadError::BadMac("the upload's end")))?;
    if chunks != r.next_seq || r.received != r.size {
        return Err(refused(
            &sid,
            UploadError::Incomplete {
                received: r.received,
                size: r.size,
                chunks: r.next_seq,
                claimed: chunks,
            },
        ));
    }
    if !crypto::ct_eq(&r.hasher.finish(), &r.sha256) {
        return Err(refused(&sid, UploadError::HashMismatch));
    }
    check_still_good(shared, &r.p).map_err(|e| ProtocolError::certificate(&sid, e))?;
    let now = now_unix();
    let timing = admit_assignment(shared, &sid, &r.assignment, now)?;
    let receipt_id = random_id().map_err(|e| internal("receipt id", e))? as u64;
    let record = UploadRecord {
        receipt_id,
        upload_id: r.upload_id,
        sid: r.p.sid.clone(),
        serial: r.p.serial.clone(),
        received_at: now,
        assignment: r.assignment,
        file_name: r.file_name,
        size: r.size,
        sha256: r.sha256,
        chunks,
        late_seconds: timing.late_by().unwrap_or(0),
    };
    info!(
        "{peer}: upload {} from SID {sid} complete ({} bytes, {} chunks), receipt {receipt_id}; \
         signed receipt once recorded",
        record.upload_id, record.size, chunks
    );
    let content = ReceiptContent {
        sid: record.sid.clone(),
        serial: record.serial.to_string(),
        receipt: receipt_id.to_string(),
        received_at: rfc3339(now),
        report_sha256: record.sha256_hex(),
        transcript_sha256: r.p.keys.th.iter().map(|b| format!("{b:02x}")).collect(),
        version: RECEIPT_VERSION_3,
        assignment: Some(record.assignment.clone()),
        late: Some(timing.late_by().is_some()),
        late_seconds: timing.late_by(),
        log_index: None,
        log_proof: None,
        file: Some(FileReceipt {
            file_name: record.file_name.clone(),
            size: record.size,
            file_sha256: record.sha256_hex(),
        }),
    };
    let to_sign = ReceiptToSign {
        content,
        receipt_id,
        log_key: crate::store::tlog::upload_record_key(receipt_id),
        serial: record.serial.clone(),
        identity: Arc::clone(&r.p.keys.identity),
    };
    Ok((
        State::Blackboard(Blackboard::Recording(Box::new(to_sign))),
        Output {
            then: After::Persist(Record::Upload(record)),
            ..Output::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_assignment_is_named_cut_and_escaped_never_echoed_whole() {
        let said = UploadError::UnknownAssignment("hw9".into()).to_string();
        assert_eq!(said, "no assignment \"hw9\" on this server");
        let long = "é".repeat(30_000);
        let said = UploadError::UnknownAssignment(long).to_string();
        assert!(said.len() < 100 && said.contains("\"..."), "{said}");
        let said = UploadError::UnknownAssignment("a\u{1b}[2Kb".into()).to_string();
        assert!(!said.contains('\u{1b}'), "{said}");
    }

    #[test]
    fn a_students_uploads_in_progress_are_capped_and_given_back() {
        let all = UploadsInProgress::default();
        let held: Vec<UploadSlot> = (0..MAX_UPLOADS_PER_SID)
            .filter_map(|_| all.take("s1"))
            .collect();
        assert_eq!(held.len(), MAX_UPLOADS_PER_SID);
        assert!(all.take("s1").is_none(), "one too many");
        assert!(all.take("s2").is_some(), "another student is not held back");
        drop(held);
        assert_eq!(all.of("s1"), 0);
        assert!(all.take("s1").is_some());
    }
}
