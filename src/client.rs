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

pub mod audit;
mod enrollment;
mod files;
mod logcheck;
pub use logcheck::{LogFork, ProofCheckError};
mod pin;
mod status;
mod submission;
mod transport;
mod upload;

pub use enrollment::{
    check_certificate, code_auth, make_csr, make_key, read_codes, renewal_auth, CaSession,
    CertAnswer, CodesFileError,
};
pub use pin::{pin_root, read_pin, RootPin, ROOT_FINGERPRINT_FILE};
pub use status::{ask_status, compare as compare_status, HeldReceipt, StatusCheck};
pub use submission::{
    check_receipt, checked_offer, session_key, submit, verify_offer, BlackboardTrust, Expected,
    Receipt,
};
pub use transport::FramedStream;
pub use upload::{prepare_file, upload, FileToSend};

use enrollment::{enroll_student, load_saved};
use files::Files;
use submission::accepted_before;

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
    /// The network failed: connecting, or the connection broke. Said with
    /// a hint of what to check rather than the system's words alone.
    Network {
        /// What was being done ("connecting to ADDR").
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A directory the client keeps her files in is not hers alone.
    Unsafe(crate::fsutil::PermError),
    /// The pin file (`root-fingerprint`) fails the owner and mode checks of
    /// a key file: another user could have planted or changed it.
    PinUntrusted(crate::fsutil::PermError),
    /// Blackboard recorded her report, but its receipt could be saved
    /// nowhere; it is given here so that it is not lost.
    ReceiptNotSaved {
        /// The receipt id.
        receipt_id: u64,
        /// Where saving it was tried, and why it failed.
        tried: Vec<(PathBuf, io::Error)>,
        /// The receipt, base64 of its DER.
        base64: String,
    },
    /// Blackboard said it recorded her report, but the receipt it sent
    /// does not hold up. What it sent is kept (`saved`) for whoever runs
    /// the server; it proves nothing.
    UnverifiedReceipt {
        /// The receipt id Blackboard gave.
        receipt_id: u64,
        /// What Blackboard sent.
        signed_receipt: Vec<u8>,
        /// Why it does not hold up.
        source: ReceiptError,
        /// Where it was kept, once it is.
        saved: Option<PathBuf>,
    },
    /// SECURITY: the transparency log Blackboard proved her receipt against
    /// does not extend the one she saw before (a fork or a rewound log).
    /// Both signed checkpoints are kept as evidence.
    LogFork(Box<logcheck::LogFork>),
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
    /// She has no certificate saved that can be used (never enrolled, or
    /// its files unreadable): a local matter, not the server's.
    NotEnrolled {
        /// Her SID.
        sid: String,
        /// Where her files were looked for.
        dir: PathBuf,
        /// What was wrong with them.
        why: String,
    },
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
            ClientError::Network { what, source } => {
                write!(f, "{what}: {}", transport::explain(source))
            }
            ClientError::Unsafe(e) => write!(f, "refusing to keep her files there: {e}"),
            ClientError::PinUntrusted(e) => write!(
                f,
                "refusing the pinned root fingerprint: {e}. Someone else may have planted or \
                 changed it: compare it with the fingerprint your instructor published, then fix \
                 its owner and mode, or delete it to pin the root again"
            ),
            ClientError::ReceiptNotSaved {
                receipt_id,
                tried,
                base64,
            } => {
                write!(
                    f,
                    "Blackboard RECORDED her report (receipt {receipt_id}), but its signed \
                     receipt could not be saved"
                )?;
                for (path, e) in tried {
                    write!(f, "; {}: {e}", path.display())?;
                }
                write!(
                    f,
                    ". Do not submit again; keep this receipt (base64 of the .p7m file): {base64}"
                )
            }
            ClientError::LogFork(fork) => write!(
                f,
                "SECURITY ERROR: the transparency log proved against now does not extend the \
                 one she saw before: {}. Both signed checkpoints are kept as evidence: {} (seen \
                 before) and {} (now). Show them to the instructor; what she received is saved, \
                 but the log may have been forked or rewritten.\n--- seen before ---\n{}--- now \
                 ---\n{}",
                fork.why,
                fork.kept.display(),
                fork.evidence.display(),
                crate::escape::escaped(&fork.kept_note),
                crate::escape::escaped(&fork.new_note)
            ),
            ClientError::UnverifiedReceipt {
                receipt_id,
                source,
                saved,
                ..
            } => {
                write!(
                    f,
                    "Blackboard says it RECORDED her report as receipt {receipt_id}, but its \
                     receipt does not hold up ({source}); it proves nothing"
                )?;
                match saved {
                    Some(p) => write!(
                        f,
                        ": kept as {} for whoever runs the server; ask them before submitting again",
                        p.display()
                    ),
                    None => write!(f, "; ask whoever runs the server before submitting again"),
                }
            }
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
            ClientError::NotEnrolled { sid, dir, why } => write!(
                f,
                "no usable certificate of hers in {} ({why}): run `client enroll {sid}` first",
                dir.display()
            ),
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
            ClientError::Io { source, .. } | ClientError::Network { source, .. } => Some(source),
            ClientError::Frame(e) => Some(e),
            ClientError::Decode(e) => Some(e),
            ClientError::Certificate(e) => Some(e),
            ClientError::BadSid { source, .. } => Some(source),
            ClientError::Crypto(e) => Some(e),
            ClientError::NotBlackboard(e) => Some(e),
            ClientError::Receipt(e) => Some(e),
            ClientError::Unsafe(e) | ClientError::PinUntrusted(e) => Some(e),
            ClientError::UnverifiedReceipt { source, .. } => Some(source),
            ClientError::Refused { .. }
            | ClientError::LogFork(_)
            | ClientError::ReceiptNotSaved { .. }
            | ClientError::Protocol(_)
            | ClientError::NotEnrolled { .. }
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

/// Which of the course's two servers answered, named when a refusal is
/// about that server rather than about her.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Ca,
    Blackboard,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Ca => "the CA",
            Server::Blackboard => "Blackboard",
        })
    }
}

