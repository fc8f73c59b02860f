//! The student's side: make her key and CSR, enroll with the CA, then submit
//! the report to Blackboard. The pieces are public so that tests, the load
//! generator and the adversary can drive single steps.
//!
//! This parent owns what its children share (the options, the error, the
//! run loop) and decides what is exported; one child per concern:
//! `transport` (connecting, frames, timeouts), `enrollment` (the CA
//! exchange and saved credentials), `submission` (the Blackboard exchange
//! and receipts), `pin` (trusting the root) and `files` (the out-dir's
//! layout and its writes).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use openssl::error::ErrorStack;

use crate::course::code::EnrollCode;
use crate::crypto;
use crate::framing::FrameError;
use crate::message::{CipherId, DecodeError, ErrorCode, Message};
use crate::receipt::ReceiptError;
use crate::sid::SidError;
use crate::verify::{BlackboardCertError, CertError};

mod enrollment;
mod files;
mod pin;
mod submission;
mod transport;

pub use enrollment::{
    check_certificate, code_auth, make_csr, make_key, read_codes, renewal_auth, CaSession,
    CertAnswer, CodesFileError,
};
pub use pin::{pin_root, RootPin, ROOT_FINGERPRINT_FILE};
pub use submission::{check_receipt, submit, verify_offer, BlackboardTrust, Expected, Receipt};
pub use transport::FramedStream;

use enrollment::{enroll_student, load_saved};
use files::{write_file, Files};

/// The student's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// RSA, 2048-bit modulus (the default).
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
}

impl KeyType {
    fn bits(self) -> u32 {
        match self {
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa3072 => 3072,
        }
    }
}

/// The report cipher, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cipher {
    /// AES-256 in counter mode (the default).
    #[value(name = "aes-256-ctr")]
    Aes256Ctr,
    /// RC4 (the lab's cipher; weak, kept for the lab).
    Rc4,
}

impl From<Cipher> for CipherId {
    fn from(c: Cipher) -> CipherId {
        match c {
            Cipher::Aes256Ctr => CipherId::Aes256Ctr,
            Cipher::Rc4 => CipherId::Rc4,
        }
    }
}

