//! certboard's own protocol messages, one per frame payload.
//!
//! Every payload starts with a one-byte message type, then the fields in
//! order: integers little-endian, variable-length byte strings with a
//! `u32` length, text with a `u16` length (UTF-8). Decoding is strict: an
//! unknown type, a short field, an oversized length or a trailing byte is an
//! error. PROTOCOL.md is the normative description; keep the two in step.
//!
//! Every message has at least one byte of fields, and no type byte is
//! `1`, `2`, `q` or `Q`, so a legacy client's one-character command frames
//! can never be mistaken for one of ours.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian};

mod status;

pub use status::{AssignmentStatus, StatusBody, SubmissionKind, SubmissionStatus, MAX_STATUS_BODY};

/// Length of the admission challenge and of the Blackboard nonce.
pub const NONCE_LEN: usize = 32;
/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Length of the AES-CTR initial counter block.
pub const IV_LEN: usize = 16;

/// Message type bytes.
mod tag {
    pub(super) const ADMISSION_CHALLENGE: u8 = 0x01;
    pub(super) const ADMISSION_RESPONSE: u8 = 0x02;
    pub(super) const CA_HELLO: u8 = 0x12;
    pub(super) const CA_CHALLENGE: u8 = 0x13;
    pub(super) const CERT_REQUEST: u8 = 0x14;
    pub(super) const CERT_ISSUED: u8 = 0x15;
    pub(super) const REPORT: u8 = 0x22;
    pub(super) const SUBMIT_OPEN: u8 = 0x24;
    pub(super) const SESSION_OFFER: u8 = 0x25;
    pub(super) const SIGNED_RECEIPT: u8 = 0x26;
    pub(super) const SUBMIT_OPEN_3: u8 = 0x40;
    pub(super) const FILE_ANNOUNCE: u8 = 0x41;
    pub(super) const UPLOAD_READY: u8 = 0x42;
    pub(super) const CHUNK: u8 = 0x43;
    pub(super) const UPLOAD_DONE: u8 = 0x44;
    pub(super) const STATUS_REQUEST: u8 = 0x45;
    pub(super) const STATUS_PART: u8 = 0x46;
    pub(super) const CA_HELLO_3: u8 = 0x48;
    pub(super) const CA_CHALLENGE_3: u8 = 0x49;
    pub(super) const CERT_ISSUED_3: u8 = 0x4a;
    pub(super) const LOG_CONSISTENCY_REQUEST: u8 = 0x4b;
    pub(super) const LOG_CONSISTENCY: u8 = 0x4c;
    pub(super) const ERROR: u8 = 0x7f;

    /// The type bytes of protocol version 1, no longer served: recognised
    /// by their type byte alone, so that a version 1 peer gets a refusal
    /// naming the version rather than "unknown type" (PROTOCOL.md). 0x22
    /// (`Report`) is the same in both versions.
    pub(super) fn version_1(t: u8) -> Option<&'static str> {
        match t {
            0x10 => Some("EnrollRequest"),
            0x11 => Some("EnrollResponse"),
            0x20 => Some("SubmitHello"),
            0x21 => Some("SessionKey"),
            0x23 => Some("Receipt"),
            _ => None,
        }
    }
}

/// The cipher a report is encrypted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherId {
    /// AES-256 in counter mode (the default).
    Aes256Ctr = 1,
    /// RC4, kept because the lab asks for it; never the default.
    Rc4 = 2,
}

impl CipherId {
    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(CipherId::Aes256Ctr),
            2 => Ok(CipherId::Rc4),
            other => Err(DecodeError::UnknownCipher(other)),
        }
    }

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            CipherId::Aes256Ctr => "aes-256-ctr",
            CipherId::Rc4 => "rc4",
        }
    }
}

/// Error codes carried by [`Message::Error`]; PROTOCOL.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The bytes were not a valid message.
    Malformed = 1,
    /// A valid message that the exchange does not allow at this point.
    UnexpectedMessage = 2,
    /// The CSR was refused (bad signature, bad SID, unsupported key).
    BadRequest = 3,
    /// The certificate was refused.
    BadCertificate = 4,
    /// The report's MAC did not verify.
    BadMac = 5,
    /// A limit was exceeded (size, count, time, connections).
    Limit = 6,
    /// The admission response was wrong or missing.
    AdmissionRefused = 7,
    /// Something failed on the server's side.
    Internal = 8,
    /// The first frame was a legacy command but legacy mode is off.
    LegacyDisabled = 9,
    /// A protocol version this server does not serve.
    UnsupportedVersion = 10,
    /// The SID is not on the course roster.
    NotOnRoster = 11,
    /// A first enrollment needs the student's enrollment code.
    CodeRequired = 12,
    /// The enrollment code proof did not verify.
    WrongCode = 13,
    /// The enrollment code was already used.
    CodeUsed = 14,
    /// Too many enrollment code guesses from this address (for this SID,
    /// or in all) within the window; the reason says when to try again.
    /// (Version 2 servers before issue 22 meant "locked" by 15.)
    TooManyGuesses = 15,
    /// The renewal proof or the certificate it rests on was refused.
    RenewalRefused = 16,
    /// Submissions are closed (or not yet open).
    SubmissionsClosed = 17,
    /// A roster is in force and no enrollment code vouches for the
    /// certificate (open enrollment from before the roster, or renewals of
    /// one): it may neither renew nor submit; the student enrolls with her
    /// code.
    Unvouched = 18,
    /// The server's database is down, restarting or not answering: nothing
    /// was recorded, and the same request may succeed in a moment. Clients
    /// from before this code read it as [`ErrorCode::Internal`] (any
    /// unknown code is), and its reason says the same in words.
    StoreUnavailable = 19,
}

