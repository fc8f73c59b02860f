//! The CA exchange: her key and CSR, the CA's challenge, the code or
//! renewal proof, and the certificate checked before it is kept; and which
//! saved credentials are still good. Version 3 (PROTOCOL.md V3.7) is
//! spoken first: the CA proves its root (checked against her pin) before
//! any code's MAC leaves, and the certificate comes with its log proof.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use openssl::asn1::Asn1Time;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509Name, X509ReqBuilder, X509};

use crate::course::code::{self, EnrollCode};
use crate::message::{
    EnrollAuth, EnrollPolicy, ErrorCode, Message, NONCE_LEN, PROTOCOL_VERSION, PROTOCOL_VERSION_3,
};
use crate::tlog::NoteVerifier;
use crate::verify::Verifier;

use super::files::{write_file, Files};
use super::logcheck;
use super::pin::{check_pin, pin_root, RootPin};
use super::transport::FramedStream;
use super::{unexpected, ClientError, ClientOptions, KeyType};

/// Generates the student's key pair.
pub fn make_key(kind: KeyType) -> Result<PKey<Private>, ErrorStack> {
    PKey::from_rsa(Rsa::generate(kind.bits())?)
}

/// A CSR for CN=`sid`, signed with her key (proof of possession).
pub fn make_csr(sid: &str, key: &PKey<Private>) -> Result<Vec<u8>, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, sid)?;
    let mut b = X509ReqBuilder::new()?;
    b.set_subject_name(&name.build())?;
    b.set_pubkey(key)?;
    b.sign(key, MessageDigest::sha256())?;
    b.build().to_der()
}

/// The CA side of protocol version 2 on one connection: `CaHello` answered
/// by the course's policy and a nonce; then any number of requests, each
/// bound to the latest nonce.
#[derive(Debug)]
pub struct CaSession {
    /// What a first enrollment needs here.
    pub policy: EnrollPolicy,
    nonce: [u8; NONCE_LEN],
    /// Version 3: what the CA proved in its challenge.
    v3: Option<Proved>,
    /// The log size announced in the hello (version 3).
    announced: u64,
}

/// What a version 3 CA proved with its root key's signature.
#[derive(Debug)]
struct Proved {
    ca_cert_der: Vec<u8>,
    log_key: Option<NoteVerifier>,
}

/// What the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAnswer {
    /// Her certificate, DER.
    pub cert_der: Vec<u8>,
    /// The CA root, DER.
    pub ca_cert_der: Vec<u8>,
    /// Version 3: the certificate's log entry, its tlog-proof and the
    /// consistency proof from the size she announced (empty without a log).
    pub log: Option<(Vec<u8>, String, Vec<u8>)>,
}

/// Adds what a person can act on to a refusal of the first CA message:
/// a v1 server does not know `CaHello`; Blackboard does not expect it.
fn hello_refused(e: ClientError, peer: &str) -> ClientError {
    match e {
        ClientError::Refused {
            code: ErrorCode::Malformed,
            reason,
        } => ClientError::Refused {
            code: ErrorCode::Malformed,
            reason: format!("{reason} (the server speaks an older protocol version)"),
        },
        ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason,
        } if reason.contains("submission hello") => ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason: format!(
                "{reason} ({peer} is Blackboard, not the CA: the ports look swapped; --ca is \
                 the CA's address)"
            ),
        },
        other => other,
    }
}

impl CaSession {
    /// Sends `CaHello` and reads the challenge.
    pub fn open(conn: &mut FramedStream) -> Result<CaSession, ClientError> {
        let peer = conn.peer().to_string();
        conn.send(&Message::CaHello {
            version: PROTOCOL_VERSION,
        })?;
        match conn.recv().map_err(|e| hello_refused(e, &peer))? {
            Message::CaChallenge {
                version: PROTOCOL_VERSION,
                policy,
                nonce,
            } => Ok(CaSession {
                policy,
                nonce,
                v3: None,
                announced: 0,
            }),
            Message::CaChallenge { version, .. } => Err(ClientError::Protocol(format!(
                "the CA answered with protocol version {version}; this client speaks {PROTOCOL_VERSION}"
            ))),
            other => Err(unexpected("CaChallenge", &other)),
        }
    }

