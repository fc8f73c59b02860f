//! Every refusal of our protocol as a typed error, and the one place where
//! errors become wire codes (rustls `error/mod.rs`: `impl From<&..> for
//! AlertDescription`) and where each error is found to be the server's
//! fault or the peer's ([`ServerFault`]). Every error enum is mapped
//! variant by variant, so that a new variant has to be placed on purpose.
//! Legacy mode answers in text, without codes (`legacy::LegacyError`), but
//! asks the same [`ServerFault`] question.

use std::error::Error;
use std::fmt;

use crate::ca::CaError;
use crate::course::{Closed, Refusal, RenewalError};
use crate::message::{DecodeError, ErrorCode};
use crate::store::StoreError;
use crate::verify::CertError;

use super::admission::AdmissionError;
use super::blackboard::UploadError;
use super::submission::{CertCheckError, ReportError};
use super::Expired;

/// What a peer is told when the store is down, restarting or not
/// answering in time (code 19, [`ErrorCode::StoreUnavailable`]): nothing
/// was recorded, and the same request may succeed in a moment. It begins
/// with the store's own [`crate::store::STORE_UNAVAILABLE`] so that a client from before
/// code 19, which reads 19 as 8, still finds the words it knew.
pub(crate) const STORE_UNAVAILABLE_REASON: &str =
    "store unavailable: nothing was acknowledged (the \
     server's database is not answering, so nothing was recorded); try again in a minute";

/// Whether an error is the server's own failure rather than anything the
/// peer did or sent. A server fault is answered with [`ErrorCode::Internal`]
/// and only what was being done; its cause goes to the log. A peer's fault
/// is a refusal that says why. Each error decides this variant by variant,
/// here, never by comparing wire codes.
pub trait ServerFault {
    /// `true` when the server failed, `false` when the peer is refused.
    fn is_server_fault(&self) -> bool;
}

/// Why a session refused, closing the connection. The `Display` text is
/// the reason sent to the peer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame is not a valid message.
    Malformed(DecodeError),
    /// A valid message that the exchange does not allow at this point.
    Unexpected {
        /// The message's name.
        got: &'static str,
        /// What the connection is waiting for.
        expecting: &'static str,
    },
    /// The first frame is a legacy lab-client command, and legacy mode is off.
    LegacyDisabled {
        /// The frame, as text (for the log).
        first: String,
    },
    /// The admission challenge was not answered rightly.
    Admission(AdmissionError),
    /// An enrollment request came to a listener that is not a CA.
    NotACa,
    /// The CA refused the CSR.
    Enrollment(CaError),
    /// Blackboard refused the certificate.
    Certificate {
        /// The SID claimed.
        sid: String,
        /// Why.
        source: CertCheckError,
    },
    /// Blackboard refused the report.
    Report {
        /// The student's (verified) SID.
        sid: String,
        /// Why.
        source: ReportError,
    },
    /// A time limit was reached before the exchange finished.
    Expired(Expired),
    /// `CaHello` named a version this server does not speak.
    UnsupportedVersion {
        /// The version asked for.
        got: u16,
    },
    /// A log consistency proof asked between sizes the log cannot prove.
    LogRange {
        /// The smaller size asked.
        old: u64,
        /// The larger size asked.
        new: u64,
        /// The tree's size now.
        size: u64,
    },
    /// A message of protocol version 1 (`EnrollRequest`, `SubmitHello`...),
    /// which this server no longer serves, whenever it arrives.
    Version1 {
        /// The message's name (for the log).
        got: &'static str,
    },
    /// The course's rules refused an enrollment.
    Course {
        /// The SID the CSR names.
        sid: String,
        /// Which rule.
        source: Refusal,
    },
    /// A report outside the submission window.
    Closed(Closed),
    /// A submission its assignment's times refuse (not yet open, closed).
    Deadline(crate::assignment::Refused),
    /// A submission from a student removed from the roster (`roster
    /// remove`) while a roster is in force: her certificates no longer
    /// submit.
    Dropped {
        /// Her SID.
        sid: String,
    },
    /// The report is recorded, but its signed receipt could not be made:
    /// the server's failure, which the student must hear with her receipt
    /// id (she can ask for the receipt by it).
    ReceiptNotSigned {
        /// The recorded report's receipt id.
        receipt_id: u64,
        /// Why signing failed (for the log).
        source: openssl::error::ErrorStack,
    },
    /// Blackboard refused a version 3 exchange (an upload's announcement,
    /// chunks or end, or the version itself).
    Upload {
        /// The SID claimed.
        sid: String,
        /// Why.
        source: super::blackboard::UploadError,
    },
    /// The store could not be reached (down, restarting, or not
    /// answering within the loop's bound): this one request is refused,
    /// nothing was recorded, the next may find it back. What was being
    /// done and the store's error go to the log.
    StoreUnavailable(Internal),
    /// The server failed; the details go to the log only.
    Internal(Internal),
}

impl ProtocolError {
    /// A CA refusal, or an internal error when the fault is the server's.
    pub(super) fn enrollment(e: CaError) -> ProtocolError {
        if e.is_server_fault() {
            ProtocolError::Internal(Internal::new("issuance", e))
        } else {
            ProtocolError::Enrollment(e)
        }
    }

    /// The store failed while `what` was being done. The database down or
    /// restarting refuses this one request saying so (code 19; the next
    /// may find it back); anything else is an internal error.
    pub(super) fn store(what: &'static str, e: StoreError) -> ProtocolError {
        if matches!(e, StoreError::Unavailable(_)) {
            ProtocolError::StoreUnavailable(Internal::new(what, e))
        } else {
            ProtocolError::Internal(Internal::new(what, e))
        }
    }