impl ErrorCode {
    fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnexpectedMessage,
            3 => ErrorCode::BadRequest,
            4 => ErrorCode::BadCertificate,
            5 => ErrorCode::BadMac,
            6 => ErrorCode::Limit,
            7 => ErrorCode::AdmissionRefused,
            9 => ErrorCode::LegacyDisabled,
            10 => ErrorCode::UnsupportedVersion,
            11 => ErrorCode::NotOnRoster,
            12 => ErrorCode::CodeRequired,
            13 => ErrorCode::WrongCode,
            14 => ErrorCode::CodeUsed,
            15 => ErrorCode::TooManyGuesses,
            16 => ErrorCode::RenewalRefused,
            17 => ErrorCode::SubmissionsClosed,
            18 => ErrorCode::Unvouched,
            19 => ErrorCode::StoreUnavailable,
            _ => ErrorCode::Internal,
        }
    }
}

/// The protocol version of the v2 messages ([`Message::CaHello`]).
pub const PROTOCOL_VERSION: u16 = 2;

/// The protocol version [`Message::SubmitOpen3`] carries.
pub const PROTOCOL_VERSION_3: u16 = 3;

/// What a version 3 Blackboard connection is for ([`Message::SubmitOpen3`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Hand in a file (`FileAnnounce`, `Chunk`s, `UploadDone`).
    Upload = 1,
    /// Ask what Blackboard holds for her (`StatusRequest`, then
    /// `StatusPart`s).
    Status = 2,
}

impl Intent {
    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Intent::Upload),
            2 => Ok(Intent::Status),
            other => Err(DecodeError::UnknownValue("intent", other)),
        }
    }
}

/// What a CA asks of a first enrollment (in [`Message::CaChallenge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollPolicy {
    /// No roster: anyone may enroll for any SID.
    Open = 0,
    /// A roster: a first enrollment needs the student's code.
    Roster = 1,
}

impl EnrollPolicy {
    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(EnrollPolicy::Open),
            1 => Ok(EnrollPolicy::Roster),
            other => Err(DecodeError::UnknownValue("policy", other)),
        }
    }
}

/// How a [`Message::CertRequest`] is authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollAuth {
    /// Nothing (open enrollment, no roster).
    Open,
    /// HMAC keyed by the enrollment code's key over the nonce, SID and CSR.
    Code {
        /// The tag.
        mac: [u8; MAC_LEN],
    },
    /// Possession of the key of her current certificate.
    Renewal {
        /// Her current certificate, DER.
        cert_der: Vec<u8>,
        /// Her signature over the nonce, that certificate and the CSR.
        signature: Vec<u8>,
    },
}