/// Code 19 said so that she can act on it: whose database, that nothing
/// was recorded, and to try again shortly; the server's own words follow.
/// Every other error is left as it is.
fn store_unavailable(server: Server) -> impl FnOnce(ClientError) -> ClientError {
    move |e| match e {
        ClientError::Refused {
            code: ErrorCode::StoreUnavailable,
            reason,
        } => ClientError::Refused {
            code: ErrorCode::StoreUnavailable,
            reason: format!(
                "{server}'s database is unavailable; nothing was recorded; try again in a \
                 minute (the server said: {reason})"
            ),
        },
        other => other,
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
    /// Send the report even when a saved receipt shows Blackboard already
    /// accepted the same bytes (--resubmit).
    pub resubmit: bool,
    /// Witnesses whose cosignatures she looks for on the log's
    /// checkpoints (--witness-key).
    pub witnesses: Vec<crate::tlog::cosignature::CosignatureVerifier>,
    /// The log's base URL (`--log-url http://HOST:PORT/log`): with
    /// witnesses, the cosigned checkpoint is fetched there after a proof.
    pub log_url: Option<String>,
}

/// The environment variable the binary reads her enrollment code from.
pub const CODE_ENV: &str = "CERTBOARD_ENROLL_CODE";

/// How a student's run ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Blackboard recorded her report; its receipt is saved.
    Submitted(Receipt),
    /// A receipt she already holds shows Blackboard accepted these very
    /// bytes: nothing was sent again (`--resubmit` sends them anyway).
    AlreadyAccepted {
        /// The saved receipt.
        path: PathBuf,
        /// What it says.
        content: crate::receipt::ReceiptContent,
    },
}

/// Her key, certificate and root, ready for Blackboard: saved ones reused
/// when still valid (unless --renew or a code says otherwise), else made
/// and certified now (steps 1–2).
struct Credentials {
    files: Files,
    key: openssl::pkey::PKey<openssl::pkey::Private>,
    cert_der: Vec<u8>,
    root: openssl::x509::X509,
    /// Saved ones were reused, not enrolled for now.
    reused: bool,
}