    /// A certificate refusal, or an internal error when the server could
    /// not decide.
    pub(super) fn certificate(sid: &str, e: CertCheckError) -> ProtocolError {
        if !e.is_server_fault() {
            return ProtocolError::Certificate {
                sid: sid.to_string(),
                source: e,
            };
        }
        // The database is down or restarting: this one request is refused,
        // saying so; the next may find it back.
        if matches!(e, CertCheckError::Store(StoreError::Unavailable(_))) {
            ProtocolError::StoreUnavailable(Internal::new("certificate check", e))
        } else {
            ProtocolError::Internal(Internal::new("certificate check", e))
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed(e) => write!(f, "malformed message: {e}"),
            ProtocolError::Unexpected { got, expecting } => {
                write!(
                    f,
                    "unexpected {got} message: this connection is {expecting}"
                )
            }
            ProtocolError::LegacyDisabled { .. } => write!(
                f,
                "this server does not speak the legacy lab protocol (legacy mode is off)"
            ),
            ProtocolError::Admission(e) => write!(f, "{e}"),
            ProtocolError::NotACa => write!(f, "this listener is not a CA"),
            ProtocolError::Enrollment(e) => write!(f, "enrollment refused: {e}"),
            ProtocolError::Certificate { source, .. } => write!(f, "{source}"),
            ProtocolError::Report { source, .. } => write!(f, "{source}"),
            ProtocolError::Expired(e) => write!(f, "{e}"),
            ProtocolError::UnsupportedVersion { got } => write!(
                f,
                "protocol version {got} is not served by this server; it speaks versions 2 and \
                 3: upgrade the client"
            ),
            ProtocolError::LogRange { old, new, size } => write!(
                f,
                "no consistency proof from {old} to {new} entries: the log holds {size} \
                 (the old size must not exceed the new, nor the new the log's)"
            ),
            ProtocolError::Version1 { .. } => write!(
                f,
                "protocol version 1 is no longer served: this server speaks version 2 \
                 (PROTOCOL.md); upgrade the client"
            ),
            ProtocolError::Course { sid, source } => write!(f, "SID {sid}: {source}"),
            ProtocolError::Closed(e) => write!(f, "{e}"),
            ProtocolError::Deadline(e) => write!(f, "{e}"),
            ProtocolError::Dropped { sid } => write!(
                f,
                "SID {sid} is not on the course roster (removed by the instructor): her \
                 certificate no longer submits; nothing was recorded (ask the instructor)"
            ),
            ProtocolError::ReceiptNotSigned { receipt_id, .. } => write!(
                f,
                "internal error: the report is recorded under receipt {receipt_id}, but the \
                 signed receipt could not be made"
            ),
            ProtocolError::Upload { source, .. } => write!(f, "{source}"),
            ProtocolError::StoreUnavailable(_) => f.write_str(STORE_UNAVAILABLE_REASON),
            ProtocolError::Internal(e) => write!(f, "{e}"),
        }
    }
}

impl Error for ProtocolError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ProtocolError::Malformed(e) => Some(e),
            ProtocolError::Enrollment(e) => Some(e),
            ProtocolError::Certificate { source, .. } => Some(source),
            ProtocolError::Report { source, .. } => Some(source),
            ProtocolError::Course { source, .. } => Some(source),
            ProtocolError::Closed(e) => Some(e),
            ProtocolError::Deadline(e) => Some(e),
            ProtocolError::ReceiptNotSigned { source, .. } => Some(source),
            ProtocolError::Internal(e) | ProtocolError::StoreUnavailable(e) => e.source(),
            ProtocolError::Upload { source, .. } => Some(source),
            ProtocolError::Unexpected { .. }
            | ProtocolError::LegacyDisabled { .. }
            | ProtocolError::Admission(_)
            | ProtocolError::NotACa
            | ProtocolError::Expired(_)
            | ProtocolError::UnsupportedVersion { .. }
            | ProtocolError::Dropped { .. }
            | ProtocolError::LogRange { .. }
            | ProtocolError::Version1 { .. } => None,
        }
    }
}

/// A failure on the server's side: the peer learns only what was being
/// done, the log gets the cause.
#[derive(Debug)]
pub struct Internal {
    what: &'static str,
    source: Box<dyn Error + Send + Sync>,
}

impl Internal {
    pub(super) fn new(what: &'static str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Internal {
            what,
            source: source.into(),
        }
    }

    /// What was being done.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The log line: what was being done, and the cause.
    pub(super) fn logged(&self) -> String {
        format!("{}: {}", self.what, self.source)
    }
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "internal error: {}", self.what)
    }
}

impl Error for Internal {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Why a record a session made could not be committed, as the connection
/// waiting for it is told ([`commit_refusal`]). Nothing of the record was
/// kept, so nothing was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitRefusal {
    /// The enrollment code the certificate was to consume was consumed
    /// meanwhile (two requests raced with one code, or it was reissued):
    /// the student's answer, not the server's failure.
    CodeUsed {
        /// The SID whose code it was.
        sid: String,
    },
    /// The certificate a renewal rested on was revoked (or superseded by
    /// another renewal) meanwhile: no certificate grows from a revoked one.
    RenewedRevoked {
        /// The SID.
        sid: String,
        /// The certificate renewed.
        serial: crate::ca::Serial,
    },
    /// An enrollment code guess did not fit its bounds, so it was neither
    /// counted nor checked: the caller's answer, with when to try again
    /// (the store's text).
    TooManyGuesses(String),
    /// The database is down or restarting; the next request may find it
    /// back.
    Unavailable,
    /// The store failed otherwise (the cause is logged where it failed).
    Failed,
}