    /// Sends `CaHello3` (announcing the size of the latest log checkpoint
    /// she holds) and reads the challenge: the root it carries must be the
    /// pinned one and its signature over her nonce must verify with that
    /// root's key, before anything is sent (PROTOCOL.md V3.7).
    pub fn open_v3(
        conn: &mut FramedStream,
        pin: &RootPin,
        log_size: u64,
    ) -> Result<CaSession, ClientError> {
        let peer = conn.peer().to_string();
        let hello = Message::CaHello3 {
            version: PROTOCOL_VERSION_3,
            client_nonce: crate::crypto::random::<NONCE_LEN>()?,
            log_size,
        };
        conn.send(&hello)?;
        match conn.recv().map_err(|e| hello_refused(e, &peer))? {
            Message::CaChallenge3 {
                version: PROTOCOL_VERSION_3,
                policy,
                nonce,
                ca_cert_der,
                log_key,
                signature,
            } => {
                // The pin first: a root she does not trust is refused
                // whatever it signed.
                check_pin(&ca_cert_der, pin)?;
                let root = X509::from_der(&ca_cert_der).map_err(|_| {
                    ClientError::BadCertificate("the CA's root in its challenge is not DER".into())
                })?;
                let transcript = crate::crypto::ca_challenge_transcript(
                    &hello.encode(),
                    policy as u8,
                    &nonce,
                    &ca_cert_der,
                    &log_key,
                );
                let root_key = root.public_key()?;
                let signed = openssl::sign::Verifier::new(MessageDigest::sha256(), &root_key)
                    .and_then(|mut v| {
                        v.update(&transcript)?;
                        v.verify(&signature)
                    })
                    .unwrap_or(false);
                if !signed {
                    return Err(ClientError::BadCertificate(
                        "the CA's signature over her challenge does not verify with the root it \
                         presented: it does not hold that root's key (nothing was sent)"
                            .into(),
                    ));
                }
                let log_key = if log_key.is_empty() {
                    None
                } else {
                    Some(
                        NoteVerifier::from_key(&log_key)
                            .map_err(|e| ClientError::Protocol(format!("the CA's log key: {e}")))?,
                    )
                };
                Ok(CaSession {
                    policy,
                    nonce,
                    v3: Some(Proved {
                        ca_cert_der,
                        log_key,
                    }),
                    announced: log_size,
                })
            }
            Message::CaChallenge3 { version, .. } => Err(ClientError::Protocol(format!(
                "the CA answered with protocol version {version}; this client asked for \
                 {PROTOCOL_VERSION_3}"
            ))),
            other => Err(unexpected("CaChallenge3", &other)),
        }
    }

    /// The log's key the CA proved (version 3 with a log).
    pub fn log_key(&self) -> Option<&NoteVerifier> {
        self.v3.as_ref().and_then(|p| p.log_key.as_ref())
    }

    /// The nonce the next request must bind.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Sends one request and reads the certificate; the next nonce is kept.
    pub fn request(
        &mut self,
        conn: &mut FramedStream,
        csr_der: Vec<u8>,
        auth: EnrollAuth,
    ) -> Result<CertAnswer, ClientError> {
        conn.send(&Message::CertRequest { csr_der, auth })?;
        match (conn.recv()?, &self.v3) {
            (
                Message::CertIssued {
                    cert_der,
                    ca_cert_der,
                    next_nonce,
                },
                None,
            ) => {
                self.nonce = next_nonce;
                Ok(CertAnswer {
                    cert_der,
                    ca_cert_der,
                    log: None,
                })
            }
            (
                Message::CertIssued3 {
                    cert_der,
                    next_nonce,
                    log_entry,
                    log_proof,
                    consistency,
                },
                Some(proved),
            ) => {
                self.nonce = next_nonce;
                Ok(CertAnswer {
                    cert_der,
                    ca_cert_der: proved.ca_cert_der.clone(),
                    log: (!log_proof.is_empty()).then_some((log_entry, log_proof, consistency)),
                })
            }
            (other, None) => Err(unexpected("CertIssued", &other)),
            (other, Some(_)) => Err(unexpected("CertIssued3", &other)),
        }
    }
}

