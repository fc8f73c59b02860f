//! The checks every submission goes through, whichever protocol it came
//! by (ours or legacy): the certificate ([`check_certificate`]), the MAC
//! (`check_mac`, in constant time, before anything is decrypted), the
//! report's text ([`check_report_text`]), then the receipt id and the
//! record (`PendingReport::accept`). Each protocol computes its own MAC
//! and decrypts in its own way; what it decides with them is decided here.

use std::fmt;

use openssl::error::ErrorStack;

use crate::ca::Serial;
use crate::crypto;
use crate::sid::{self, SidError};
use crate::store::{CertStatus, Origin, ReportRecord, StoreError};
use crate::time::now_unix;
use crate::verify::{CertError, Student, MAX_CHAIN};

use super::Shared;

/// Why [`check_certificate`] did not accept.
#[derive(Debug)]
#[non_exhaustive]
pub enum CertCheckError {
    /// The SID claimed is not a valid SID.
    BadSid(SidError),
    /// More chain certificates than [`MAX_CHAIN`].
    ChainTooLong(usize),
    /// A certificate (the student's or one of the chain) over
    /// [`MAX_CERT_DER`] bytes: refused by its size alone, before it is
    /// parsed.
    TooLarge {
        /// Its size, in bytes.
        len: usize,
    },
    /// The certificate does not hold up, or is not (or no longer) one the
    /// CA stands behind.
    Rejected(CertError),
    /// A certificate issued to a certboard client was presented by the
    /// legacy protocol, which proves no key.
    NotLegacy {
        /// Its serial.
        serial: Serial,
    },
    /// A roster is in force and no enrollment code vouches for this
    /// certificate (open enrollment before the roster, or a renewal of
    /// one): whoever enrolled it never proved to be the student.
    Unvouched {
        /// Its serial.
        serial: Serial,
    },
    /// This listener has no verifier (not Blackboard): the server's fault.
    NotBlackboard,
    /// The store could not say: the server's fault.
    Store(StoreError),
}

impl fmt::Display for CertCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertCheckError::BadSid(e) => write!(f, "bad SID: {e}"),
            CertCheckError::ChainTooLong(n) => write!(
                f,
                "too many chain certificates ({n}; at most {MAX_CHAIN})"
            ),
            CertCheckError::TooLarge { len } => write!(
                f,
                "the certificate is {len} bytes; at most {MAX_CERT_DER} are accepted \
                 (a student certificate is under 2 KiB)"
            ),
            CertCheckError::Rejected(e) => write!(f, "{e}"),
            CertCheckError::NotLegacy { serial } => write!(
                f,
                "certificate serial {serial} was issued to a certboard client, which must submit \
                 with its own key; the legacy protocol is only for certificates issued by legacy mode"
            ),
            CertCheckError::Unvouched { serial } => write!(f, "{}", crate::course::Unvouched(serial)),
            CertCheckError::NotBlackboard => write!(f, "this listener is not Blackboard"),
            CertCheckError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for CertCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CertCheckError::BadSid(e) => Some(e),
            CertCheckError::Rejected(e) => Some(e),
            CertCheckError::Store(e) => Some(e),
            CertCheckError::ChainTooLong(_)
            | CertCheckError::TooLarge { .. }
            | CertCheckError::NotLegacy { .. }
            | CertCheckError::Unvouched { .. }
            | CertCheckError::NotBlackboard => None,
        }
    }
}

/// Largest certificate accepted at Blackboard, in bytes of DER, for the
/// student's certificate and each chain certificate alike. The certificates
/// CUHK issues are under 2 KiB (an RSA-4096 key's included). Parsing a
/// certificate costs more than linearly in its number of extensions (one of
/// 16 KiB of them took ~0.7 ms of loop time, one of 60 KiB ~7 ms, one of
/// 900 KiB ~60 ms: bench/worst-case.sh), so anything over 8 KiB is refused
/// by its size before it is parsed.
pub const MAX_CERT_DER: usize = 8 * 1024;

/// Checks a certificate for a SID against the root and the store. A
/// submission by the legacy protocol (`by = Origin::Legacy`) proves no key,
/// only that the submitter holds the certificate, which is public: so it is
/// accepted only for certificates issued to legacy clients, never for a
/// certboard student's.
pub fn check_certificate(
    shared: &mut Shared,
    sid: &str,
    cert_der: &[u8],
    chain: &[Vec<u8>],
    by: Origin,
) -> Result<Student, CertCheckError> {
    // Sizes first: nothing is parsed before they are known to be sane.
    if chain.len() > MAX_CHAIN {
        return Err(CertCheckError::ChainTooLong(chain.len()));
    }
    if let Some(len) = std::iter::once(cert_der)
        .chain(chain.iter().map(Vec::as_slice))
        .map(<[u8]>::len)
        .find(|&len| len > MAX_CERT_DER)
    {
        return Err(CertCheckError::TooLarge { len });
    }
    sid::validate(sid).map_err(CertCheckError::BadSid)?;
    let verifier = shared
        .verifier
        .as_ref()
        .ok_or(CertCheckError::NotBlackboard)?;
    let student = verifier
        .verify(sid, cert_der, chain)
        .map_err(CertCheckError::Rejected)?;
    match standing(shared, &student.serial)? {
        origin if by == Origin::Legacy && origin != Origin::Legacy => {
            Err(CertCheckError::NotLegacy {
                serial: student.serial,
            })
        }
        _ => Ok(student),
    }
}