/// A decoded certboard message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// S→C, first frame on every connection when admission control is on.
    AdmissionChallenge {
        /// Fresh random bytes.
        challenge: [u8; NONCE_LEN],
    },
    /// C→S, HMAC-SHA256(shared secret, challenge).
    AdmissionResponse {
        /// The client's tag.
        mac: [u8; MAC_LEN],
    },
    /// C→S to the CA (v2): the first message, naming the version.
    CaHello {
        /// The protocol version ([`PROTOCOL_VERSION`]).
        version: u16,
    },
    /// S→C from the CA (v2): the policy and the nonce the next request binds.
    CaChallenge {
        /// The protocol version ([`PROTOCOL_VERSION`]).
        version: u16,
        /// What a first enrollment needs.
        policy: EnrollPolicy,
        /// Fresh random bytes, good for one request.
        nonce: [u8; NONCE_LEN],
    },
    /// C→S to the CA (v2): a CSR and what authorises it.
    CertRequest {
        /// The CSR, DER.
        csr_der: Vec<u8>,
        /// The authorisation.
        auth: EnrollAuth,
    },
    /// S→C from the CA (v2): the certificate, the root, and the next nonce.
    CertIssued {
        /// The student's certificate, DER.
        cert_der: Vec<u8>,
        /// The CA root certificate, DER.
        ca_cert_der: Vec<u8>,
        /// The nonce for the next request on this connection.
        next_nonce: [u8; NONCE_LEN],
    },
    /// C→S to Blackboard: the encrypted, MAC'd report.
    Report {
        /// The cipher used.
        cipher: CipherId,
        /// AES-CTR initial counter block (ignored, but MAC'd, for RC4).
        iv: [u8; IV_LEN],
        /// The encrypted report.
        ciphertext: Vec<u8>,
        /// HMAC-SHA256 over the exchange (see `SessionKeys::report_mac_v2`).
        mac: [u8; MAC_LEN],
    },
    /// C→S to Blackboard, version 2: who she is, her certificate and a
    /// fresh nonce of hers, which Blackboard's signature will cover.
    SubmitOpen {
        /// The student id.
        sid: String,
        /// Her certificate, DER.
        cert_der: Vec<u8>,
        /// Intermediate certificates, DER (normally none).
        chain: Vec<Vec<u8>>,
        /// Fresh random bytes of the client's.
        client_nonce: [u8; NONCE_LEN],
    },
    /// S→C from Blackboard, version 2: the session key under RSA-OAEP,
    /// Blackboard's certificate chain and its signature over the transcript.
    SessionOffer {
        /// Fresh random bytes of Blackboard's.
        server_nonce: [u8; NONCE_LEN],
        /// RSA-OAEP(SHA-256) encryption of the 32-byte session key.
        wrapped_key: Vec<u8>,
        /// Blackboard's certificate first, then any intermediates (never
        /// the root); at least one.
        bb_chain: Vec<Vec<u8>>,
        /// Blackboard's signature over the transcript (SHA-256).
        signature: Vec<u8>,
    },
    /// S→C from Blackboard, version 2: the report is durably stored, and a
    /// signed proof of it.
    SignedReceipt {
        /// The store's receipt id.
        receipt_id: u64,
        /// Serial of the certificate the report was accepted under.
        serial_hex: String,
        /// CMS SignedData, DER, whose content is the receipt's JSON.
        signed_receipt: Vec<u8>,
    },
    /// C→S to Blackboard, version 3: `SubmitOpen`'s fields after a
    /// version and before what the connection is for.
    SubmitOpen3 {
        /// The protocol version ([`PROTOCOL_VERSION_3`]).
        version: u16,
        /// The student id.
        sid: String,
        /// Her certificate, DER.
        cert_der: Vec<u8>,
        /// Intermediate certificates, DER (normally none).
        chain: Vec<Vec<u8>>,
        /// Fresh random bytes of the client's.
        client_nonce: [u8; NONCE_LEN],
        /// What the connection is for.
        intent: Intent,
    },
    /// C→S to Blackboard, version 3: the file about to be sent, MAC'd.
    FileAnnounce {
        /// The assignment it is handed in for.
        assignment: String,
        /// Its name, already sanitised by the client.
        file_name: String,
        /// Its size in bytes.
        size: u64,
        /// SHA-256 of its bytes.
        sha256: [u8; 32],
        /// Always AES-256-CTR: RC4 is not offered for files (decoding
        /// refuses any other value).
        cipher: CipherId,
        /// AES-CTR's initial counter block, continued across the chunks.
        iv: [u8; IV_LEN],
        /// HMAC over the announcement (`SessionKeys::announce_mac_v3`).
        mac: [u8; MAC_LEN],
    },
    /// S→C from Blackboard, version 3: the announcement is accepted; send
    /// chunks of at most `chunk_max` bytes of ciphertext.
    UploadReady {
        /// Largest `ciphertext` of one chunk.
        chunk_max: u32,
    },
    /// C→S to Blackboard, version 3: the next piece of the file.
    Chunk {
        /// 0 for the first chunk, then one more each.
        seq: u64,
        /// The file's AES-256-CTR stream, continued from the last chunk.
        ciphertext: Vec<u8>,
        /// HMAC over the sequence number and the ciphertext.
        mac: [u8; MAC_LEN],
    },
    /// C→S to Blackboard, version 3: every chunk is sent.
    UploadDone {
        /// How many chunks were sent.
        chunks: u64,
        /// HMAC binding the announcement, the count and the file's hash.
        mac: [u8; MAC_LEN],
    },
    /// C→S to Blackboard, version 3 (intent status): she asks what
    /// Blackboard holds for her, proving she holds the session key.
    StatusRequest {
        /// HMAC over the transcript (`SessionKeys::status_request_mac_v3`).
        mac: [u8; MAC_LEN],
    },
    /// S→C from Blackboard, version 3: one piece of the encrypted status
    /// answer ([`StatusBody`]); the last piece says so.
    StatusPart {
        /// 0 for the first piece, then one more each.
        seq: u64,
        /// Whether this is the answer's last piece.
        last: bool,
        /// The answer's AES-256-CTR stream, continued from the last piece.
        ciphertext: Vec<u8>,
        /// HMAC over the number, `last` and the ciphertext.
        mac: [u8; MAC_LEN],
    },
    /// C→S to the CA, version 3: the first message, with a fresh nonce
    /// the CA signs, and the size of the latest log checkpoint she holds.
    CaHello3 {
        /// The protocol version ([`PROTOCOL_VERSION_3`]).
        version: u16,
        /// Fresh random bytes of the client's.
        client_nonce: [u8; NONCE_LEN],
        /// The size of the latest checkpoint she holds for this CA (0: none).
        log_size: u64,
    },
    /// S→C from the CA, version 3: the root and the log key, proved by the
    /// root key's signature over the hello and this challenge, before
    /// anything secret leaves the client.
    CaChallenge3 {
        /// The protocol version ([`PROTOCOL_VERSION_3`]).
        version: u16,
        /// What a first enrollment needs.
        policy: EnrollPolicy,
        /// Fresh random bytes, good for one request.
        nonce: [u8; NONCE_LEN],
        /// The CA root certificate, DER.
        ca_cert_der: Vec<u8>,
        /// The log's verifier key (signed-note form); empty without a log.
        log_key: String,
        /// The root key's signature over the challenge transcript.
        signature: Vec<u8>,
    },
    /// S→C from the CA, version 3: the certificate, the proof that it is
    /// logged, and the next nonce.
    CertIssued3 {
        /// The student's certificate, DER.
        cert_der: Vec<u8>,
        /// The nonce for the next request on this connection.
        next_nonce: [u8; NONCE_LEN],
        /// The certificate's log entry (empty without a log).
        log_entry: Vec<u8>,
        /// The C2SP tlog-proof of that entry (empty without a log).
        log_proof: String,
        /// RFC 6962 consistency proof from her announced tree to the
        /// proof's checkpoint, 32-byte hashes concatenated.
        consistency: Vec<u8>,
    },
    /// C→S to the CA, version 3: a consistency proof between two tree sizes.
    LogConsistencyRequest {
        /// The smaller tree.
        old_size: u64,
        /// The larger tree.
        new_size: u64,
    },
    /// S→C from the CA, version 3: the proof, 32-byte hashes concatenated.
    LogConsistency {
        /// RFC 6962 §2.1.2 proof.
        proof: Vec<u8>,
    },
    /// Either way: a refusal with a reason; the sender closes after it.
    Error {
        /// A machine-readable code.
        code: ErrorCode,
        /// A reason for a person.
        reason: String,
    },
}