/// Asks the CA for the RFC 6962 consistency proof from the tree of `old`
/// entries to the tree of `new` (`LogConsistencyRequest`, PROTOCOL.md
/// V3.7). The answer proves nothing by itself: the caller checks it
/// against the two signed roots she holds.
pub(super) fn ask_consistency(
    opts: &ClientOptions,
    old: u64,
    new: u64,
) -> Result<Vec<crate::tlog::Hash>, ClientError> {
    let mut conn = FramedStream::connect(&opts.ca, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    conn.send(&Message::LogConsistencyRequest {
        old_size: old,
        new_size: new,
    })?;
    match conn.recv()? {
        Message::LogConsistency { proof } => logcheck::split_hashes(&proof).ok_or_else(|| {
            ClientError::Protocol("a consistency proof that is not 32-byte hashes".into())
        }),
        other => Err(unexpected("LogConsistency", &other)),
    }
}

/// Connects to the CA and opens a session: version 3, where the CA proves
/// its root before anything secret leaves. A CA that does not know
/// version 3 (it refuses `CaHello3` as an unknown message, code 1) is
/// spoken to in version 2 again, unless her one-time code would be sent:
/// version 2 sends its MAC before the root is seen, so a wrong CA would
/// spend it.
fn open_ca(
    opts: &ClientOptions,
    sends_code: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<(FramedStream, CaSession), ClientError> {
    let announced = logcheck::kept_size(&opts.out_dir);
    let mut conn = FramedStream::connect(&opts.ca, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    match CaSession::open_v3(&mut conn, &opts.root_pin, announced) {
        Ok(s) => Ok((conn, s)),
        Err(ClientError::Refused {
            code: ErrorCode::Malformed,
            reason,
        }) if !sends_code => {
            progress(&format!(
                "the CA does not speak protocol version 3 ({reason}); enrolling by version 2"
            ));
            let mut conn = FramedStream::connect(&opts.ca, opts.timeout)?;
            conn.admit(opts.admission_secret.as_deref())?;
            let s = CaSession::open(&mut conn)?;
            Ok((conn, s))
        }
        Err(ClientError::Refused {
            code: ErrorCode::Malformed,
            reason,
        }) => Err(ClientError::Refused {
            code: ErrorCode::Malformed,
            reason: format!(
                "{reason}: this CA speaks only protocol version 2, which sends her one-time \
                 enrollment code before the CA proves its root, so a wrong CA would spend it; \
                 nothing was sent (ask the instructor to upgrade the server)"
            ),
        }),
        Err(e) => Err(e),
    }
}

/// `auth` = code: the HMAC of the code's key over the nonce, SID and CSR.
pub fn code_auth(
    code: &EnrollCode,
    sid: &str,
    nonce: &[u8; NONCE_LEN],
    csr_der: &[u8],
) -> Result<EnrollAuth, ErrorStack> {
    let key = code.key(sid)?;
    Ok(EnrollAuth::Code {
        mac: code::enroll_mac(&key, nonce, sid, csr_der)?,
    })
}

/// `auth` = renewal: her current certificate and her signature with its
/// key over the nonce, that certificate and the new CSR.
pub fn renewal_auth(
    current_key: &PKey<Private>,
    cert_der: &[u8],
    nonce: &[u8; NONCE_LEN],
    csr_der: &[u8],
) -> Result<EnrollAuth, ErrorStack> {
    let mut signer = Signer::new(MessageDigest::sha256(), current_key)?;
    signer.update(&code::renewal_message(nonce, cert_der, csr_der))?;
    Ok(EnrollAuth::Renewal {
        cert_der: cert_der.to_vec(),
        signature: signer.sign_to_vec()?,
    })
}

/// Why a codes file cannot be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum CodesFileError {
    /// A line is not `sid,code`.
    Line {
        /// 1-based.
        line: usize,
        /// Why.
        why: String,
    },
}

impl fmt::Display for CodesFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodesFileError::Line { line, why } => write!(f, "line {line}: {why}"),
        }
    }
}

impl std::error::Error for CodesFileError {}