/// Why a student's run failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The server refused, with its reason.
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's reason.
        reason: String,
    },
    /// The server's bytes are not a frame.
    Frame(FrameError),
    /// The server's frame is not a message.
    Decode(DecodeError),
    /// The server sent something the protocol does not allow here.
    Protocol(String),
    /// What the CA returned does not hold up.
    BadCertificate(String),
    /// The certificate the CA returned fails the check Blackboard will make.
    Certificate(CertError),
    /// A SID given to the client is not a valid SID.
    BadSid {
        /// The SID as given.
        sid: String,
        /// Why it is not valid.
        source: SidError,
    },
    /// What answered as Blackboard did not prove it is Blackboard: its
    /// certificate is refused. Nothing was decrypted or sent after it.
    NotBlackboard(BlackboardCertError),
    /// Blackboard's signature over this exchange does not verify (an
    /// impostor, or a signature replayed from another session). Nothing
    /// was decrypted or sent after it.
    BadOfferSignature,
    /// The signed receipt does not hold up.
    Receipt(ReceiptError),
    /// The CA presented a root other than the one pinned on first use (or
    /// by --ca-fingerprint).
    RootChanged {
        /// The fingerprint pinned.
        pinned: String,
        /// The fingerprint presented.
        presented: String,
        /// Where the pin is kept (none for --ca-fingerprint).
        file: Option<PathBuf>,
    },
    /// OpenSSL failed.
    Crypto(ErrorStack),
    /// A network step got no answer in time.
    Timeout {
        /// What was being done.
        what: String,
        /// How long it waited.
        after: Duration,
    },
    /// The peer's bytes are not certboard's protocol at all.
    NotCertboard {
        /// The address.
        peer: String,
        /// What was wrong with its first bytes.
        why: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { what, source } => write!(f, "{what}: {source}"),
            ClientError::Refused { reason, .. } => {
                write!(
                    f,
                    "refused by the server: {}",
                    crate::escape::escaped(reason)
                )
            }
            ClientError::Frame(e) => write!(f, "protocol error: {e}"),
            ClientError::Decode(e) => write!(f, "protocol error: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
            ClientError::BadCertificate(m) => write!(f, "bad certificate from the CA: {m}"),
            ClientError::Certificate(e) => write!(f, "bad certificate from the CA: {e}"),
            ClientError::BadSid { sid, source } => write!(f, "SID {sid:?}: {source}"),
            ClientError::NotBlackboard(e) => write!(
                f,
                "refusing to submit: the server did not prove it is Blackboard: {e}; nothing was sent"
            ),
            ClientError::BadOfferSignature => write!(
                f,
                "refusing to submit: Blackboard's signature over this exchange does not verify \
                 (an impostor, or a signature replayed from another session); nothing was sent"
            ),
            ClientError::Receipt(e) => write!(f, "bad receipt: {e}"),
            ClientError::RootChanged {
                pinned,
                presented,
                file,
            } => {
                write!(
                    f,
                    "the CA presented a different root (SHA-256 {presented}) from the one pinned \
                     (SHA-256 {pinned}); someone may be impersonating the CA. Compare both with \
                     the fingerprint your instructor published"
                )?;
                match file {
                    Some(p) => write!(
                        f,
                        "; only if the course really changed its root, delete {} and run again",
                        p.display()
                    ),
                    None => write!(f, " (--ca-fingerprint)"),
                }
            }
            ClientError::Crypto(e) => write!(f, "OpenSSL error: {e}"),
            ClientError::Timeout { what, after } => write!(
                f,
                "{what}: timed out after {} s without an answer (--timeout SECS to wait longer)",
                after.as_secs()
            ),
            ClientError::NotCertboard { peer, why } => write!(
                f,
                "{peer} does not speak the certboard protocol ({why}): check the address and port"
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            ClientError::Frame(e) => Some(e),
            ClientError::Decode(e) => Some(e),
            ClientError::Certificate(e) => Some(e),
            ClientError::BadSid { source, .. } => Some(source),
            ClientError::Crypto(e) => Some(e),
            ClientError::NotBlackboard(e) => Some(e),
            ClientError::Receipt(e) => Some(e),
            ClientError::Refused { .. }
            | ClientError::Protocol(_)
            | ClientError::BadCertificate(_)
            | ClientError::Timeout { .. }
            | ClientError::NotCertboard { .. }
            | ClientError::BadOfferSignature
            | ClientError::RootChanged { .. } => None,
        }
    }
}

impl From<ErrorStack> for ClientError {
    fn from(e: ErrorStack) -> Self {
        ClientError::Crypto(e)
    }
}

fn io_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Io { what, source }
}

/// The error for a message that does not belong at this step; a challenge
/// means the server wants an admission secret we were not given.
fn unexpected(expected: &str, got: &Message) -> ClientError {
    match got {
        Message::AdmissionChallenge { .. } => ClientError::Protocol(
            "the server requires admission control: give the shared secret with --admission-secret-file".into(),
        ),
        other => ClientError::Protocol(format!("expected {expected}, got {}", other.name())),
    }
}

/// Everything a run of the client needs besides the SIDs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// CA address.
    pub ca: String,
    /// Blackboard address.
    pub blackboard: String,
    /// Where each student's files go.
    pub out_dir: PathBuf,
    /// Her key type.
    pub key_type: KeyType,
    /// The report cipher.
    pub cipher: CipherId,
    /// How the root is pinned: --ca-cert, --ca-fingerprint, or on first
    /// use in `<out_dir>/root-fingerprint`.
    pub root_pin: RootPin,
    /// The name Blackboard's certificate must carry (--blackboard-name).
    pub blackboard_name: String,
    /// Always make a new key and enroll again (by renewal when her saved
    /// certificate is still good).
    pub renew: bool,
    /// Enrollment codes by SID, for first enrollments.
    pub codes: HashMap<String, EnrollCode>,
    /// Admission-control secret.
    pub admission_secret: Option<Vec<u8>>,
    /// Timeout of every network step.
    pub timeout: Duration,
}