/// The CA's records on a certificate: the protocol it was issued by when it
/// is good, else why it is not (never issued, revoked, unvouched while a
/// roster is in force, or the store failed). Whether a roster exists is
/// read only for an unvouched certificate, which is rare.
fn standing(shared: &mut Shared, serial: &Serial) -> Result<Origin, CertCheckError> {
    match shared.store.cert_status(serial) {
        Ok(CertStatus::Good {
            origin,
            vouched: true,
        }) => Ok(origin),
        Ok(CertStatus::Good {
            origin,
            vouched: false,
        }) => match shared.store.enrollment_view("") {
            Ok(v) if v.roster_on => Err(CertCheckError::Unvouched {
                serial: serial.clone(),
            }),
            Ok(_) => Ok(origin),
            Err(e) => Err(CertCheckError::Store(e)),
        },
        Ok(CertStatus::Unknown) => Err(CertCheckError::Rejected(CertError::NotIssued(
            serial.clone(),
        ))),
        Ok(CertStatus::Revoked { reason, .. }) => {
            Err(CertCheckError::Rejected(CertError::Revoked {
                serial: serial.clone(),
                reason,
            }))
        }
        Err(e) => Err(CertCheckError::Store(e)),
    }
}

/// Checks again, when the report arrives, that the certificate the session
/// was opened under is still good: a revocation made after the hello takes
/// effect on sessions already open (one store lookup). Every protocol's
/// report path calls this after its MAC check and before it decrypts or
/// records anything.
pub(super) fn check_still_good<K>(
    shared: &mut Shared,
    pending: &PendingReport<K>,
) -> Result<(), CertCheckError> {
    standing(shared, &pending.serial).map(|_| ())
}

/// Refuses a submission from a student no longer on the roster (`roster
/// remove`) while a roster is in force, read from the store per
/// submission like the assignment's times. Her certificates still prove
/// who she is (her status is still answered); they no longer hand in.
pub(super) fn check_on_roster(shared: &mut Shared, sid: &str) -> Result<(), super::ProtocolError> {
    match shared.store.enrollment_view(sid) {
        Ok(v) if v.roster_on && !v.on_roster => Err(super::ProtocolError::Dropped {
            sid: sid.to_string(),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(super::ProtocolError::store("reading the roster", e)),
    }
}

/// Why a report was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReportError {
    /// The MAC does not verify: the report was altered, or the key is wrong.
    BadMac,
    /// Over [`MAX_REPORT`] bytes.
    TooLarge,
    /// The decrypted report is not UTF-8.
    NotUtf8,
    /// The text is not acceptable.
    Text(ReportTextError),
}

impl ReportError {
    /// The log line, shorter than the peer's reason.
    pub(super) fn logged(&self) -> String {
        match self {
            ReportError::BadMac => "MAC does not verify".to_string(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::BadMac => write!(
                f,
                "report refused: the MAC does not verify (the report was altered or the key is wrong)"
            ),
            ReportError::TooLarge => write!(f, "report over {MAX_REPORT} bytes"),
            ReportError::NotUtf8 => write!(f, "report refused: not UTF-8 text"),
            ReportError::Text(e) => write!(f, "report refused: {e}"),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Text(e) => Some(e),
            ReportError::BadMac | ReportError::TooLarge | ReportError::NotUtf8 => None,
        }
    }
}

/// Compares a submission's MAC with the one expected, in constant time.
/// Every protocol calls this before it decrypts or reads anything else of
/// the report.
pub(super) fn check_mac(expected: &[u8], got: &[u8]) -> Result<(), ReportError> {
    if crypto::ct_eq(expected, got) {
        Ok(())
    } else {
        Err(ReportError::BadMac)
    }
}

/// Largest report accepted, in bytes.
pub const MAX_REPORT: usize = 64 * 1024;

/// Why a report's text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportTextError {
    /// Over [`MAX_REPORT`] bytes.
    TooLong,
    /// A control character other than newline and tab.
    ControlChar(char),
}

impl fmt::Display for ReportTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportTextError::TooLong => write!(f, "the report is over {MAX_REPORT} bytes"),
            ReportTextError::ControlChar(c) => {
                write!(f, "it contains the control character {c:?}")
            }
        }
    }
}

impl std::error::Error for ReportTextError {}

/// Checks a report's text before it is stored and printed: at most
/// [`MAX_REPORT`] bytes and no control characters but newline and tab (the
/// text is shown on the operator's terminal).
pub fn check_report_text(text: &str) -> Result<(), ReportTextError> {
    if text.len() > MAX_REPORT {
        return Err(ReportTextError::TooLong);
    }
    match text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        Some(c) => Err(ReportTextError::ControlChar(c)),
        None => Ok(()),
    }
}

/// A verified student between the session key and her report, with the
/// protocol's keys for it (`K`, never logged).
pub(super) struct PendingReport<K> {
    pub(super) sid: String,
    pub(super) serial: Serial,
    pub(super) keys: K,
}

impl<K> fmt::Debug for PendingReport<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are secret: never logged.
        f.debug_struct("PendingReport")
            .field("sid", &self.sid)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl<K> PendingReport<K> {
    pub(super) fn new(student: Student, keys: K) -> Self {
        PendingReport {
            sid: student.sid,
            serial: student.serial,
            keys,
        }
    }

    /// The record of her report, checked, under a fresh receipt id.
    pub(super) fn accept(self, text: String, origin: Origin) -> Result<ReportRecord, ErrorStack> {
        let receipt_id = u64::from_le_bytes(crypto::random::<8>()?) >> 1;
        Ok(ReportRecord {
            receipt_id,
            sid: self.sid,
            serial: self.serial,
            received_at: now_unix(),
            text,
            origin,
            assignment: crate::store::DEFAULT_ASSIGNMENT.to_string(),
            late_by: None,
        })
    }
}