impl fmt::Display for CommitRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitRefusal::CodeUsed { sid } => write!(f, "SID {sid}: {}", Refusal::CodeUsed),
            CommitRefusal::RenewedRevoked { sid, serial } => write!(
                f,
                "SID {sid}: renewal refused: the current certificate (serial {serial}) was \
                 revoked while it was being renewed; a revoked student needs a new enrollment code"
            ),
            CommitRefusal::TooManyGuesses(why) => f.write_str(why),
            CommitRefusal::Unavailable => f.write_str(STORE_UNAVAILABLE_REASON),
            CommitRefusal::Failed => write!(
                f,
                "internal error: could not record the result; nothing was acknowledged"
            ),
        }
    }
}

impl Error for CommitRefusal {}

// Whose fault each error is, variant by variant.

impl ServerFault for CertError {
    fn is_server_fault(&self) -> bool {
        match self {
            // OpenSSL failing in our own process decides nothing about the
            // certificate presented.
            CertError::Internal(_) => true,
            CertError::Malformed
            | CertError::Path { .. }
            | CertError::IsCa
            | CertError::NotClientAuth
            | CertError::SidMismatch { .. }
            | CertError::NotRsa
            | CertError::WeakRsaExponent
            | CertError::NotIssued(_)
            | CertError::Revoked { .. } => false,
        }
    }
}

impl ServerFault for CaError {
    fn is_server_fault(&self) -> bool {
        match self {
            // The root's files, the store's serials and OpenSSL are the
            // server's business.
            CaError::Io { .. }
            | CaError::BadPassphrase(_)
            | CaError::WeakPassphrase
            | CaError::HalfRoot { .. }
            | CaError::RootMismatch(_)
            | CaError::UnsafeKeys(_)
            | CaError::BadSerial(_)
            | CaError::BadBlackboardName(_)
            | CaError::BlackboardCert { .. }
            | CaError::BadPublicUrl(_)
            | CaError::Crypto(_) => true,
            // Everything else is about the CSR.
            CaError::MalformedCsr(_)
            | CaError::UnsupportedSignature(_)
            | CaError::CsrSignature
            | CaError::MissingCn
            | CaError::BadSid(_)
            | CaError::UnsupportedKey(_) => false,
        }
    }
}

impl ServerFault for CertCheckError {
    fn is_server_fault(&self) -> bool {
        match self {
            CertCheckError::Rejected(e) => e.is_server_fault(),
            CertCheckError::NotBlackboard | CertCheckError::Store(_) => true,
            CertCheckError::BadSid(_)
            | CertCheckError::ChainTooLong(_)
            | CertCheckError::TooLarge { .. }
            | CertCheckError::Unvouched { .. }
            | CertCheckError::NotLegacy { .. } => false,
        }
    }
}

impl ServerFault for ProtocolError {
    fn is_server_fault(&self) -> bool {
        match self {
            ProtocolError::Internal(_)
            | ProtocolError::StoreUnavailable(_)
            | ProtocolError::ReceiptNotSigned { .. } => true,
            // Built by `enrollment` and `certificate` only for the peer's
            // faults; asked again so that the answer never depends on that.
            ProtocolError::Enrollment(e) => e.is_server_fault(),
            ProtocolError::Certificate { source, .. } => source.is_server_fault(),
            ProtocolError::Malformed(_)
            | ProtocolError::Unexpected { .. }
            | ProtocolError::LegacyDisabled { .. }
            | ProtocolError::Admission(_)
            | ProtocolError::NotACa
            | ProtocolError::Report { .. }
            | ProtocolError::Expired(_)
            | ProtocolError::UnsupportedVersion { .. }
            | ProtocolError::LogRange { .. }
            | ProtocolError::Version1 { .. }
            | ProtocolError::Course { .. }
            | ProtocolError::Upload { .. }
            | ProtocolError::Closed(_)
            | ProtocolError::Dropped { .. }
            | ProtocolError::Deadline(_) => false,
        }
    }
}

impl ServerFault for CommitRefusal {
    fn is_server_fault(&self) -> bool {
        match self {
            CommitRefusal::CodeUsed { .. }
            | CommitRefusal::RenewedRevoked { .. }
            | CommitRefusal::TooManyGuesses(_) => false,
            CommitRefusal::Unavailable | CommitRefusal::Failed => true,
        }
    }
}

// What each error is on the wire (PROTOCOL.md lists the codes). A server
// fault is always `Internal`, or `StoreUnavailable` when the store could
// not be reached.

impl From<&CertError> for ErrorCode {
    fn from(e: &CertError) -> ErrorCode {
        match e {
            CertError::Internal(_) => ErrorCode::Internal,
            // Every verifier refusal is about the certificate.
            CertError::Malformed
            | CertError::Path { .. }
            | CertError::IsCa
            | CertError::NotClientAuth
            | CertError::SidMismatch { .. }
            | CertError::NotRsa
            | CertError::WeakRsaExponent
            | CertError::NotIssued(_)
            | CertError::Revoked { .. } => ErrorCode::BadCertificate,
        }
    }
}

/// The code of a store error that refused a read the exchange needed:
/// the database unreachable is "try again shortly", anything else the
/// server's failure (a read never meets the commit's refusals, and would
/// be the server's fault if it did).
fn store_read_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
        StoreError::Io { .. }
        | StoreError::Sqlite(_)
        | StoreError::Incompatible(_)
        | StoreError::Duplicate(_)
        | StoreError::Postgres(_)
        | StoreError::NotFound(_)
        | StoreError::CodeUsed { .. }
        | StoreError::RenewedRevoked { .. }
        | StoreError::TooManyGuesses { .. }
        | StoreError::Log(_) => ErrorCode::Internal,
    }
}