/// Steps 1–2 for one SID: reuse her saved credentials or enroll.
fn credentials(
    opts: &ClientOptions,
    sid: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Credentials, ClientError> {
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
    // An expired certificate of hers is not reused, but may still renew
    // (within the CA's renewal grace): no code is needed for that.
    let mut expired = None;
    let saved = match load_saved(&files, sid, pinned_cert) {
        Ok(s) => Some(s),
        Err(enrollment::SavedError::Expiring { key, der }) => {
            progress(
                "her saved certificate has expired: renewing it by proving possession of its \
                 key (the CA allows this for a while after expiry; past that, she needs a new \
                 enrollment code)",
            );
            expired = Some((key, der));
            None
        }
        Err(why) if files.dir.exists() => {
            progress(&format!("not reusing saved credentials: {why}"));
            None
        }
        Err(_) => None,
    };
    let had_saved = saved.is_some();
    // A code given is a new enrollment: her saved certificate may be
    // revoked, and a revoked one can neither be used nor renewed.
    let code_given = opts.codes.contains_key(sid);
    let reused = had_saved && !opts.renew && !code_given;
    let (key, cert_der, root) = match saved {
        Some((key, der, root)) if reused => {
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
            // proving possession of its key; with a code, the code is used.
            let current = match saved {
                Some(_) if code_given => {
                    progress(
                        "her enrollment code was given: enrolling with it (her saved \
                         certificate is replaced, not reused or renewed)",
                    );
                    None
                }
                // An expired one renews unless a code was given.
                saved => saved.map(|(key, der, _)| (key, der)).or(if code_given {
                    None
                } else {
                    expired
                }),
            };
            // Her directory first: a certificate whose key cannot be saved
            // would be issued for nothing. One made here is removed again
            // if the enrollment fails, so a refusal leaves nothing behind.
            let made_dir = !files.dir.exists();
            files::private_dir(&files.dir)?;
            let enrolled = enroll_student(opts, sid, &files, current, progress)
                .map_err(store_unavailable(Server::Ca));
            if enrolled.is_err() && made_dir {
                let _ = fs::remove_dir(&files.dir);
            }
            match enrolled {
                Err(ClientError::Refused {
                    code: ErrorCode::CodeUsed,
                    reason,
                }) if had_saved => {
                    return Err(ClientError::Refused {
                        code: ErrorCode::CodeUsed,
                        reason: format!(
                            "{reason} (her saved certificate in {} is still there: run without \
                             a code, no --code-file and no {CODE_ENV}, to use it)",
                            files.dir.display()
                        ),
                    })
                }
                other => other?,
            }
        }
    };
    Ok(Credentials {
        files,
        key,
        cert_der,
        root,
        reused,
    })
}

/// What `enroll` did for one SID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// Her saved key and certificate are still valid and were kept.
    Reused(PathBuf),
    /// A new key and certificate were made and saved there.
    New(PathBuf),
}

