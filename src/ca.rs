//! The certificate authority ("CUHK"): its root key and certificate, and
//! issuance of student certificates from CSRs. It knows certificates, not
//! connections: the CA session in `protocol/enrollment.rs` drives it.
//!
//! Issuance follows one fixed profile. From the CSR only two things are
//! taken: the subject's CN (the SID) and the public key; every attribute and
//! requested extension is ignored, so a CSR asking for CA:TRUE or
//! keyCertSign gets an ordinary leaf certificate.
//!
//! One child per artefact: the root's files (`ca/root.rs`), the CSR and
//! key policy (`ca/csr.rs`), the leaf profile writer (`ca/profile.rs`), the
//! CRL (`ca/crl.rs`) and the serial number (`ca/serial.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use openssl::bn::BigNum;
use openssl::ec::EcGroup;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private, Public};
use openssl::x509::{X509NameRef, X509};

use crate::der::DerError;
use crate::fsutil::PermError;
use crate::sid::{self, SidError};

mod blackboard;
mod crl;
mod csr;
mod profile;
mod revocation;
mod root;
mod serial;

pub use blackboard::{
    check_name as check_blackboard_name, paths as blackboard_paths, BlackboardCertProblem,
    BlackboardIdentity, BlackboardKeys, KeysOrigin, BLACKBOARD_CERT_FILE, BLACKBOARD_KEY_FILE,
    BLACKBOARD_LIFETIME_SECS, DEFAULT_BLACKBOARD_NAME,
};
pub use crl::{RevokedEntry, SignedCrl, CRL_VALIDITY_DAYS};
pub(crate) use csr::rsa_exponent_ok;
pub use revocation::RevocationReason;
pub use root::{root_exists, root_paths, CA_CERT_FILE, CA_KEY_FILE, MIN_PASSPHRASE_LEN};
pub use serial::{Serial, SerialError};

/// The key type of the CA root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaKeyType {
    /// RSA with a 2048-bit modulus, signing with SHA-256 (the default).
    Rsa2048,
    /// ECDSA on NIST P-256 with SHA-256.
    P256,
}

/// Why the CA could not start or could not issue.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaError {
    /// A file in the keys dir could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The root key would not decrypt: wrong passphrase or damaged file.
    BadPassphrase(PathBuf),
    /// The passphrase for a new root is too short.
    WeakPassphrase,
    /// One of the two root files exists without the other.
    HalfRoot {
        /// The file present.
        present: PathBuf,
        /// The file missing.
        missing: PathBuf,
    },
    /// The root certificate does not belong to the root key, or is not a CA.
    RootMismatch(PathBuf),
    /// The root key file, or the keys dir, is one another user could write
    /// or replace (writable by group or others, owned by someone else, a
    /// symbolic link): refused before the key is read or written.
    UnsafeKeys(PermError),
    /// The CSR is not a well-formed PKCS#10 request in DER.
    MalformedCsr(DerError),
    /// The CSR is signed with an algorithm the CA does not accept (the
    /// dotted OID): SHA-256, SHA-384 or SHA-512 with RSA (PKCS#1 v1.5) or
    /// ECDSA are accepted.
    UnsupportedSignature(String),
    /// The CSR's signature does not verify with its own public key.
    CsrSignature,
    /// The CSR's subject has no usable CN.
    MissingCn,
    /// The CN is not a valid SID.
    BadSid(SidError),
    /// The CSR's key is of a type or size the CA does not certify.
    UnsupportedKey(String),
    /// A serial handed to the CA as text (a revoked record's, for the CRL)
    /// is not one.
    BadSerial(SerialError),
    /// A Blackboard name that is not a lower-case DNS name.
    BadBlackboardName(String),
    /// The keys dir holds no usable Blackboard certificate.
    BlackboardCert {
        /// The keys dir.
        dir: PathBuf,
        /// What is wrong.
        why: BlackboardCertProblem,
    },
    /// OpenSSL failed while building or signing.
    Crypto(ErrorStack),
    /// The public URL given for CRL and OCSP pointers is not a plain
    /// `http://` URL of printable ASCII.
    BadPublicUrl(String),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CaError::BadPassphrase(p) => write!(
                f,
                "cannot decrypt the CA key {}: wrong passphrase or damaged file",
                p.display()
            ),
            CaError::WeakPassphrase => write!(
                f,
                "the CA passphrase must be at least {MIN_PASSPHRASE_LEN} characters"
            ),
            CaError::HalfRoot { present, missing } => write!(
                f,
                "{} exists but {} does not; restore it from backup or move both away to create a new root",
                present.display(),
                missing.display()
            ),
            CaError::RootMismatch(p) => write!(
                f,
                "{} is not a CA certificate for the CA key beside it",
                p.display()
            ),
            CaError::UnsafeKeys(e) => write!(f, "refusing the CA key: {e}"),
            CaError::MalformedCsr(e) => write!(f, "the CSR is not valid PKCS#10 DER: {e}"),
            CaError::UnsupportedSignature(oid) => write!(
                f,
                "the CSR is signed with algorithm {oid}; SHA-256/384/512 with RSA or ECDSA are accepted"
            ),
            CaError::CsrSignature => write!(
                f,
                "the CSR's signature does not verify with its public key (no proof of possession)"
            ),
            CaError::MissingCn => write!(f, "the CSR's subject has no common name (the SID)"),
            CaError::BadSid(e) => write!(f, "the CSR's common name is not a valid SID: {e}"),
            CaError::UnsupportedKey(what) => write!(f, "unsupported key in the CSR: {what}"),
            CaError::BadSerial(e) => write!(f, "bad serial: {e}"),
            CaError::BadBlackboardName(n) => write!(
                f,
                "Blackboard name {n:?} is not a DNS name of at least two labels (lower-case letters, digits, '-', joined by '.')"
            ),
            CaError::BlackboardCert { dir, why } => write!(
                f,
                "Blackboard's certificate in {} {why}; where the root key is, run \
                 `server blackboard-cert --out DIR` and put {BLACKBOARD_KEY_FILE} and \
                 {BLACKBOARD_CERT_FILE} in {}",
                dir.display(),
                dir.display()
            ),
            CaError::Crypto(e) => write!(f, "OpenSSL error: {e}"),
            CaError::BadPublicUrl(url) => write!(
                f,
                "public URL {url:?} is not an http:// URL (CRL and OCSP pointers are plain HTTP: the answers are signed)"
            ),
        }
    }
}