/// The metrics label of a refusal by its wire code: the one place a
/// refusal gets its name on `/metrics` (a fixed set, so a peer cannot grow
/// the number of series).
pub fn refusal_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Malformed => "malformed",
        ErrorCode::UnexpectedMessage => "unexpected_message",
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::BadCertificate => "bad_certificate",
        ErrorCode::BadMac => "bad_mac",
        ErrorCode::Limit => "limit",
        ErrorCode::AdmissionRefused => "admission_refused",
        ErrorCode::Internal => "internal",
        ErrorCode::LegacyDisabled => "legacy_disabled",
        ErrorCode::UnsupportedVersion => "unsupported_version",
        ErrorCode::NotOnRoster => "not_on_roster",
        ErrorCode::CodeRequired => "code_required",
        ErrorCode::WrongCode => "wrong_code",
        ErrorCode::CodeUsed => "code_used",
        ErrorCode::TooManyGuesses => "too_many_guesses",
        ErrorCode::RenewalRefused => "renewal_refused",
        ErrorCode::SubmissionsClosed => "submissions_closed",
        ErrorCode::Unvouched => "unvouched",
        ErrorCode::StoreUnavailable => "store_unavailable",
    }
}

impl From<&CaError> for ErrorCode {
    fn from(e: &CaError) -> ErrorCode {
        match e {
            CaError::Io { .. }
            | CaError::BadPassphrase(_)
            | CaError::WeakPassphrase
            | CaError::HalfRoot { .. }
            | CaError::RootMismatch(_)
            | CaError::UnsafeKeys(_)
            | CaError::BadSerial(_)
            | CaError::BadBlackboardName(_)
            | CaError::BlackboardCert { .. }
            | CaError::BadPublicUrl(_)
            | CaError::Crypto(_) => ErrorCode::Internal,
            // Every refusal of the CA's is about the CSR.
            CaError::MalformedCsr(_)
            | CaError::UnsupportedSignature(_)
            | CaError::CsrSignature
            | CaError::MissingCn
            | CaError::BadSid(_)
            | CaError::UnsupportedKey(_) => ErrorCode::BadRequest,
        }
    }
}

impl From<&CertCheckError> for ErrorCode {
    fn from(e: &CertCheckError) -> ErrorCode {
        match e {
            CertCheckError::Rejected(e) => ErrorCode::from(e),
            CertCheckError::TooLarge { .. } => ErrorCode::Limit,
            CertCheckError::NotBlackboard => ErrorCode::Internal,
            CertCheckError::Store(e) => store_read_code(e),
            CertCheckError::Unvouched { .. } => ErrorCode::Unvouched,
            CertCheckError::BadSid(_)
            | CertCheckError::ChainTooLong(_)
            | CertCheckError::NotLegacy { .. } => ErrorCode::BadCertificate,
        }
    }
}

impl From<&ReportError> for ErrorCode {
    fn from(e: &ReportError) -> ErrorCode {
        match e {
            ReportError::BadMac => ErrorCode::BadMac,
            ReportError::TooLarge => ErrorCode::Limit,
            ReportError::NotUtf8 | ReportError::Text(_) => ErrorCode::BadRequest,
        }
    }
}

impl From<&AdmissionError> for ErrorCode {
    fn from(e: &AdmissionError) -> ErrorCode {
        match e {
            AdmissionError::Wrong
            | AdmissionError::NotAnswered { .. }
            | AdmissionError::Silent(_) => ErrorCode::AdmissionRefused,
        }
    }
}