/// Runs steps 1–6 for one SID, reporting each step through `progress`.
pub fn run_student(
    opts: &ClientOptions,
    sid: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Receipt, ClientError> {
    crate::sid::validate(sid).map_err(|source| ClientError::BadSid {
        sid: sid.to_string(),
        source,
    })?;
    let files = Files {
        dir: opts.out_dir.join(sid),
    };
    let pinned_cert = match &opts.root_pin {
        RootPin::Cert(c) => Some(c),
        _ => None,
    };
    let saved = match load_saved(&files, sid, pinned_cert) {
        Ok(s) => Some(s),
        Err(why) if files.dir.exists() => {
            progress(&format!("not reusing saved credentials: {why}"));
            None
        }
        Err(_) => None,
    };
    let reused = saved.is_some() && !opts.renew;
    let (key, cert_der, root) = match saved {
        Some((key, der, root)) if !opts.renew => {
            // The saved root must still be the pinned one.
            pin_root(&root.to_der()?, &opts.root_pin, progress)?;
            progress(&format!(
                "steps 1-2: reusing her key and valid certificate from {}",
                files.dir.display()
            ));
            (key, der, root)
        }
        saved => {
            // With --renew, a saved certificate still good is renewed by
            // proving possession of its key.
            let current = saved.map(|(key, der, _)| (key, der));
            // Her directory first: a certificate whose key cannot be saved
            // would be issued for nothing. One made here is removed again
            // if the enrollment fails, so a refusal leaves nothing behind.
            let made_dir = !files.dir.exists();
            crate::fsutil::create_private_dir_all(&files.dir)
                .map_err(io_ctx(format!("creating {}", files.dir.display())))?;
            let enrolled = enroll_student(opts, sid, &files, current, progress);
            if enrolled.is_err() && made_dir {
                let _ = fs::remove_dir(&files.dir);
            }
            enrolled?
        }
    };
    let trust = BlackboardTrust {
        root,
        name: opts.blackboard_name.clone(),
    };
    let mut conn = FramedStream::connect(&opts.blackboard, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    let report = crypto::lab_report(sid);
    let submitted = submit(
        &mut conn,
        sid,
        &cert_der,
        &key,
        opts.cipher,
        &report,
        &trust,
        progress,
    );
    let receipt = match submitted {
        Err(ClientError::Refused {
            code: ErrorCode::BadCertificate,
            reason,
        }) if reused => Err(ClientError::Refused {
            code: ErrorCode::BadCertificate,
            reason: format!("{reason} (it was her saved certificate: --renew enrolls again)"),
        }),
        Err(ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason,
        }) if reason.contains("CaHello") => Err(ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason: format!(
                "{reason} ({} is the CA, not Blackboard: the ports look swapped; --blackboard \
                 is Blackboard's address)",
                opts.blackboard
            ),
        }),
        other => other,
    }?;
    let dir = files.receipts();
    fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("{}.p7m", receipt.receipt_id));
    write_file(&path, &receipt.signed_receipt, 0o644)?;
    progress(&format!(
        "Blackboard acknowledged: receipt {} (certificate serial {}), signed by Blackboard; \
         report SHA-256 {} matches; saved {}",
        receipt.receipt_id,
        receipt.serial_hex,
        receipt.content.report_sha256,
        path.display()
    ));
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_sid_is_refused_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOptions {
            ca: "127.0.0.1:1".into(),
            blackboard: "127.0.0.1:1".into(),
            out_dir: dir.path().to_path_buf(),
            key_type: KeyType::Rsa2048,
            cipher: CipherId::Aes256Ctr,
            root_pin: RootPin::FirstUse(dir.path().join(ROOT_FINGERPRINT_FILE)),
            blackboard_name: crate::ca::DEFAULT_BLACKBOARD_NAME.into(),
            renew: false,
            codes: HashMap::new(),
            admission_secret: None,
            timeout: Duration::from_secs(1),
        };
        let err = run_student(&opts, "../x", &mut |_| {}).unwrap_err();
        assert!(matches!(err, ClientError::BadSid { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unexpected_challenge_asks_for_the_secret() {
        let challenge = Message::AdmissionChallenge { challenge: [0; 32] };
        let hint = unexpected("SessionOffer", &challenge).to_string();
        assert!(hint.contains("--admission-secret-file"), "{hint}");
        let other = unexpected("SessionOffer", &Message::CaHello { version: 2 });
        assert_eq!(
            other.to_string(),
            "protocol error: expected SessionOffer, got CaHello"
        );
        assert_eq!(CipherId::from(Cipher::Rc4), CipherId::Rc4);
    }
}