/// Why a payload is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is empty.
    Empty,
    /// The type byte is not one we know.
    UnknownType(u8),
    /// The type byte is a message of protocol version 1 (named), which is
    /// no longer served.
    Version1(&'static str),
    /// A field runs past the end of the payload.
    Truncated(&'static str),
    /// Bytes remain after the last field.
    TrailingBytes(usize),
    /// A text field is not UTF-8.
    BadUtf8(&'static str),
    /// The cipher byte is not one we know.
    UnknownCipher(u8),
    /// A field holds a value the protocol does not define.
    UnknownValue(&'static str, u8),
    /// A list that must hold at least one entry is empty.
    EmptyList(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty message"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            DecodeError::Version1(name) => {
                write!(f, "a protocol version 1 message ({name}), no longer served")
            }
            DecodeError::Truncated(field) => write!(f, "message truncated in field `{field}`"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the message"),
            DecodeError::BadUtf8(field) => write!(f, "field `{field}` is not valid UTF-8"),
            DecodeError::UnknownCipher(c) => write!(f, "unknown cipher id {c}"),
            DecodeError::UnknownValue(field, v) => {
                write!(f, "unknown value {v} in field `{field}`")
            }
            DecodeError::EmptyList(field) => write!(f, "field `{field}` must not be empty"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A borrowing cursor over a payload; every read names its field so that a
/// truncation error says where.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(LittleEndian::read_u16(self.take(2, field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(LittleEndian::read_u32(self.take(4, field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(LittleEndian::read_u64(self.take(8, field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(LittleEndian::read_i64(self.take(8, field)?))
    }

    /// A `u8` that must be 0 (false) or 1 (true).
    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::UnknownValue(field, other)),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = LittleEndian::read_u32(self.take(4, field)?);
        // A length larger than what is left is refused before any allocation.
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(field))?;
        Ok(self.take(len, field)?.to_vec())
    }

    fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        let raw = self.take(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::BadUtf8(field))
    }

    /// A `u8` count, then that many `bytes`.
    fn list(&mut self, field: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
        let count = self.u8(field)?;
        (0..count).map(|_| self.bytes(field)).collect()
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX); // ok: frames are capped far below 4 GiB
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    // Text fields are short by construction; cut at a char boundary rather
    // than emit a length that disagrees with the bytes.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_list(out: &mut Vec<u8>, items: &[Vec<u8>]) {
    out.push(u8::try_from(items.len()).unwrap_or(u8::MAX)); // ok: senders send at most a few
    for c in items.iter().take(usize::from(u8::MAX)) {
        put_bytes(out, c);
    }
}