impl From<&ProtocolError> for ErrorCode {
    fn from(e: &ProtocolError) -> ErrorCode {
        match e {
            ProtocolError::Malformed(_) => ErrorCode::Malformed,
            ProtocolError::Unexpected { .. } | ProtocolError::NotACa => {
                ErrorCode::UnexpectedMessage
            }
            ProtocolError::LegacyDisabled { .. } => ErrorCode::LegacyDisabled,
            ProtocolError::Admission(e) => ErrorCode::from(e),
            ProtocolError::Enrollment(e) => ErrorCode::from(e),
            ProtocolError::Certificate { source, .. } => ErrorCode::from(source),
            ProtocolError::Report { source, .. } => ErrorCode::from(source),
            ProtocolError::Expired(_) => ErrorCode::Limit,
            ProtocolError::UnsupportedVersion { .. } | ProtocolError::Version1 { .. } => {
                ErrorCode::UnsupportedVersion
            }
            ProtocolError::LogRange { .. } => ErrorCode::BadRequest,
            ProtocolError::Course { source, .. } => ErrorCode::from(source),
            // Version 2 clients know code 17 only: every assignment
            // refusal is 17, its text naming the assignment and the time.
            ProtocolError::Closed(_) | ProtocolError::Deadline(_) => ErrorCode::SubmissionsClosed,
            ProtocolError::Dropped { .. } => ErrorCode::NotOnRoster,
            ProtocolError::Upload { source, .. } => ErrorCode::from(source),
            ProtocolError::StoreUnavailable(_) => ErrorCode::StoreUnavailable,
            ProtocolError::ReceiptNotSigned { .. } | ProtocolError::Internal(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl From<&UploadError> for ErrorCode {
    fn from(e: &UploadError) -> ErrorCode {
        match e {
            UploadError::Upgrade | UploadError::Version(_) => ErrorCode::UnsupportedVersion,
            UploadError::StatusTooLarge { .. }
            | UploadError::TooLarge { .. }
            | UploadError::TooManyInProgress { .. } => ErrorCode::Limit,
            UploadError::UnknownAssignment(_)
            | UploadError::FileName(_)
            | UploadError::HashMismatch => ErrorCode::BadRequest,
            UploadError::BadMac(_) => ErrorCode::BadMac,
            UploadError::Sequence { .. } | UploadError::Incomplete { .. } => {
                ErrorCode::UnexpectedMessage
            }
            UploadError::ChunkSize { .. } | UploadError::Overrun { .. } => ErrorCode::Malformed,
        }
    }
}

impl From<&Refusal> for ErrorCode {
    fn from(r: &Refusal) -> ErrorCode {
        match r {
            Refusal::NotOnRoster => ErrorCode::NotOnRoster,
            Refusal::CodeRequired => ErrorCode::CodeRequired,
            Refusal::WrongCode | Refusal::NoRoster => ErrorCode::WrongCode,
            Refusal::CodeUsed => ErrorCode::CodeUsed,
            Refusal::Renewal(RenewalError::Unvouched { .. }) => ErrorCode::Unvouched,
            Refusal::Renewal(_) => ErrorCode::RenewalRefused,
        }
    }
}

impl From<&CommitRefusal> for ErrorCode {
    fn from(e: &CommitRefusal) -> ErrorCode {
        match e {
            CommitRefusal::CodeUsed { .. } => ErrorCode::from(&Refusal::CodeUsed),
            CommitRefusal::RenewedRevoked { .. } => ErrorCode::RenewalRefused,
            CommitRefusal::TooManyGuesses(_) => ErrorCode::TooManyGuesses,
            CommitRefusal::Unavailable => ErrorCode::StoreUnavailable,
            CommitRefusal::Failed => ErrorCode::Internal,
        }
    }
}

/// What a connection is told when its record could not be committed. A
/// code consumed meanwhile is the student's answer, code 14; the store
/// unreachable is code 19 (try again shortly); anything else is the
/// server's failure.
pub fn commit_refusal(e: &StoreError) -> CommitRefusal {
    match e {
        StoreError::CodeUsed { sid } => CommitRefusal::CodeUsed { sid: sid.clone() },
        StoreError::RenewedRevoked { sid, serial } => CommitRefusal::RenewedRevoked {
            sid: sid.clone(),
            serial: serial.clone(),
        },
        e @ StoreError::TooManyGuesses { .. } => CommitRefusal::TooManyGuesses(e.to_string()),
        StoreError::Unavailable(_) => CommitRefusal::Unavailable,
        StoreError::Io { .. }
        | StoreError::Sqlite(_)
        | StoreError::Incompatible(_)
        | StoreError::Duplicate(_)
        | StoreError::Postgres(_)
        | StoreError::NotFound(_)
        | StoreError::Log(_) => CommitRefusal::Failed,
    }
}

// Connection-level errors: what the reactor refuses a connection for,
// outside any session's exchange (framing, limits, load, the worker pool
// and the group commit). The reactor builds the value; the wire code is
// decided here.

/// Why the reactor refused a connection (or a request on it) itself. The
/// `Display` text is the reason sent to the peer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The byte stream is not a valid sequence of frames.
    BadFrame(crate::framing::FrameError),
    /// The connection sent more than its byte limit.
    TooManyBytes {
        /// The limit (`--max-conn-bytes`).
        limit: u64,
    },
    /// The connection sent more than its message limit.
    TooManyMessages {
        /// The limit (`--max-messages`).
        limit: u32,
    },
    /// The reactor's budget of buffered input (every connection's unread
    /// bytes) is spent.
    Overloaded {
        /// The budget (`--max-buffered`).
        max_buffered: usize,
    },
    /// The listener is at its limit of connections.
    TooManyConnections,
    /// The process has no file descriptor left to serve with.
    OutOfDescriptors,
    /// The worker pool's queue is full.
    WorkersBusy {
        /// How many jobs may wait.
        queue: usize,
    },
    /// A session asked for off-loop work, and this server has no pool.
    NoWorkers,
    /// The store refused to commit the connection's record.
    Commit(StoreError),
    /// The connection to the database was lost during the commit: the
    /// record may or may not be durable.
    CommitOutcomeUnknown,
    /// The writer thread is gone: the record may or may not be durable.
    WriterLost,
    /// The server is stopping (SIGTERM, SIGINT): what it had acknowledged
    /// is committed; this exchange is cut off and may be tried again.
    ShuttingDown,
}

impl ConnectionError {
    /// Whether the server failed (rather than the peer asking too much or
    /// the server being busy): logged as an error, not a refusal.
    pub fn is_server_fault(&self) -> bool {
        match self {
            ConnectionError::BadFrame(_)
            | ConnectionError::TooManyBytes { .. }
            | ConnectionError::TooManyMessages { .. }
            | ConnectionError::Overloaded { .. }
            | ConnectionError::TooManyConnections
            | ConnectionError::OutOfDescriptors
            | ConnectionError::WorkersBusy { .. }
            | ConnectionError::ShuttingDown => false,
            ConnectionError::Commit(e) => commit_is_server_fault(e),
            ConnectionError::NoWorkers
            | ConnectionError::CommitOutcomeUnknown
            | ConnectionError::WriterLost => true,
        }
    }

    /// Its HTTP status, on the HTTP listeners (decided here, beside its
    /// wire code): a request too large or malformed is the client's, the
    /// server busy or its store unreachable is 503 (it passes by itself),
    /// the server's failure 500.
    pub fn http_status(&self) -> u16 {
        match self {
            ConnectionError::TooManyBytes { .. } => 413,
            ConnectionError::BadFrame(_) | ConnectionError::TooManyMessages { .. } => 400,
            ConnectionError::Overloaded { .. }
            | ConnectionError::TooManyConnections
            | ConnectionError::OutOfDescriptors
            | ConnectionError::WorkersBusy { .. }
            | ConnectionError::ShuttingDown => 503,
            ConnectionError::Commit(e) => match commit_refusal(e) {
                CommitRefusal::Unavailable => 503,
                CommitRefusal::CodeUsed { .. }
                | CommitRefusal::RenewedRevoked { .. }
                | CommitRefusal::TooManyGuesses(_)
                | CommitRefusal::Failed => 500,
            },
            ConnectionError::NoWorkers
            | ConnectionError::CommitOutcomeUnknown
            | ConnectionError::WriterLost => 500,
        }
    }

    /// Whole seconds an HTTP client should wait before trying again
    /// (`Retry-After`), for the store unreachable: the engine's own next
    /// reconnect, and at least a second.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ConnectionError::Commit(StoreError::Unavailable(u)) => {
                let d = u.retry_in;
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            // A restart under a service manager takes seconds.
            ConnectionError::ShuttingDown => Some(5),
            ConnectionError::BadFrame(_)
            | ConnectionError::TooManyBytes { .. }
            | ConnectionError::TooManyMessages { .. }
            | ConnectionError::Overloaded { .. }
            | ConnectionError::TooManyConnections
            | ConnectionError::OutOfDescriptors
            | ConnectionError::WorkersBusy { .. }
            | ConnectionError::NoWorkers
            | ConnectionError::Commit(_)
            | ConnectionError::CommitOutcomeUnknown
            | ConnectionError::WriterLost => None,
        }
    }

    /// The whole `Error` frame, for a connection that has no session (a
    /// refusal at accept).
    pub fn frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        crate::framing::encode(
            &crate::message::Message::error(ErrorCode::from(self), self.to_string()).encode(),
            &mut out,
        );
        out
    }
}