/// Reads `sid,code` lines (the file `server roster codes` writes; a
/// header line `sid,code` and blank lines are skipped). A roster with
/// e-mails gives `sid,name,email,code`: the SID is the first field and the
/// code the last (a quoted name may hold commas; a code never does).
pub fn read_codes(text: &str) -> Result<HashMap<String, EnrollCode>, CodesFileError> {
    let mut codes = HashMap::new();
    // A spreadsheet's "CSV UTF-8" starts with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let header = line.eq_ignore_ascii_case("sid,code")
            || line.eq_ignore_ascii_case("sid,name,email,code");
        if line.is_empty() || (i == 0 && header) {
            continue;
        }
        let bad = |why: String| CodesFileError::Line { line: i + 1, why };
        let (sid, code) = line
            .split_once(',')
            .map(|(sid, rest)| (sid, rest.rsplit_once(',').map_or(rest, |(_, c)| c)))
            .ok_or_else(|| bad("expected `sid,code`".into()))?;
        let sid = sid.trim();
        // The server's CSV writer makes a cell starting with `-` inert for
        // spreadsheets by prefixing `'` (admin/csv.rs): read it back as the SID.
        let sid = match sid.strip_prefix('\'') {
            Some(rest) if rest.starts_with('-') => rest,
            _ => sid,
        };
        crate::sid::validate(sid).map_err(|e| bad(format!("SID {sid:?}: {e}")))?;
        let code = EnrollCode::parse(code).map_err(|e| bad(format!("SID {sid}: {e}")))?;
        codes.insert(sid.to_string(), code);
    }
    Ok(codes)
}

/// Checks that `cert` chains to `root`, is hers (her key, her SID) and is a
/// client certificate.
pub fn check_certificate(
    sid: &str,
    cert_der: &[u8],
    root: &X509,
    key: &PKey<Private>,
) -> Result<X509, ClientError> {
    let verifier = Verifier::new(root)?;
    verifier
        .verify(sid, cert_der, &[])
        .map_err(ClientError::Certificate)?;
    let cert = X509::from_der(cert_der)?;
    if !cert.public_key()?.public_eq(key) {
        return Err(ClientError::BadCertificate(
            "the certificate does not certify her own public key".into(),
        ));
    }
    Ok(cert)
}

/// Why saved credentials are not reused.
#[derive(Debug)]
pub(super) enum SavedError {
    /// A file could not be read.
    Read(PathBuf, io::Error),
    /// The file (named) does not hold what it should.
    NotPem(&'static str),
    /// The certificate has expired or is about to; it is hers (her key,
    /// the pinned root's signature), so the CA may still renew it within
    /// its renewal grace.
    Expiring {
        /// Her saved key.
        key: PKey<Private>,
        /// The expired certificate, DER.
        der: Vec<u8>,
    },
    /// OpenSSL failed.
    Crypto(ErrorStack),
    /// The certificate fails the check Blackboard will make.
    Check(ClientError),
    /// The key file or its folder fails the owner and mode checks.
    Unsafe(crate::fsutil::PermError),
}

impl fmt::Display for SavedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SavedError::Read(path, e) => write!(f, "{}: {e}", path.display()),
            SavedError::NotPem("key.pem") => write!(f, "saved key.pem is not a private key"),
            SavedError::NotPem(file) => write!(f, "saved {file} is not a certificate"),
            SavedError::Expiring { .. } => write!(
                f,
                "saved certificate has expired or expires within a minute"
            ),
            SavedError::Crypto(e) => write!(f, "{e}"),
            SavedError::Check(e) => write!(f, "saved certificate: {e}"),
            SavedError::Unsafe(e) => write!(f, "saved key: {e}"),
        }
    }
}

impl From<ErrorStack> for SavedError {
    fn from(e: ErrorStack) -> Self {
        SavedError::Crypto(e)
    }
}

/// Loads saved credentials if they are still good; says why not otherwise.
pub(super) fn load_saved(
    files: &Files,
    sid: &str,
    pinned: Option<&X509>,
) -> Result<(PKey<Private>, Vec<u8>, X509), SavedError> {
    let read = |p: PathBuf| fs::read(&p).map_err(|e| SavedError::Read(p, e));
    let key_pem = read(files.key())?;
    // A key another user could have written is not hers to trust.
    crate::fsutil::check_private_file_perms(&files.key()).map_err(SavedError::Unsafe)?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(|_| SavedError::NotPem("key.pem"))?;
    let cert = X509::from_pem(&read(files.cert())?).map_err(|_| SavedError::NotPem("cert.pem"))?;
    let root = match pinned {
        Some(r) => r.clone(),
        None => X509::from_pem(&read(files.ca())?).map_err(|_| SavedError::NotPem("ca.pem"))?,
    };
    let soon = Asn1Time::from_unix(crate::time::now_unix() + 60)?;
    if cert.not_after() <= soon {
        // Hers only if her key and signed by the root: then the CA judges
        // whether it is recent enough to renew (its renewal grace).
        let root_key = root.public_key()?;
        if cert.public_key()?.public_eq(&key) && cert.verify(&root_key)? {
            return Err(SavedError::Expiring {
                key,
                der: cert.to_der()?,
            });
        }
        return Err(SavedError::Check(ClientError::BadCertificate(
            "the saved certificate has expired and is not one the pinned root issued for her key"
                .into(),
        )));
    }
    let der = cert.to_der()?;
    check_certificate(sid, &der, &root, &key).map_err(SavedError::Check)?;
    Ok((key, der, root))
}