/// Steps 1–2 only (`client enroll`): her key and certificate, saved under
/// the out-dir; nothing is sent to Blackboard.
pub fn enroll(
    opts: &ClientOptions,
    sid: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Enrolled, ClientError> {
    let c = credentials(opts, sid, progress)?;
    Ok(if c.reused {
        Enrolled::Reused(c.files.dir)
    } else {
        Enrolled::New(c.files.dir)
    })
}

/// `client submit`: her credentials (steps 1–2 as for the lab), then the
/// file at `path` handed in for `assignment` by protocol version 3, its
/// signed receipt checked and saved like a version 2 receipt. Returns the
/// receipt, what was announced, and where the receipt was saved.
pub fn submit_file(
    opts: &ClientOptions,
    sid: &str,
    assignment: &str,
    path: &std::path::Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(Receipt, FileToSend, PathBuf), ClientError> {
    // The file first: one she cannot read costs her no enrollment.
    let file = prepare_file(path)?;
    let c = credentials(opts, sid, progress)?;
    let receipts = c.files.receipts();
    if let Some(note) = files::private_dir(&receipts)? {
        progress(&note);
    }
    let trust = BlackboardTrust {
        root: c.root,
        name: opts.blackboard_name.clone(),
    };
    let receipt = hand_in(
        opts,
        sid,
        &c.cert_der,
        &c.key,
        assignment,
        &file,
        &trust,
        progress,
    )
    .map_err(store_unavailable(Server::Blackboard))?;
    let saved = files::save_receipt(&c.files, &receipt, progress)?;
    remember_checkpoint(opts, &receipt, progress)?;
    Ok((receipt, file, saved))
}

/// Hands `file` in for `assignment` by protocol version 3 on a new
/// Blackboard connection; the receipt checked, not yet saved.
#[allow(clippy::too_many_arguments)]
fn hand_in(
    opts: &ClientOptions,
    sid: &str,
    cert_der: &[u8],
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    assignment: &str,
    file: &FileToSend,
    trust: &BlackboardTrust,
    progress: &mut dyn FnMut(&str),
) -> Result<Receipt, ClientError> {
    let serial = openssl::x509::X509::from_der(cert_der)?
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string();
    let mut conn = FramedStream::connect(&opts.blackboard, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    upload::upload(
        &mut conn, sid, &serial, cert_der, key, assignment, file, trust, progress,
    )
}

/// The file the lab's report is handed in as when Blackboard serves
/// version 3 only; kept in her folder, as sent.
pub const LAB_REPORT_FILE: &str = "lab-report.txt";

/// `client status`: with her saved key and certificate (never enrolling:
/// a student with none has nothing to ask about), asks Blackboard what it
/// holds for her and sets her saved receipts against the answer.
pub fn status(
    opts: &ClientOptions,
    sid: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(crate::message::StatusBody, StatusCheck), ClientError> {
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
    let (key, cert_der, root) =
        load_saved(&files, sid, pinned_cert).map_err(|why| ClientError::NotEnrolled {
            sid: sid.to_string(),
            dir: files.dir.clone(),
            why: why.to_string(),
        })?;
    pin_root(&root.to_der()?, &opts.root_pin, progress)?;
    let trust = BlackboardTrust {
        root,
        name: opts.blackboard_name.clone(),
    };
    let mut conn = FramedStream::connect(&opts.blackboard, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    let body = status::ask_status(&mut conn, sid, &cert_der, &key, &trust, progress)
        .map_err(store_unavailable(Server::Blackboard))?;
    let mut held = Vec::new();
    let mut unreadable = Vec::new();
    for path in files.receipt_files() {
        let checked = fs::read(&path).map_err(|e| e.to_string()).and_then(|der| {
            crate::receipt::verify_receipt(&der, &trust.root, Some(&trust.name))
                .map_err(|e| e.to_string())
        });
        match checked {
            Ok(v) => held.push(HeldReceipt {
                path,
                content: v.content,
            }),
            Err(why) => unreadable.push((path, why)),
        }
    }
    let check = status::compare(sid, &body, held, unreadable);
    Ok((body, check))
}

/// After a receipt is saved: the checkpoint its (checked) log proof leads
/// to is compared with the latest she kept, and kept if newer; a forked or
/// rewound log is an error.
fn remember_checkpoint(
    opts: &ClientOptions,
    receipt: &Receipt,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ClientError> {
    if let Some(note) = &receipt.log_checkpoint {
        let what = format!(
            "her submission is entry {} of the transparency log",
            receipt.content.log_index.unwrap_or_default()
        );
        keep_checkpoint(opts, note, &what, progress)?;
    }
    Ok(())
}

/// Keeps a checkpoint a proof led to, once a consistency proof (asked of
/// the CA, PROTOCOL.md V3.7) shows it extends the one she kept; a proof
/// that fails is the security error, one that cannot be had is said and
/// asked for again next time.
fn keep_checkpoint(
    opts: &ClientOptions,
    note: &str,
    what: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ClientError> {
    witnessed(opts, note, progress)?;
    let mut prove = |old: u64, new: u64| enrollment::ask_consistency(opts, old, new);
    let kept = opts.out_dir.join(logcheck::CHECKPOINT_FILE);
    match logcheck::remember(&opts.out_dir, note, &mut prove)
        .map_err(|f| ClientError::LogFork(Box::new(f)))?
    {
        logcheck::Remembered::Kept | logcheck::Remembered::Same => progress(&format!(
            "{what} (proof checked; the log extends the checkpoint she kept, now {})",
            kept.display()
        )),
        logcheck::Remembered::Unproven(why) => progress(&format!(
            "{what} (inclusion proof checked), but whether the log extends the checkpoint she \
             kept in {} could not be checked ({why}); it is checked on her next run",
            kept.display()
        )),
    }
    witnessed_later(opts, note, progress)
}

/// With witnesses and the log's URL, when the proof's checkpoint lacks a
/// trusted witness's cosignature (the server did not wait for it: down,
/// slow, or `--witness-wait 0`): the log's served checkpoint, fetched
/// until every trusted witness has cosigned it or the timeout passes,
/// then kept like any checkpoint: once proved to extend the one she kept
/// (now the proof's). Its log signature is the witnesses' to check: each
/// cosigned it only after verifying it with the log's key. Not cosigned in
/// time is said, naming the witness, and is no error: her submission is
/// recorded and proved either way.
fn witnessed_later(
    opts: &ClientOptions,
    proved: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ClientError> {
    use crate::tlog::cosignature::require_all;
    let (Some(url), false) = (&opts.log_url, opts.witnesses.is_empty()) else {
        return Ok(());
    };
    if require_all(proved, &opts.witnesses).is_ok() {
        return Ok(());
    }
    let (host, prefix) =
        audit::split_url(url).map_err(|e| ClientError::Protocol(format!("--log-url: {e}")))?;
    let until = std::time::Instant::now() + opts.timeout;
    let mut last = String::from("nothing fetched");
    let note = loop {
        match audit::get(&host, &format!("{prefix}/checkpoint"), opts.timeout)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        {
            Ok(note) => match require_all(&note, &opts.witnesses) {
                Ok(()) => break Some(note),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        if std::time::Instant::now() >= until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(note) = note else {
        progress(&format!(
            "the log's checkpoint at {url} was not cosigned as she asks within {}s ({last}); \
             `client audit --witness-key` checks it later",
            opts.timeout.as_secs()
        ));
        return Ok(());
    };
    let mut prove = |old: u64, new: u64| enrollment::ask_consistency(opts, old, new);
    let kept = opts.out_dir.join(logcheck::CHECKPOINT_FILE);
    let names: Vec<&str> = opts.witnesses.iter().map(|w| w.name()).collect();
    match logcheck::remember(&opts.out_dir, &note, &mut prove)
        .map_err(|f| ClientError::LogFork(Box::new(f)))?
    {
        logcheck::Remembered::Kept | logcheck::Remembered::Same => progress(&format!(
            "the log's checkpoint cosigned by witness {} extends the one her proof led to; \
             kept in {}",
            names.join(", "),
            kept.display()
        )),
        logcheck::Remembered::Unproven(why) => progress(&format!(
            "the log's checkpoint is cosigned by witness {}, but whether it extends the one \
             her proof led to could not be checked ({why})",
            names.join(", ")
        )),
    }
    Ok(())
}

/// The witnesses' cosignatures on a checkpoint a proof led to (a
/// receipt's, her certificate's): each trusted witness's is checked, and
/// one that is there but does not verify is refused. One that is not there
/// is said, by name, and is no error: the server waits for its witnesses
/// (bounded, `--witness-wait`) before answering, but not for one that is
/// down or too slow, so only the log's served checkpoint (`client audit
/// --witness-key`) must carry them all.
fn witnessed(
    opts: &ClientOptions,
    note: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ClientError> {
    use crate::tlog::cosignature::CosignatureError;
    for w in &opts.witnesses {
        match w.verify(note) {
            Ok(_) => progress(&format!(
                "the log's checkpoint is cosigned by witness {}",
                w.name()
            )),
            Err(CosignatureError::Missing { name }) => progress(&format!(
                "the log's checkpoint in this proof carries no cosignature by witness {name}: \
                 the server did not have it when it answered (the witness is down or slow, or \
                 the server does not wait for witnesses); {}",
                if opts.log_url.is_some() {
                    "the log's cosigned checkpoint is fetched next"
                } else {
                    "`client audit --witness-key` (or --log-url) checks the log's cosigned \
                     checkpoint"
                }
            )),
            Err(e) => {
                return Err(ClientError::Protocol(format!(
                    "the log's checkpoint carries a bad witness cosignature: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// Runs steps 1–6 for one SID, reporting each step through `progress`.
pub fn run_student(
    opts: &ClientOptions,
    sid: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, ClientError> {
    let Credentials {
        files,
        key,
        cert_der,
        root,
        reused,
    } = credentials(opts, sid, progress)?;
    let trust = BlackboardTrust {
        root,
        name: opts.blackboard_name.clone(),
    };
    let report = crypto::lab_report(sid);
    // Before anything is sent: a receipt that cannot be kept must not
    // cost her a recorded report, and the same bytes already accepted
    // are not recorded twice without her asking.
    let receipts = files.receipts();
    if let Some(note) = files::private_dir(&receipts)? {
        progress(&note);
    }
    let accepted = accepted_before(&files, &trust, sid, report.as_bytes());
    let mut conn = FramedStream::connect(&opts.blackboard, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    // Decided once Blackboard has proved itself (so that a refusal at the
    // hello is still heard), before the report leaves.
    let mut held_back = false;
    let mut send_report = || {
        held_back = accepted.is_some() && !opts.resubmit;
        !held_back
    };
    let step = submission::Step {
        cipher: opts.cipher,
        report: &report,
        trust: &trust,
        send_report: &mut send_report,
    };
    let submitted = submission::submit_unless(&mut conn, sid, &cert_der, &key, step, progress);
    // A Blackboard that no longer serves version 2 (`server --min-protocol
    // 3`) refuses at the hello, before the report leaves: the same report
    // goes as a file by version 3, to the same assignment, so that this
    // client's lab run outlives the operator's switch (an older binary is
    // told to upgrade).
    let submitted = match submitted {
        Err(ClientError::Refused {
            code: ErrorCode::UnsupportedVersion,
            ..
        }) if accepted.is_some() && !opts.resubmit => {
            // Already accepted, by either version: held back as version 2
            // would have been once Blackboard proved itself.
            progress(
                "Blackboard serves protocol version 3 only; the lab report was already accepted",
            );
            held_back = true;
            Ok(None)
        }
        Err(ClientError::Refused {
            code: ErrorCode::UnsupportedVersion,
            ..
        }) => {
            progress(&format!(
                "Blackboard serves protocol version 3 only; handing in the lab report by \
                 version 3, as the file {LAB_REPORT_FILE} for assignment {}",
                crate::store::DEFAULT_ASSIGNMENT
            ));
            if opts.cipher == CipherId::Rc4 {
                progress("version 3 sends files under AES-256-CTR only: --cipher rc4 is not used");
            }
            let path = files.dir.join(LAB_REPORT_FILE);
            files::write_file(&path, report.as_bytes(), 0o600)?;
            let file = prepare_file(&path)?;
            hand_in(
                opts,
                sid,
                &cert_der,
                &key,
                crate::store::DEFAULT_ASSIGNMENT,
                &file,
                &trust,
                progress,
            )
            .map(Some)
        }
        other => other,
    }
    .map_err(store_unavailable(Server::Blackboard));
    if let (Some((path, content)), Ok(_)) = (&accepted, &submitted) {
        if held_back {
            progress(&format!(
                "this report (SHA-256 {}) was already accepted: receipt {} of {}, saved in {}; \
                 not sent again (--resubmit records it once more)",
                content.report_sha256,
                content.receipt,
                content.received_at,
                path.display()
            ));
        } else {
            progress(&format!(
                "--resubmit: sent again the report Blackboard already accepted as receipt {} \
                 (recorded once more)",
                content.receipt
            ));
        }
    }
    let receipt = match submitted {
        Err(ClientError::Refused {
            code: ErrorCode::BadCertificate,
            reason,
        }) if reused => Err(ClientError::Refused {
            code: ErrorCode::BadCertificate,
            reason: format!(
                "{reason} (it was her saved certificate: if it was revoked, enroll again with \
                 a new enrollment code from your instructor, given by --code-file FILE or \
                 {CODE_ENV})"
            ),
        }),
        Err(e @ ClientError::Refused { .. }) => Err(transport::at_the_ca_port(e, &opts.blackboard)),
        Err(ClientError::UnverifiedReceipt {
            receipt_id,
            signed_receipt,
            source,
            saved: None,
        }) => {
            let path = receipts.join(format!("{receipt_id}.p7m.unverified"));
            let saved = files::write_file(&path, &signed_receipt, 0o644)
                .is_ok()
                .then_some(path);
            Err(ClientError::UnverifiedReceipt {
                receipt_id,
                signed_receipt,
                source,
                saved,
            })
        }
        other => other,
    }?;
    let Some(receipt) = receipt else {
        let Some((path, content)) = accepted else {
            // Held back only when a receipt showed it accepted.
            return Err(ClientError::Protocol("the report was held back".into()));
        };
        return Ok(Outcome::AlreadyAccepted { path, content });
    };
    let path = files::save_receipt(&files, &receipt, progress)?;
    remember_checkpoint(opts, &receipt, progress)?;
    // The signed receipt says whether it came late: said here too.
    let late = match (receipt.content.late, receipt.content.late_seconds) {
        (Some(true), Some(s)) => format!(" (LATE by {})", crate::assignment::show_duration(s)),
        (Some(true), None) => " (LATE)".to_string(),
        _ => String::new(),
    };
    progress(&format!(
        "Blackboard acknowledged: receipt {}{late} (certificate serial {}), signed by \
         Blackboard; report SHA-256 {} matches; saved {}",
        receipt.receipt_id,
        receipt.serial_hex,
        receipt.content.report_sha256,
        path.display()
    ));
    Ok(Outcome::Submitted(receipt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Code 19 names the server whose database is down, says nothing was
    /// recorded and when to try again, and keeps the server's words;
    /// other refusals are left alone.
    #[test]
    fn a_store_unavailable_refusal_says_whose_and_what_to_do() {
        let said = || ClientError::Refused {
            code: ErrorCode::StoreUnavailable,
            reason: "store unavailable: nothing was acknowledged".into(),
        };
        let shown = store_unavailable(Server::Blackboard)(said()).to_string();
        assert_eq!(
            shown,
            "refused by the server: Blackboard's database is unavailable; nothing was \
             recorded; try again in a minute (the server said: store unavailable: nothing was \
             acknowledged)"
        );
        let shown = store_unavailable(Server::Ca)(said()).to_string();
        assert!(
            shown.contains("the CA's database is unavailable; nothing was recorded"),
            "{shown}"
        );
        let other = ClientError::Refused {
            code: ErrorCode::Internal,
            reason: "internal error: issuance".into(),
        };
        assert_eq!(
            store_unavailable(Server::Ca)(other).to_string(),
            "refused by the server: internal error: issuance"
        );
    }

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
            resubmit: false,
            witnesses: Vec::new(),
            log_url: None,
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

    #[test]
    fn a_receipt_that_does_not_hold_up_says_the_report_was_recorded() {
        let e = ClientError::UnverifiedReceipt {
            receipt_id: 7,
            signed_receipt: vec![1, 2, 3],
            source: ReceiptError::Malformed("not CMS in DER".into()),
            saved: Some(PathBuf::from("students/a/receipts/7.p7m.unverified")),
        };
        let said = e.to_string();
        assert!(said.contains("RECORDED her report as receipt 7"), "{said}");
        assert!(said.contains("7.p7m.unverified"), "{said}");
    }
}