impl std::error::Error for CaError {}

impl From<ErrorStack> for CaError {
    fn from(e: ErrorStack) -> Self {
        CaError::Crypto(e)
    }
}

impl From<SerialError> for CaError {
    fn from(e: SerialError) -> Self {
        CaError::BadSerial(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A private file write's failure: an unsafe directory is refused as such,
/// anything else is an I/O error on that path.
pub(crate) fn write_err(path: &Path) -> impl FnOnce(crate::fsutil::WriteError) -> CaError + '_ {
    move |e| match e {
        crate::fsutil::WriteError::Unsafe(e) => CaError::UnsafeKeys(e),
        other => CaError::Io {
            path: path.to_path_buf(),
            source: other.into(),
        },
    }
}

/// A certificate the CA has just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The SID it certifies.
    pub sid: String,
    /// Serial number.
    pub serial: Serial,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// The CA: root key, root certificate and issuance profile.
pub struct CertificateAuthority {
    key: PKey<Private>,
    cert: X509,
    cert_der: Vec<u8>,
    validity_days: u32,
    /// What every leaf takes from the root.
    profile: profile::LeafProfile,
    /// P-256, for checking students' EC keys.
    p256: EcGroup,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &name_text(self.cert.subject_name()))
            .field("validity_days", &self.validity_days)
            .finish_non_exhaustive()
    }
}

/// How [`CertificateAuthority::open`] found the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootOrigin {
    /// Loaded from the keys dir.
    Loaded,
    /// Created now and written to the keys dir.
    Created,
}