impl Message {
    /// Encodes the message as a frame payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::AdmissionChallenge { challenge } => {
                out.push(tag::ADMISSION_CHALLENGE);
                out.extend_from_slice(challenge);
            }
            Message::AdmissionResponse { mac } => {
                out.push(tag::ADMISSION_RESPONSE);
                out.extend_from_slice(mac);
            }
            Message::CaHello { version } => {
                out.push(tag::CA_HELLO);
                out.extend_from_slice(&version.to_le_bytes());
            }
            Message::CaChallenge {
                version,
                policy,
                nonce,
            } => {
                out.push(tag::CA_CHALLENGE);
                out.extend_from_slice(&version.to_le_bytes());
                out.push(*policy as u8);
                out.extend_from_slice(nonce);
            }
            Message::CertRequest { csr_der, auth } => {
                out.push(tag::CERT_REQUEST);
                put_bytes(&mut out, csr_der);
                match auth {
                    EnrollAuth::Open => out.push(0),
                    EnrollAuth::Code { mac } => {
                        out.push(1);
                        out.extend_from_slice(mac);
                    }
                    EnrollAuth::Renewal {
                        cert_der,
                        signature,
                    } => {
                        out.push(2);
                        put_bytes(&mut out, cert_der);
                        put_bytes(&mut out, signature);
                    }
                }
            }
            Message::CertIssued {
                cert_der,
                ca_cert_der,
                next_nonce,
            } => {
                out.push(tag::CERT_ISSUED);
                put_bytes(&mut out, cert_der);
                put_bytes(&mut out, ca_cert_der);
                out.extend_from_slice(next_nonce);
            }
            Message::SubmitOpen {
                sid,
                cert_der,
                chain,
                client_nonce,
            } => {
                out.push(tag::SUBMIT_OPEN);
                put_text(&mut out, sid);
                put_bytes(&mut out, cert_der);
                put_list(&mut out, chain);
                out.extend_from_slice(client_nonce);
            }
            Message::SessionOffer {
                server_nonce,
                wrapped_key,
                bb_chain,
                signature,
            } => {
                out.push(tag::SESSION_OFFER);
                out.extend_from_slice(server_nonce);
                put_bytes(&mut out, wrapped_key);
                put_list(&mut out, bb_chain);
                put_bytes(&mut out, signature);
            }
            Message::SignedReceipt {
                receipt_id,
                serial_hex,
                signed_receipt,
            } => {
                out.push(tag::SIGNED_RECEIPT);
                out.extend_from_slice(&receipt_id.to_le_bytes());
                put_text(&mut out, serial_hex);
                put_bytes(&mut out, signed_receipt);
            }
            Message::Report {
                cipher,
                iv,
                ciphertext,
                mac,
            } => {
                out.push(tag::REPORT);
                out.push(*cipher as u8);
                out.extend_from_slice(iv);
                put_bytes(&mut out, ciphertext);
                out.extend_from_slice(mac);
            }
            Message::SubmitOpen3 {
                version,
                sid,
                cert_der,
                chain,
                client_nonce,
                intent,
            } => {
                out.push(tag::SUBMIT_OPEN_3);
                out.extend_from_slice(&version.to_le_bytes());
                put_text(&mut out, sid);
                put_bytes(&mut out, cert_der);
                put_list(&mut out, chain);
                out.extend_from_slice(client_nonce);
                out.push(*intent as u8);
            }
            Message::FileAnnounce {
                assignment,
                file_name,
                size,
                sha256,
                cipher,
                iv,
                mac,
            } => {
                out.push(tag::FILE_ANNOUNCE);
                put_text(&mut out, assignment);
                put_text(&mut out, file_name);
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(sha256);
                out.push(*cipher as u8);
                out.extend_from_slice(iv);
                out.extend_from_slice(mac);
            }
            Message::UploadReady { chunk_max } => {
                out.push(tag::UPLOAD_READY);
                out.extend_from_slice(&chunk_max.to_le_bytes());
            }
            Message::Chunk {
                seq,
                ciphertext,
                mac,
            } => {
                out.push(tag::CHUNK);
                out.extend_from_slice(&seq.to_le_bytes());
                put_bytes(&mut out, ciphertext);
                out.extend_from_slice(mac);
            }
            Message::UploadDone { chunks, mac } => {
                out.push(tag::UPLOAD_DONE);
                out.extend_from_slice(&chunks.to_le_bytes());
                out.extend_from_slice(mac);
            }
            Message::StatusRequest { mac } => {
                out.push(tag::STATUS_REQUEST);
                out.extend_from_slice(mac);
            }
            Message::StatusPart {
                seq,
                last,
                ciphertext,
                mac,
            } => {
                out.push(tag::STATUS_PART);
                out.extend_from_slice(&seq.to_le_bytes());
                out.push(u8::from(*last));
                put_bytes(&mut out, ciphertext);
                out.extend_from_slice(mac);
            }
            Message::CaHello3 {
                version,
                client_nonce,
                log_size,
            } => {
                out.push(tag::CA_HELLO_3);
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(client_nonce);
                out.extend_from_slice(&log_size.to_le_bytes());
            }
            Message::CaChallenge3 {
                version,
                policy,
                nonce,
                ca_cert_der,
                log_key,
                signature,
            } => {
                out.push(tag::CA_CHALLENGE_3);
                out.extend_from_slice(&version.to_le_bytes());
                out.push(*policy as u8);
                out.extend_from_slice(nonce);
                put_bytes(&mut out, ca_cert_der);
                put_text(&mut out, log_key);
                put_bytes(&mut out, signature);
            }
            Message::CertIssued3 {
                cert_der,
                next_nonce,
                log_entry,
                log_proof,
                consistency,
            } => {
                out.push(tag::CERT_ISSUED_3);
                put_bytes(&mut out, cert_der);
                out.extend_from_slice(next_nonce);
                put_bytes(&mut out, log_entry);
                put_bytes(&mut out, log_proof.as_bytes());
                put_bytes(&mut out, consistency);
            }
            Message::LogConsistencyRequest { old_size, new_size } => {
                out.push(tag::LOG_CONSISTENCY_REQUEST);
                out.extend_from_slice(&old_size.to_le_bytes());
                out.extend_from_slice(&new_size.to_le_bytes());
            }
            Message::LogConsistency { proof } => {
                out.push(tag::LOG_CONSISTENCY);
                put_bytes(&mut out, proof);
            }
            Message::Error { code, reason } => {
                out.push(tag::ERROR);
                out.extend_from_slice(&(*code as u16).to_le_bytes());
                put_text(&mut out, reason);
            }
        }
        out
    }

    /// Decodes one frame payload.
    pub fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
        let (&t, rest) = payload.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader { rest };
        let msg = match t {
            tag::ADMISSION_CHALLENGE => Message::AdmissionChallenge {
                challenge: r.array("challenge")?,
            },
            tag::ADMISSION_RESPONSE => Message::AdmissionResponse {
                mac: r.array("mac")?,
            },
            tag::CA_HELLO => Message::CaHello {
                version: r.u16("version")?,
            },
            tag::CA_CHALLENGE => Message::CaChallenge {
                version: r.u16("version")?,
                policy: EnrollPolicy::from_byte(r.u8("policy")?)?,
                nonce: r.array("nonce")?,
            },
            tag::CERT_REQUEST => {
                let csr_der = r.bytes("csr")?;
                let auth = match r.u8("auth")? {
                    0 => EnrollAuth::Open,
                    1 => EnrollAuth::Code {
                        mac: r.array("mac")?,
                    },
                    2 => EnrollAuth::Renewal {
                        cert_der: r.bytes("cert")?,
                        signature: r.bytes("signature")?,
                    },
                    other => return Err(DecodeError::UnknownValue("auth", other)),
                };
                Message::CertRequest { csr_der, auth }
            }
            tag::CERT_ISSUED => Message::CertIssued {
                cert_der: r.bytes("cert")?,
                ca_cert_der: r.bytes("ca_cert")?,
                next_nonce: r.array("next_nonce")?,
            },
            tag::SUBMIT_OPEN => Message::SubmitOpen {
                sid: r.text("sid")?,
                cert_der: r.bytes("cert")?,
                chain: r.list("chain")?,
                client_nonce: r.array("client_nonce")?,
            },
            tag::SESSION_OFFER => {
                let server_nonce = r.array("server_nonce")?;
                let wrapped_key = r.bytes("wrapped_key")?;
                let bb_chain = r.list("bb_chain")?;
                if bb_chain.is_empty() {
                    return Err(DecodeError::EmptyList("bb_chain"));
                }
                Message::SessionOffer {
                    server_nonce,
                    wrapped_key,
                    bb_chain,
                    signature: r.bytes("signature")?,
                }
            }
            tag::SIGNED_RECEIPT => Message::SignedReceipt {
                receipt_id: r.u64("receipt_id")?,
                serial_hex: r.text("serial")?,
                signed_receipt: r.bytes("signed_receipt")?,
            },
            tag::REPORT => Message::Report {
                cipher: CipherId::from_byte(r.u8("cipher")?)?,
                iv: r.array("iv")?,
                ciphertext: r.bytes("ciphertext")?,
                mac: r.array("mac")?,
            },
            tag::SUBMIT_OPEN_3 => Message::SubmitOpen3 {
                version: r.u16("version")?,
                sid: r.text("sid")?,
                cert_der: r.bytes("cert")?,
                chain: r.list("chain")?,
                client_nonce: r.array("client_nonce")?,
                intent: Intent::from_byte(r.u8("intent")?)?,
            },
            tag::FILE_ANNOUNCE => Message::FileAnnounce {
                assignment: r.text("assignment")?,
                file_name: r.text("file_name")?,
                size: r.u64("size")?,
                sha256: r.array("sha256")?,
                cipher: match r.u8("cipher")? {
                    1 => CipherId::Aes256Ctr,
                    // RC4 is a report cipher only: never offered for files.
                    other => return Err(DecodeError::UnknownCipher(other)),
                },
                iv: r.array("iv")?,
                mac: r.array("mac")?,
            },
            tag::UPLOAD_READY => Message::UploadReady {
                chunk_max: r.u32("chunk_max")?,
            },
            tag::CHUNK => Message::Chunk {
                seq: r.u64("seq")?,
                ciphertext: r.bytes("ciphertext")?,
                mac: r.array("mac")?,
            },
            tag::UPLOAD_DONE => Message::UploadDone {
                chunks: r.u64("chunks")?,
                mac: r.array("mac")?,
            },
            tag::STATUS_REQUEST => Message::StatusRequest {
                mac: r.array("mac")?,
            },
            tag::STATUS_PART => Message::StatusPart {
                seq: r.u64("seq")?,
                last: r.flag("last")?,
                ciphertext: r.bytes("ciphertext")?,
                mac: r.array("mac")?,
            },
            tag::CA_HELLO_3 => Message::CaHello3 {
                version: r.u16("version")?,
                client_nonce: r.array("client_nonce")?,
                log_size: r.u64("log_size")?,
            },
            tag::CA_CHALLENGE_3 => Message::CaChallenge3 {
                version: r.u16("version")?,
                policy: EnrollPolicy::from_byte(r.u8("policy")?)?,
                nonce: r.array("nonce")?,
                ca_cert_der: r.bytes("ca_cert")?,
                log_key: r.text("log_key")?,
                signature: r.bytes("signature")?,
            },
            tag::CERT_ISSUED_3 => Message::CertIssued3 {
                cert_der: r.bytes("cert")?,
                next_nonce: r.array("next_nonce")?,
                log_entry: r.bytes("log_entry")?,
                log_proof: String::from_utf8(r.bytes("log_proof")?)
                    .map_err(|_| DecodeError::BadUtf8("log_proof"))?,
                consistency: r.bytes("consistency")?,
            },
            tag::LOG_CONSISTENCY_REQUEST => Message::LogConsistencyRequest {
                old_size: r.u64("old_size")?,
                new_size: r.u64("new_size")?,
            },
            tag::LOG_CONSISTENCY => Message::LogConsistency {
                proof: r.bytes("proof")?,
            },
            tag::ERROR => Message::Error {
                code: ErrorCode::from_u16(r.u16("code")?),
                reason: r.text("reason")?,
            },
            other => {
                return Err(match tag::version_1(other) {
                    Some(name) => DecodeError::Version1(name),
                    None => DecodeError::UnknownType(other),
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::AdmissionChallenge { .. } => "AdmissionChallenge",
            Message::AdmissionResponse { .. } => "AdmissionResponse",
            Message::CaHello { .. } => "CaHello",
            Message::CaChallenge { .. } => "CaChallenge",
            Message::CertRequest { .. } => "CertRequest",
            Message::CertIssued { .. } => "CertIssued",
            Message::Report { .. } => "Report",
            Message::SubmitOpen { .. } => "SubmitOpen",
            Message::SessionOffer { .. } => "SessionOffer",
            Message::SignedReceipt { .. } => "SignedReceipt",
            Message::SubmitOpen3 { .. } => "SubmitOpen3",
            Message::FileAnnounce { .. } => "FileAnnounce",
            Message::UploadReady { .. } => "UploadReady",
            Message::Chunk { .. } => "Chunk",
            Message::UploadDone { .. } => "UploadDone",
            Message::StatusRequest { .. } => "StatusRequest",
            Message::StatusPart { .. } => "StatusPart",
            Message::CaHello3 { .. } => "CaHello3",
            Message::CaChallenge3 { .. } => "CaChallenge3",
            Message::CertIssued3 { .. } => "CertIssued3",
            Message::LogConsistencyRequest { .. } => "LogConsistencyRequest",
            Message::LogConsistency { .. } => "LogConsistency",
            Message::Error { .. } => "Error",
        }
    }

    /// An error message.
    pub fn error(code: ErrorCode, reason: impl Into<String>) -> Message {
        Message::Error {
            code,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = Message> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            any::<[u8; 32]>().prop_map(|challenge| Message::AdmissionChallenge { challenge }),
            any::<[u8; 32]>().prop_map(|mac| Message::AdmissionResponse { mac }),
            any::<u16>().prop_map(|version| Message::CaHello { version }),
            (any::<u16>(), any::<[u8; 32]>(), any::<u64>()).prop_map(
                |(version, client_nonce, log_size)| Message::CaHello3 {
                    version,
                    client_nonce,
                    log_size
                }
            ),
            (
                any::<[u8; 32]>(),
                bytes(),
                bytes(),
                "[a-z+/0-9]{0,40}",
                bytes()
            )
                .prop_map(|(nonce, ca_cert_der, signature, log_key, consistency)| {
                    Message::CaChallenge3 {
                        version: 3,
                        policy: EnrollPolicy::Roster,
                        nonce,
                        ca_cert_der,
                        log_key,
                        signature: [signature, consistency].concat(),
                    }
                }),
            (
                bytes(),
                any::<[u8; 32]>(),
                bytes(),
                "[a-z@/0-9\n ]{0,60}",
                bytes()
            )
                .prop_map(
                    |(cert_der, next_nonce, log_entry, log_proof, consistency)| {
                        Message::CertIssued3 {
                            cert_der,
                            next_nonce,
                            log_entry,
                            log_proof,
                            consistency,
                        }
                    }
                ),
            (any::<u64>(), any::<u64>()).prop_map(|(old_size, new_size)| {
                Message::LogConsistencyRequest { old_size, new_size }
            }),
            bytes().prop_map(|proof| Message::LogConsistency { proof }),
            (
                any::<u16>(),
                prop_oneof![Just(EnrollPolicy::Open), Just(EnrollPolicy::Roster)],
                any::<[u8; 32]>()
            )
                .prop_map(|(version, policy, nonce)| Message::CaChallenge {
                    version,
                    policy,
                    nonce
                }),
            (
                bytes(),
                prop_oneof![
                    Just(EnrollAuth::Open),
                    any::<[u8; 32]>().prop_map(|mac| EnrollAuth::Code { mac }),
                    (bytes(), bytes()).prop_map(|(cert_der, signature)| EnrollAuth::Renewal {
                        cert_der,
                        signature
                    }),
                ]
            )
                .prop_map(|(csr_der, auth)| Message::CertRequest { csr_der, auth }),
            (bytes(), bytes(), any::<[u8; 32]>()).prop_map(
                |(cert_der, ca_cert_der, next_nonce)| {
                    Message::CertIssued {
                        cert_der,
                        ca_cert_der,
                        next_nonce,
                    }
                }
            ),
            (
                prop_oneof![Just(CipherId::Aes256Ctr), Just(CipherId::Rc4)],
                any::<[u8; 16]>(),
                bytes(),
                any::<[u8; 32]>()
            )
                .prop_map(|(cipher, iv, ciphertext, mac)| Message::Report {
                    cipher,
                    iv,
                    ciphertext,
                    mac
                }),
            (
                ".{0,40}",
                bytes(),
                proptest::collection::vec(bytes(), 0..3),
                any::<[u8; 32]>()
            )
                .prop_map(|(sid, cert_der, chain, client_nonce)| Message::SubmitOpen {
                    sid,
                    cert_der,
                    chain,
                    client_nonce
                }),
            (
                any::<[u8; 32]>(),
                bytes(),
                proptest::collection::vec(bytes(), 1..3),
                bytes()
            )
                .prop_map(|(server_nonce, wrapped_key, bb_chain, signature)| {
                    Message::SessionOffer {
                        server_nonce,
                        wrapped_key,
                        bb_chain,
                        signature,
                    }
                }),
            (any::<u64>(), "[0-9A-F]{0,40}", bytes()).prop_map(
                |(receipt_id, serial_hex, signed_receipt)| Message::SignedReceipt {
                    receipt_id,
                    serial_hex,
                    signed_receipt,
                }
            ),
            (
                any::<u16>(),
                ".{0,40}",
                bytes(),
                proptest::collection::vec(bytes(), 0..3),
                any::<[u8; 32]>(),
                prop_oneof![Just(Intent::Upload), Just(Intent::Status)]
            )
                .prop_map(|(version, sid, cert_der, chain, client_nonce, intent)| {
                    Message::SubmitOpen3 {
                        version,
                        sid,
                        cert_der,
                        chain,
                        client_nonce,
                        intent,
                    }
                }),
            (
                ".{0,40}",
                ".{0,80}",
                any::<u64>(),
                any::<[u8; 32]>(),
                any::<[u8; 16]>(),
                any::<[u8; 32]>()
            )
                .prop_map(|(assignment, file_name, size, sha256, iv, mac)| {
                    Message::FileAnnounce {
                        assignment,
                        file_name,
                        size,
                        sha256,
                        cipher: CipherId::Aes256Ctr,
                        iv,
                        mac,
                    }
                }),
            any::<u32>().prop_map(|chunk_max| Message::UploadReady { chunk_max }),
            (any::<u64>(), bytes(), any::<[u8; 32]>()).prop_map(|(seq, ciphertext, mac)| {
                Message::Chunk {
                    seq,
                    ciphertext,
                    mac,
                }
            }),
            (any::<u64>(), any::<[u8; 32]>())
                .prop_map(|(chunks, mac)| Message::UploadDone { chunks, mac }),
            any::<[u8; 32]>().prop_map(|mac| Message::StatusRequest { mac }),
            (any::<u64>(), any::<bool>(), bytes(), any::<[u8; 32]>()).prop_map(
                |(seq, last, ciphertext, mac)| Message::StatusPart {
                    seq,
                    last,
                    ciphertext,
                    mac,
                }
            ),
            (
                prop_oneof![
                    Just(ErrorCode::Malformed),
                    Just(ErrorCode::BadMac),
                    Just(ErrorCode::Limit),
                    Just(ErrorCode::LegacyDisabled),
                    Just(ErrorCode::CodeUsed),
                    Just(ErrorCode::SubmissionsClosed),
                    Just(ErrorCode::UnsupportedVersion)
                ],
                ".{0,80}"
            )
                .prop_map(|(code, reason)| Message::Error { code, reason }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(msg in arb_message()) {
            prop_assert_eq!(Message::decode(&msg.encode()), Ok(msg));
        }

        #[test]
        fn decode_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&payload);
        }

        #[test]
        fn every_strict_prefix_is_refused(msg in arb_message()) {
            let wire = msg.encode();
            for cut in 0..wire.len() {
                prop_assert!(Message::decode(&wire[..cut]).is_err());
            }
        }
    }

    #[test]
    fn a_session_offer_without_a_certificate_is_refused() {
        let wire = Message::SessionOffer {
            server_nonce: [7; 32],
            wrapped_key: vec![1, 2],
            bb_chain: vec![vec![3]],
            signature: vec![4],
        }
        .encode();
        // Drop the one chain entry (count byte to 0, its 5 bytes out).
        let count_at = 1 + 32 + 4 + 2;
        let mut empty = wire[..count_at].to_vec();
        empty.push(0);
        empty.extend_from_slice(&wire[count_at + 1 + 5..]);
        assert_eq!(
            Message::decode(&empty),
            Err(DecodeError::EmptyList("bb_chain"))
        );
    }

    #[test]
    fn a_submit_open_is_its_own_encoding() {
        // Blackboard signs the hello's bytes as received; decoding then
        // encoding gives them back, so re-encoding could never disagree.
        let open = Message::SubmitOpen {
            sid: "1155000001".into(),
            cert_der: vec![0x30, 0],
            chain: vec![vec![1], vec![]],
            client_nonce: [9; 32],
        };
        let wire = open.encode();
        assert_eq!(wire[0], 0x24);
        assert_eq!(Message::decode(&wire).map(|m| m.encode()), Ok(wire));
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut wire = Message::CaHello { version: 2 }.encode();
        wire.push(0);
        assert_eq!(Message::decode(&wire), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn refuses_oversized_inner_length() {
        let wire = [tag::CERT_REQUEST, 0xff, 0xff, 0xff, 0x7f, 1, 2];
        assert_eq!(Message::decode(&wire), Err(DecodeError::Truncated("csr")));
    }

    /// Version 1's messages are recognised by their type byte alone,
    /// whatever follows, and decode to nothing but that.
    #[test]
    fn version_1_messages_are_recognised_and_refused() {
        let csr = [0x10, 1, 0, 0, 0, 0x30];
        assert_eq!(
            Message::decode(&csr),
            Err(DecodeError::Version1("EnrollRequest"))
        );
        for (t, name) in [
            (0x10, "EnrollRequest"),
            (0x11, "EnrollResponse"),
            (0x20, "SubmitHello"),
            (0x21, "SessionKey"),
            (0x23, "Receipt"),
        ] {
            assert_eq!(Message::decode(&[t]), Err(DecodeError::Version1(name)));
            assert_eq!(
                Message::decode(&[t, 0xff, 0xff]),
                Err(DecodeError::Version1(name))
            );
        }
        // Neighbours are not.
        assert_eq!(
            Message::decode(&[0x16]),
            Err(DecodeError::UnknownType(0x16))
        );
        assert_eq!(
            Message::decode(&[0x27]),
            Err(DecodeError::UnknownType(0x27))
        );
    }

    #[test]
    fn an_unknown_auth_or_policy_is_malformed() {
        let mut wire = Message::CertRequest {
            csr_der: vec![1],
            auth: EnrollAuth::Open,
        }
        .encode();
        *wire.last_mut().unwrap() = 3;
        assert_eq!(
            Message::decode(&wire),
            Err(DecodeError::UnknownValue("auth", 3))
        );
        let mut wire = Message::CaChallenge {
            version: 2,
            policy: EnrollPolicy::Roster,
            nonce: [0; 32],
        }
        .encode();
        wire[3] = 2;
        assert_eq!(
            Message::decode(&wire),
            Err(DecodeError::UnknownValue("policy", 2))
        );
    }

    #[test]
    fn every_error_code_survives_the_wire() {
        for v in 1..=19u16 {
            let code = ErrorCode::from_u16(v);
            // 8 is Internal, and so is anything unknown.
            assert_eq!(code as u16, v);
            let wire = Message::error(code, "r").encode();
            assert_eq!(
                Message::decode(&wire),
                Ok(Message::Error {
                    code,
                    reason: "r".into()
                })
            );
        }
        // A code from a later server is read as 8, as PROTOCOL.md asks.
        assert_eq!(ErrorCode::from_u16(20), ErrorCode::Internal);
    }

    /// Version 3's values outside their sets make the message invalid:
    /// RC4 for a file, an intent other than 1 or 2.
    #[test]
    fn version_3_refuses_rc4_files_and_unknown_intents() {
        let announce = Message::FileAnnounce {
            assignment: "lab".into(),
            file_name: "a.pdf".into(),
            size: 3,
            sha256: [1; 32],
            cipher: CipherId::Aes256Ctr,
            iv: [2; 16],
            mac: [3; 32],
        };
        let mut wire = announce.encode();
        let cipher_at = 1 + 2 + 3 + 2 + 5 + 8 + 32;
        assert_eq!(wire[cipher_at], 1);
        wire[cipher_at] = 2;
        assert_eq!(Message::decode(&wire), Err(DecodeError::UnknownCipher(2)));
        let open = Message::SubmitOpen3 {
            version: 3,
            sid: "1155000001".into(),
            cert_der: vec![0x30, 0],
            chain: vec![],
            client_nonce: [9; 32],
            intent: Intent::Upload,
        };
        let mut wire = open.encode();
        assert_eq!(wire[0], 0x40);
        for bad in [0u8, 3, 0xff] {
            *wire.last_mut().unwrap() = bad;
            assert_eq!(
                Message::decode(&wire),
                Err(DecodeError::UnknownValue("intent", bad))
            );
        }
        // Its own encoding: Blackboard signs the hello as received.
        assert_eq!(
            Message::decode(&open.encode()).map(|m| m.encode()),
            Ok(open.encode())
        );
    }

    #[test]
    fn legacy_commands_are_not_our_messages() {
        for cmd in [b"1", b"2", b"q", b"Q"] {
            assert!(matches!(
                Message::decode(cmd),
                Err(DecodeError::UnknownType(_))
            ));
        }
    }
}