/// Whether a store error that refused a commit is the server's failure:
/// every one but a code spent meanwhile (two requests raced with one code,
/// or it was reissued), a renewed certificate revoked meanwhile, and a
/// guess over its bounds, which are the caller's answers.
fn commit_is_server_fault(e: &StoreError) -> bool {
    match e {
        StoreError::CodeUsed { .. }
        | StoreError::RenewedRevoked { .. }
        | StoreError::TooManyGuesses { .. } => false,
        StoreError::Io { .. }
        | StoreError::Sqlite(_)
        | StoreError::Incompatible(_)
        | StoreError::Duplicate(_)
        | StoreError::Postgres(_)
        | StoreError::NotFound(_)
        | StoreError::Unavailable(_)
        | StoreError::Log(_) => true,
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::BadFrame(e) => write!(f, "bad frame: {e}"),
            ConnectionError::TooManyBytes { limit } => {
                write!(f, "connection sent more than {limit} bytes")
            }
            ConnectionError::TooManyMessages { limit } => {
                write!(f, "more than {limit} messages on one connection")
            }
            ConnectionError::Overloaded { max_buffered } => write!(
                f,
                "server busy: more than {max_buffered} bytes of unfinished frames in flight"
            ),
            ConnectionError::TooManyConnections => {
                write!(f, "server busy: too many connections, try again later")
            }
            ConnectionError::OutOfDescriptors => {
                write!(f, "server busy: out of file descriptors, try again later")
            }
            ConnectionError::WorkersBusy { queue } => write!(
                f,
                "server busy: {queue} requests are already waiting for work that cannot run on \
                 the event loop (a legacy enrollment's key, a staff page or login); try again in a \
                 moment"
            ),
            ConnectionError::NoWorkers => {
                write!(f, "internal error: this server has no worker pool")
            }
            ConnectionError::Commit(e @ StoreError::CodeUsed { .. })
            | ConnectionError::Commit(e @ StoreError::RenewedRevoked { .. }) => {
                write!(f, "{}", commit_refusal(e))
            }
            ConnectionError::Commit(e @ StoreError::TooManyGuesses { .. }) => write!(f, "{e}"),
            ConnectionError::Commit(StoreError::Unavailable(_)) => {
                f.write_str(STORE_UNAVAILABLE_REASON)
            }
            ConnectionError::Commit(e) if crate::store::is_storage_full(e) => f.write_str(
                "storage is full: the server could not record this; nothing was acknowledged \
                 (tell the instructor)",
            ),
            ConnectionError::Commit(_) => write!(
                f,
                "internal error: could not record the result; nothing was acknowledged"
            ),
            ConnectionError::CommitOutcomeUnknown => write!(
                f,
                "internal error: the connection to the database was lost during the commit; \
                 the result may or may not have been recorded"
            ),
            ConnectionError::WriterLost => write!(
                f,
                "internal error: the server lost its database writer; the result may or may \
                 not have been recorded"
            ),
            ConnectionError::ShuttingDown => write!(
                f,
                "server shutting down: this exchange was cut off (what was acknowledged is \
                 recorded); try again in a moment"
            ),
        }
    }
}

impl Error for ConnectionError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ConnectionError::BadFrame(e) => Some(e),
            ConnectionError::Commit(e) => Some(e),
            ConnectionError::TooManyBytes { .. }
            | ConnectionError::TooManyMessages { .. }
            | ConnectionError::Overloaded { .. }
            | ConnectionError::TooManyConnections
            | ConnectionError::OutOfDescriptors
            | ConnectionError::WorkersBusy { .. }
            | ConnectionError::NoWorkers
            | ConnectionError::CommitOutcomeUnknown
            | ConnectionError::WriterLost
            | ConnectionError::ShuttingDown => None,
        }
    }
}