/// A name as `CN=…, O=…` for logs.
pub fn name_text(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let field = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{field}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How far notBefore (and a CRL's thisUpdate) is set in the past: a
/// verifier whose clock is a little behind ours, or a clock stepped back
/// between issuance and the first check, must not see "not yet valid".
pub const BACKDATE_SECS: i64 = 300;

/// Now, minus [`BACKDATE_SECS`], in Unix seconds.
fn backdated_now() -> i64 {
    crate::time::now_unix() - BACKDATE_SECS
}

/// A random, positive serial of 16 bytes (see [`Serial::random`]), for
/// OpenSSL's builders.
pub fn random_serial() -> Result<BigNum, ErrorStack> {
    Serial::random()?.to_bn()
}

impl CertificateAuthority {
    /// Loads the root from `keys_dir`, or creates it there when neither file
    /// exists. Never overwrites: a wrong passphrase or a half-present root is
    /// an error that leaves every file as it was.
    pub fn open(
        keys_dir: &Path,
        passphrase: &[u8],
        kind: CaKeyType,
        validity_days: u32,
    ) -> Result<(CertificateAuthority, RootOrigin), CaError> {
        let (key, cert, origin) = root::open(keys_dir, passphrase, kind)?;
        Ok((Self::from_parts(key, cert, validity_days)?, origin))
    }

    fn from_parts(
        key: PKey<Private>,
        cert: X509,
        validity_days: u32,
    ) -> Result<CertificateAuthority, CaError> {
        let cert_der = cert.to_der()?;
        let profile = profile::LeafProfile::for_root(&key, &cert, &cert_der)?;
        Ok(CertificateAuthority {
            key,
            cert,
            cert_der,
            validity_days,
            profile,
            p256: EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?,
        })
    }

    /// The root certificate.
    pub fn cert(&self) -> &X509 {
        &self.cert
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The root key (for signing CRLs).
    pub fn key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// Names `url/crl` (CRL distribution point) and `url/ocsp` (OCSP
    /// responder) in every certificate issued from now on.
    pub fn set_public_url(&mut self, url: &str) -> Result<(), CaError> {
        self.profile.set_public_url(url)
    }

    /// Checks a CSR and issues a certificate for its SID and key.
    ///
    /// The CSR is read with the small DER reader of `der.rs`, not decoded
    /// by OpenSSL: its key is checked (type, size, curve) and rebuilt from
    /// its components only to verify the CSR's signature, and its
    /// SubjectPublicKeyInfo goes into the certificate byte for byte. The
    /// refusals, in order: [`CaError::MalformedCsr`],
    /// [`CaError::UnsupportedKey`], [`CaError::UnsupportedSignature`],
    /// [`CaError::CsrSignature`], [`CaError::MissingCn`], [`CaError::BadSid`].
    pub fn issue(&self, csr_der: &[u8]) -> Result<Issued, CaError> {
        let checked = self.check_csr(csr_der)?;
        self.issue_checked(&checked)
    }

    /// The checks of [`CertificateAuthority::issue`], without signing:
    /// the enrollment decides on the SID before anything is issued.
    pub fn check_csr<'a>(&self, csr_der: &'a [u8]) -> Result<CheckedCsr<'a>, CaError> {
        let csr = csr::CsrParts::parse(csr_der).map_err(CaError::MalformedCsr)?;
        let key = csr::StudentKey::parse(csr.spki)?;
        csr.verify_signature(&key, &self.p256)?;
        let cn = csr.common_name()?.ok_or(CaError::MissingCn)?;
        sid::validate(&cn).map_err(CaError::BadSid)?;
        Ok(CheckedCsr {
            sid: cn,
            spki: csr.spki,
            key,
        })
    }

    /// Issues for a CSR [`CertificateAuthority::check_csr`] accepted.
    pub fn issue_checked(&self, csr: &CheckedCsr<'_>) -> Result<Issued, CaError> {
        self.profile
            .sign(&self.key, self.validity_days, &csr.sid, csr.spki, &csr.key)
    }

    /// Issues a certificate for `sid` and an already checked public key
    /// (legacy mode, where the server made the key).
    pub fn issue_for(&self, sid: &str, pubkey: &PKeyRef<Public>) -> Result<Issued, CaError> {
        let sid = sid::validate(sid).map_err(CaError::BadSid)?;
        let spki = pubkey.public_key_to_der()?;
        let key = csr::StudentKey::parse(&spki)?;
        self.profile
            .sign(&self.key, self.validity_days, sid, &spki, &key)
    }
}

/// A CSR whose signature, key and SID hold up, not yet signed.
pub struct CheckedCsr<'a> {
    sid: String,
    spki: &'a [u8],
    key: csr::StudentKey<'a>,
}

impl CheckedCsr<'_> {
    /// The SID its subject CN names.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Whether its key is RSA (the enrollment service certifies nothing
    /// else: Blackboard sends the session key with RSA-OAEP).
    pub fn key_is_rsa(&self) -> bool {
        self.key.family == csr::KeyFamily::Rsa
    }
}

impl fmt::Debug for CheckedCsr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedCsr")
            .field("sid", &self.sid)
            .finish()
    }
}

/// Helpers the children's tests share (the fixtures themselves are in
/// [`crate::testing`]).
#[cfg(test)]
mod test_support {
    use openssl::error::ErrorStack;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509};
    use std::path::Path;

    use super::{CaError, CaKeyType, CertificateAuthority};
    use crate::testing::CaParams;

    pub(super) use crate::client::make_csr;
    pub(super) use crate::testing::{p256_key, rsa_key};

    pub(super) type TestResult = Result<(), Box<dyn std::error::Error>>;

    pub(super) fn test_ca(dir: &Path, kind: CaKeyType) -> Result<CertificateAuthority, CaError> {
        CaParams {
            kind,
            ..CaParams::default()
        }
        .create(dir)
    }

    pub(super) fn ext_text(cert: &X509) -> String {
        String::from_utf8_lossy(&cert.to_text().unwrap_or_default()).into_owned()
    }

    pub(super) fn verifies_under_root(
        ca: &CertificateAuthority,
        cert: &X509,
    ) -> Result<bool, ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(ca.cert().clone())?;
        let store = store.build();
        let mut ctx = X509StoreContext::new()?;
        let chain: Stack<X509> = Stack::new()?;
        ctx.init(&store, cert, &chain, |c| c.verify_cert())
    }
}