/// Steps 1–2: her new key and CSR, certified by the CA (protocol version
/// 2), saved in her directory. `current`: her saved key and certificate,
/// still good, when she renews.
pub(super) fn enroll_student(
    opts: &ClientOptions,
    sid: &str,
    files: &Files,
    current: Option<(PKey<Private>, Vec<u8>)>,
    progress: &mut dyn FnMut(&str),
) -> Result<(PKey<Private>, Vec<u8>, X509), ClientError> {
    let key = make_key(opts.key_type)?;
    let csr = make_csr(sid, &key)?;
    progress(&format!(
        "step 1: generated her {}-bit RSA key pair and a CSR for CN={sid}",
        key.bits()
    ));
    let code = opts.codes.get(sid);
    let (mut conn, mut ca) = open_ca(opts, current.is_none() && code.is_some(), progress)?;
    let auth = match (&current, code, ca.policy) {
        (Some((old_key, old_cert)), _, _) => {
            progress("step 2: renewing: proving possession of her current key (no code needed)");
            renewal_auth(old_key, old_cert, ca.nonce(), &csr)?
        }
        (None, Some(_), EnrollPolicy::Open) => {
            progress(
                "warning: this CA has no roster (open enrollment): her enrollment code is not needed and not sent",
            );
            EnrollAuth::Open
        }
        (None, Some(code), EnrollPolicy::Roster) => code_auth(code, sid, ca.nonce(), &csr)?,
        (None, None, _) => EnrollAuth::Open,
    };
    let authorisation = match &auth {
        EnrollAuth::Open => crate::tlog::Authorisation::Open,
        EnrollAuth::Code { .. } => crate::tlog::Authorisation::Code,
        EnrollAuth::Renewal { .. } => crate::tlog::Authorisation::Renewal,
    };
    let answer = ca.request(&mut conn, csr, auth)?;
    // Before anything the CA sent is trusted.
    pin_root(&answer.ca_cert_der, &opts.root_pin, progress)?;
    let root = X509::from_der(&answer.ca_cert_der)
        .map_err(|_| ClientError::BadCertificate("root is not DER".into()))?;
    let cert = check_certificate(sid, &answer.cert_der, &root, &key)?;
    let serial = crate::ca::Serial::from_asn1(cert.serial_number())?;
    let logged = match &answer.log {
        Some((entry, proof, consistency)) => Some((
            logcheck::check_cert_inclusion(
                entry,
                proof,
                ca.log_key(),
                sid,
                &answer.cert_der,
                &serial.to_string(),
                authorisation,
            )
            .map_err(|e| ClientError::BadCertificate(format!("its log proof: {e}")))?,
            consistency,
        )),
        None => None,
    };
    progress(&format!(
        "step 2: CA issued certificate serial {serial}, valid until {}; it chains to the root ({})",
        cert.not_after(),
        match opts.root_pin {
            RootPin::Cert(_) => "pinned by --ca-cert",
            RootPin::Fingerprint(_) => "pinned by --ca-fingerprint",
            RootPin::FirstUse(_) => "pinned on first use",
        }
    ));
    write_file(&files.key(), &key.private_key_to_pem_pkcs8()?, 0o600)?;
    write_file(&files.cert(), &cert.to_pem()?, 0o644)?;
    write_file(&files.ca(), &root.to_pem()?, 0o644)?;
    if let Some(((note, index), consistency)) = logged {
        // The proof for the size announced came with the certificate; any
        // other is asked for.
        let sent = logcheck::split_hashes(consistency);
        let announced = ca.announced;
        let mut prove = |old: u64, new: u64| match &sent {
            Some(p) if old == announced && !p.is_empty() => Ok(p.clone()),
            _ => ask_consistency(opts, old, new),
        };
        super::witnessed(opts, &note, progress)?;
        let kept = opts.out_dir.join(logcheck::CHECKPOINT_FILE);
        match logcheck::remember(&opts.out_dir, &note, &mut prove)
            .map_err(|f| ClientError::LogFork(Box::new(f)))?
        {
            logcheck::Remembered::Kept | logcheck::Remembered::Same => progress(&format!(
                "her certificate is entry {index} of the transparency log (proof checked \
                 against a checkpoint signed by the log key the CA proved; checkpoint kept in {})",
                kept.display()
            )),
            logcheck::Remembered::Unproven(why) => progress(&format!(
                "her certificate is entry {index} of the transparency log (proof \
                 checked), but whether the log extends the checkpoint she kept could not be \
                 checked ({why})"
            )),
        }
    }
    progress(&format!("SID{sid} sign finished"));
    Ok((key, answer.cert_der, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaKeyType, CertificateAuthority};
    use crate::verify::CertError;
    use std::path::Path;

    fn ca(dir: &Path) -> CertificateAuthority {
        CertificateAuthority::open(dir, b"client tests", CaKeyType::P256, 30)
            .unwrap()
            .0
    }

    #[test]
    fn her_certificate_must_certify_her_key_and_sid() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path());
        let key = make_key(KeyType::Rsa2048).unwrap();
        let issued = ca.issue(&make_csr("alice", &key).unwrap()).unwrap();
        assert!(check_certificate("alice", &issued.der, ca.cert(), &key).is_ok());
        let other = make_key(KeyType::Rsa2048).unwrap();
        assert!(matches!(
            check_certificate("alice", &issued.der, ca.cert(), &other),
            Err(ClientError::BadCertificate(_))
        ));
        assert!(matches!(
            check_certificate("bob", &issued.der, ca.cert(), &key),
            Err(ClientError::Certificate(CertError::SidMismatch { .. }))
        ));
    }

    #[test]
    fn saved_credentials_are_reused_only_when_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(&dir.path().join("keys"));
        let files = Files {
            dir: dir.path().join("alice"),
        };
        assert!(matches!(
            load_saved(&files, "alice", None),
            Err(SavedError::Read(..))
        ));
        fs::create_dir_all(&files.dir).unwrap();
        let key = make_key(KeyType::Rsa2048).unwrap();
        let issued = ca.issue(&make_csr("alice", &key).unwrap()).unwrap();
        let cert = X509::from_der(&issued.der).unwrap();
        fs::write(files.key(), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        fs::write(files.cert(), b"not PEM").unwrap();
        fs::write(files.ca(), ca.cert().to_pem().unwrap()).unwrap();
        let err = load_saved(&files, "alice", None).unwrap_err();
        assert_eq!(err.to_string(), "saved cert.pem is not a certificate");
        fs::write(files.cert(), cert.to_pem().unwrap()).unwrap();
        let (_, der, _) = load_saved(&files, "alice", None).unwrap();
        assert_eq!(der, issued.der);
        // Saved for someone else: refused by the same check as a new one.
        assert!(matches!(
            load_saved(&files, "bob", None),
            Err(SavedError::Check(_))
        ));
    }

    #[test]
    fn a_sid_the_csv_writer_made_inert_reads_back() -> Result<(), Box<dyn std::error::Error>> {
        let code = "7KQ2M-9XW4T-ABCDE-FGHJK";
        let codes = read_codes(&format!("sid,code\r\n'-s1,{code}\r\n'x,{code}\r\n"));
        // `'-s1` is the writer's form of `-s1`; `'x` was never written by it.
        assert!(codes.is_err(), "{codes:?}");
        let codes = read_codes(&format!("sid,code\r\n'-s1,{code}\r\ns2,{code}\r\n"))?;
        // With names and e-mails (a name may hold a comma, quoted).
        let wide = read_codes(&format!(
            "sid,name,email,code\r\ns3,\"Chan, Tai Man\",tm@example.edu,{code}\r\n"
        ))?;
        assert!(wide.contains_key("s3"), "{wide:?}");
        // Saved by a spreadsheet as "CSV UTF-8": a byte order mark first.
        let bom = read_codes(&format!("\u{feff}sid,code\r\ns4,{code}\r\n"))?;
        assert!(bom.contains_key("s4"), "{bom:?}");
        assert!(
            codes.contains_key("-s1") && codes.contains_key("s2"),
            "{codes:?}"
        );
        Ok(())
    }
}