impl From<&ConnectionError> for ErrorCode {
    fn from(e: &ConnectionError) -> ErrorCode {
        match e {
            ConnectionError::BadFrame(_) => ErrorCode::Malformed,
            ConnectionError::TooManyBytes { .. }
            | ConnectionError::TooManyMessages { .. }
            | ConnectionError::Overloaded { .. }
            | ConnectionError::TooManyConnections
            | ConnectionError::OutOfDescriptors
            | ConnectionError::WorkersBusy { .. }
            | ConnectionError::ShuttingDown => ErrorCode::Limit,
            ConnectionError::Commit(e) => ErrorCode::from(&commit_refusal(e)),
            ConnectionError::NoWorkers
            | ConnectionError::CommitOutcomeUnknown
            | ConnectionError::WriterLost => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::STORE_UNAVAILABLE;

    fn unavailable() -> StoreError {
        StoreError::Unavailable(crate::store::Unavailable {
            target: "test@db".into(),
            outcome_unknown: false,
            retry_in: std::time::Duration::ZERO,
            source: None,
        })
    }

    /// A server fault is `Internal` on the wire (or `StoreUnavailable`,
    /// the server's failure that passes by itself) and the peer's fault
    /// never is: the two questions are answered apart, so they are checked
    /// against each other on a value of every variant that has a fault of
    /// its own.
    #[test]
    fn a_server_fault_and_only_a_server_fault_is_internal() {
        fn agree(e: &(impl ServerFault + fmt::Debug), code: ErrorCode) {
            let servers = matches!(code, ErrorCode::Internal | ErrorCode::StoreUnavailable);
            assert_eq!(e.is_server_fault(), servers, "{e:?}");
        }
        let crypto = || openssl::error::ErrorStack::get();
        for e in [
            CaError::Crypto(crypto()),
            CaError::WeakPassphrase,
            CaError::CsrSignature,
            CaError::MissingCn,
        ] {
            agree(&e, ErrorCode::from(&e));
        }
        for e in [
            CertError::Internal(crate::verify::OpensslFailure(crypto())),
            CertError::Malformed,
            CertError::IsCa,
            CertError::NotIssued(crate::ca::Serial::from_der_integer(&[1])),
        ] {
            agree(&e, ErrorCode::from(&e));
        }
        for e in [
            CertCheckError::Rejected(CertError::Internal(crate::verify::OpensslFailure(crypto()))),
            CertCheckError::Rejected(CertError::NotRsa),
            CertCheckError::NotBlackboard,
            CertCheckError::Store(unavailable()),
            CertCheckError::ChainTooLong(9),
            CertCheckError::TooLarge { len: 1 << 20 },
            CertCheckError::NotLegacy {
                serial: crate::ca::Serial::from_der_integer(&[1]),
            },
        ] {
            agree(&e, ErrorCode::from(&e));
        }
        for e in [
            ProtocolError::enrollment(CaError::Crypto(crypto())),
            ProtocolError::enrollment(CaError::MissingCn),
            ProtocolError::certificate("x", CertCheckError::Store(unavailable())),
            ProtocolError::certificate("x", CertCheckError::ChainTooLong(9)),
            ProtocolError::ReceiptNotSigned {
                receipt_id: 7,
                source: crypto(),
            },
            ProtocolError::NotACa,
            ProtocolError::Version1 { got: "SubmitHello" },
        ] {
            agree(&e, ErrorCode::from(&e));
        }
        for e in [
            commit_refusal(&StoreError::CodeUsed { sid: "x".into() }),
            commit_refusal(&unavailable()),
            commit_refusal(&StoreError::Duplicate("serial 01".into())),
        ] {
            agree(&e, ErrorCode::from(&e));
        }
    }

    /// What a connection hears when its record was not committed: the
    /// same code and text as before the refusal was typed.
    #[test]
    fn commit_refusals_say_what_is_known() {
        let used = commit_refusal(&StoreError::CodeUsed {
            sid: "alice".into(),
        });
        assert_eq!(ErrorCode::from(&used), ErrorCode::CodeUsed);
        assert_eq!(
            used.to_string(),
            format!("SID alice: {}", Refusal::CodeUsed)
        );
        let down = commit_refusal(&unavailable());
        assert_eq!(ErrorCode::from(&down), ErrorCode::StoreUnavailable);
        assert_eq!(down.to_string(), STORE_UNAVAILABLE_REASON);
        let failed = commit_refusal(&StoreError::Incompatible("test".into()));
        assert_eq!(
            (ErrorCode::from(&failed), failed.to_string().as_str()),
            (
                ErrorCode::Internal,
                "internal error: could not record the result; nothing was acknowledged"
            )
        );
    }

    #[test]
    fn the_server_fault_is_internal_the_peers_is_not() {
        let crypto = CaError::Crypto(openssl::error::ErrorStack::get());
        assert_eq!(ErrorCode::from(&crypto), ErrorCode::Internal);
        assert_eq!(
            ErrorCode::from(&CaError::CsrSignature),
            ErrorCode::BadRequest
        );
        let e = ProtocolError::enrollment(crypto);
        assert_eq!(ErrorCode::from(&e), ErrorCode::Internal);
        // The peer learns what failed, not why.
        assert_eq!(e.to_string(), "internal error: issuance");
        let e = ProtocolError::enrollment(CaError::MissingCn);
        assert_eq!(ErrorCode::from(&e), ErrorCode::BadRequest);
        assert!(e.to_string().starts_with("enrollment refused: "), "{e}");
        let store = CertCheckError::NotBlackboard;
        assert_eq!(ErrorCode::from(&store), ErrorCode::Internal);
        let revoked = CertCheckError::Rejected(CertError::Revoked {
            serial: crate::ca::Serial::from_der_integer(&[1]),
            reason: Some(crate::ca::RevocationReason::Superseded),
        });
        assert_eq!(ErrorCode::from(&revoked), ErrorCode::BadCertificate);
        assert_eq!(ErrorCode::from(&ReportError::BadMac), ErrorCode::BadMac);
        assert_eq!(ErrorCode::from(&ReportError::TooLarge), ErrorCode::Limit);
    }

    /// The store unreachable is code 19 whichever step met it (a read on
    /// the loop, the certificate check, the commit), its reason the same
    /// words, and still the server's fault (logged as such); any other
    /// store failure stays code 8.
    #[test]
    fn the_store_unavailable_is_code_19_wherever_it_is_met() {
        // An older client reads 19 as 8 and still finds the words it knew.
        assert!(STORE_UNAVAILABLE_REASON.starts_with(STORE_UNAVAILABLE));
        assert!(STORE_UNAVAILABLE_REASON.contains("nothing was recorded"));
        assert!(STORE_UNAVAILABLE_REASON.contains("try again"));
        assert_eq!(
            refusal_label(ErrorCode::StoreUnavailable),
            "store_unavailable"
        );

        let read = ProtocolError::store("reading the roster", unavailable());
        assert!(
            matches!(read, ProtocolError::StoreUnavailable(_)),
            "{read:?}"
        );
        assert_eq!(ErrorCode::from(&read), ErrorCode::StoreUnavailable);
        assert_eq!(read.to_string(), STORE_UNAVAILABLE_REASON);
        assert!(read.is_server_fault());
        let broken =
            ProtocolError::store("reading the roster", StoreError::Incompatible("x".into()));
        assert_eq!(ErrorCode::from(&broken), ErrorCode::Internal);
        assert_eq!(broken.to_string(), "internal error: reading the roster");

        let check = ProtocolError::certificate("x", CertCheckError::Store(unavailable()));
        assert_eq!(ErrorCode::from(&check), ErrorCode::StoreUnavailable);
        assert_eq!(check.to_string(), STORE_UNAVAILABLE_REASON);
        assert_eq!(
            ErrorCode::from(&CertCheckError::Store(unavailable())),
            ErrorCode::StoreUnavailable
        );
        let check = ProtocolError::certificate(
            "x",
            CertCheckError::Store(StoreError::Incompatible("x".into())),
        );
        assert_eq!(ErrorCode::from(&check), ErrorCode::Internal);
        assert_eq!(check.to_string(), "internal error: certificate check");

        let commit = ConnectionError::Commit(unavailable());
        assert_eq!(ErrorCode::from(&commit), ErrorCode::StoreUnavailable);
        assert_eq!(commit.to_string(), STORE_UNAVAILABLE_REASON);
        assert!(commit.is_server_fault());
        let lost = ConnectionError::CommitOutcomeUnknown;
        assert_eq!(ErrorCode::from(&lost), ErrorCode::Internal);
    }

    /// Over HTTP the store unreachable is 503 with when to try again, like
    /// a busy server, never 500; every other status is as it was.
    #[test]
    fn http_statuses_of_connection_errors() {
        let later = |ms| {
            ConnectionError::Commit(StoreError::Unavailable(crate::store::Unavailable {
                target: "test@db".into(),
                outcome_unknown: false,
                retry_in: std::time::Duration::from_millis(ms),
                source: None,
            }))
        };
        let cases = [
            (ConnectionError::Commit(unavailable()), 503, Some(1)),
            (later(1500), 503, Some(2)),
            (later(3000), 503, Some(3)),
            (ConnectionError::TooManyBytes { limit: 1 }, 413, None),
            (ConnectionError::TooManyMessages { limit: 1 }, 400, None),
            (ConnectionError::Overloaded { max_buffered: 1 }, 503, None),
            (ConnectionError::TooManyConnections, 503, None),
            (ConnectionError::OutOfDescriptors, 503, None),
            (ConnectionError::WorkersBusy { queue: 1 }, 503, None),
            (ConnectionError::NoWorkers, 500, None),
            (
                ConnectionError::Commit(StoreError::CodeUsed { sid: "x".into() }),
                500,
                None,
            ),
            (
                ConnectionError::Commit(StoreError::Duplicate("x".into())),
                500,
                None,
            ),
            (ConnectionError::CommitOutcomeUnknown, 500, None),
            (ConnectionError::WriterLost, 500, None),
        ];
        for (e, status, retry) in cases {
            assert_eq!((e.http_status(), e.retry_after()), (status, retry), "{e}");
        }
    }

    /// Version 3's refusals, each on its documented code (PROTOCOL.md
    /// V3.2).
    #[test]
    fn upload_refusals_carry_their_codes() {
        let cases = [
            (UploadError::Upgrade, ErrorCode::UnsupportedVersion),
            (UploadError::Version(4), ErrorCode::UnsupportedVersion),
            (UploadError::StatusTooLarge { len: 1 }, ErrorCode::Limit),
            (UploadError::TooLarge { size: 2, max: 1 }, ErrorCode::Limit),
            (
                UploadError::UnknownAssignment("x".into()),
                ErrorCode::BadRequest,
            ),
            (UploadError::HashMismatch, ErrorCode::BadRequest),
            (
                UploadError::FileName(crate::filename::FileNameError::Dots),
                ErrorCode::BadRequest,
            ),
            (UploadError::BadMac("chunk"), ErrorCode::BadMac),
            (
                UploadError::Sequence { got: 2, want: 1 },
                ErrorCode::UnexpectedMessage,
            ),
            (
                UploadError::Incomplete {
                    received: 1,
                    size: 2,
                    chunks: 1,
                    claimed: 1,
                },
                ErrorCode::UnexpectedMessage,
            ),
            (UploadError::ChunkSize { len: 1 }, ErrorCode::Malformed),
            (UploadError::Overrun { size: 1 }, ErrorCode::Malformed),
            (UploadError::TooManyInProgress { max: 4 }, ErrorCode::Limit),
        ];
        for (e, code) in cases {
            assert_eq!(ErrorCode::from(&e), code, "{e}");
            let refused = ProtocolError::Upload {
                sid: "x".into(),
                source: e,
            };
            assert_eq!(ErrorCode::from(&refused), code);
            assert!(!refused.is_server_fault());
        }
    }

    #[test]
    fn version_1_is_refused_with_code_10_and_what_to_do() {
        let e = ProtocolError::Version1 { got: "SubmitHello" };
        assert_eq!(ErrorCode::from(&e), ErrorCode::UnsupportedVersion);
        assert_eq!(
            e.to_string(),
            "protocol version 1 is no longer served: this server speaks version 2 \
             (PROTOCOL.md); upgrade the client"
        );
    }
}
