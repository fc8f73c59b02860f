//! The certificate authority ("CUHK"): its root key and certificate, and
//! issuance of student certificates from CSRs. It knows certificates, not
//! connections: the CA service in `service.rs` drives it.
//!
//! Issuance follows one fixed profile. From the CSR only two things are
//! taken: the subject's CN (the SID) and the public key; every attribute and
//! requested extension is ignored, so a CSR asking for CA:TRUE or
//! keyCertSign gets an ordinary leaf certificate.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{
    CrlNumber, X509Builder, X509Crl, X509CrlBuilder, X509Name, X509NameRef, X509Req,
    X509RevokedBuilder, X509,
};

use crate::sid::{self, SidError};

/// File name of the encrypted root key inside the keys dir.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// File name of the root certificate inside the keys dir.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// Shortest passphrase accepted when a new root key is created.
pub const MIN_PASSPHRASE_LEN: usize = 8;
/// Validity of the root certificate.
const ROOT_VALIDITY_DAYS: u32 = 3650;

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
    /// The CSR is not a parseable PKCS#10 request.
    MalformedCsr(ErrorStack),
    /// The CSR's signature does not verify with its own public key.
    CsrSignature,
    /// The CSR's subject has no usable CN.
    MissingCn,
    /// The CN is not a valid SID.
    BadSid(SidError),
    /// The CSR's key is of a type or size the CA does not certify.
    UnsupportedKey(String),
    /// OpenSSL failed while building or signing.
    Crypto(ErrorStack),
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
            CaError::MalformedCsr(e) => write!(f, "the CSR is not valid PKCS#10 DER: {e}"),
            CaError::CsrSignature => write!(
                f,
                "the CSR's signature does not verify with its public key (no proof of possession)"
            ),
            CaError::MissingCn => write!(f, "the CSR's subject has no common name (the SID)"),
            CaError::BadSid(e) => write!(f, "the CSR's common name is not a valid SID: {e}"),
            CaError::UnsupportedKey(what) => write!(f, "unsupported key in the CSR: {what}"),
            CaError::Crypto(e) => write!(f, "OpenSSL error: {e}"),
        }
    }
}

impl std::error::Error for CaError {}

impl From<ErrorStack> for CaError {
    fn from(e: ErrorStack) -> Self {
        CaError::Crypto(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate the CA has just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The SID it certifies.
    pub sid: String,
    /// Serial number, upper-case hex without leading zeros.
    pub serial_hex: String,
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

/// The paths of the root files in a keys dir.
pub fn root_paths(keys_dir: &Path) -> (PathBuf, PathBuf) {
    (keys_dir.join(CA_KEY_FILE), keys_dir.join(CA_CERT_FILE))
}

/// Whether a keys dir already holds a root (both files).
pub fn root_exists(keys_dir: &Path) -> bool {
    let (k, c) = root_paths(keys_dir);
    k.exists() && c.exists()
}

/// A random, positive serial of 16 bytes (126 random bits; the top bits are
/// fixed so every serial has the same DER length and is never negative).
pub fn random_serial() -> Result<BigNum, ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    BigNum::from_slice(&bytes)
}

/// Writes `data` to `path` atomically (temporary file, fsync, rename) with
/// the given mode, refusing to replace an existing file.
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    if path.exists() {
        return Err(CaError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite"),
        });
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

fn make_root_key(kind: CaKeyType) -> Result<PKey<Private>, ErrorStack> {
    match kind {
        CaKeyType::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?),
        CaKeyType::P256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)
        }
    }
}

fn make_root_cert(key: &PKeyRef<Private>) -> Result<X509, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "CUHK")?;
    name.append_entry_by_nid(Nid::COMMONNAME, "CUHK certboard Root CA")?;
    let name = name.build();

    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = random_serial()?;
    b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(ROOT_VALIDITY_DAYS)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn check_passphrase_strength(passphrase: &[u8]) -> Result<(), CaError> {
    if passphrase.len() < MIN_PASSPHRASE_LEN {
        return Err(CaError::WeakPassphrase);
    }
    Ok(())
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
        let (key_path, cert_path) = root_paths(keys_dir);
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => {
                let ca = Self::load(&key_path, &cert_path, passphrase, validity_days)?;
                Ok((ca, RootOrigin::Loaded))
            }
            (false, false) => {
                check_passphrase_strength(passphrase)?;
                fs::create_dir_all(keys_dir).map_err(io_err(keys_dir))?;
                let key = make_root_key(kind)?;
                let cert = make_root_cert(&key)?;
                let pem =
                    key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), passphrase)?;
                write_new_file(&key_path, &pem, 0o600)?;
                write_new_file(&cert_path, &cert.to_pem()?, 0o644)?;
                let ca = Self::from_parts(key, cert, validity_days)?;
                Ok((ca, RootOrigin::Created))
            }
            (true, false) => Err(CaError::HalfRoot {
                present: key_path,
                missing: cert_path,
            }),
            (false, true) => Err(CaError::HalfRoot {
                present: cert_path,
                missing: key_path,
            }),
        }
    }

    fn load(
        key_path: &Path,
        cert_path: &Path,
        passphrase: &[u8],
        validity_days: u32,
    ) -> Result<CertificateAuthority, CaError> {
        let key_pem = fs::read(key_path).map_err(io_err(key_path))?;
        let key = PKey::private_key_from_pem_passphrase(&key_pem, passphrase)
            .map_err(|_| CaError::BadPassphrase(key_path.to_path_buf()))?;
        let cert_pem = fs::read(cert_path).map_err(io_err(cert_path))?;
        let cert = X509::from_pem(&cert_pem)
            .map_err(|_| CaError::RootMismatch(cert_path.to_path_buf()))?;
        let matches = cert
            .public_key()
            .map(|pk| pk.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(CaError::RootMismatch(cert_path.to_path_buf()));
        }
        Self::from_parts(key, cert, validity_days)
    }

    fn from_parts(
        key: PKey<Private>,
        cert: X509,
        validity_days: u32,
    ) -> Result<CertificateAuthority, CaError> {
        let cert_der = cert.to_der()?;
        Ok(CertificateAuthority {
            key,
            cert,
            cert_der,
            validity_days,
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

    /// Checks a CSR and issues a certificate for its SID and key.
    pub fn issue(&self, csr_der: &[u8]) -> Result<Issued, CaError> {
        let req = X509Req::from_der(csr_der).map_err(CaError::MalformedCsr)?;
        let pubkey = req.public_key().map_err(CaError::MalformedCsr)?;
        if !req.verify(&pubkey).unwrap_or(false) {
            // Clear OpenSSL's error queue so it does not leak into the next call.
            let _ = ErrorStack::get();
            return Err(CaError::CsrSignature);
        }
        check_student_key(&pubkey)?;
        let cn = req
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .ok_or(CaError::MissingCn)?;
        let cn = cn.data().to_string().map_err(|_| CaError::MissingCn)?;
        let sid = sid::validate(&cn).map_err(CaError::BadSid)?.to_string();
        self.issue_for(&sid, &pubkey)
    }

    /// Issues a certificate for `sid` and an already checked public key.
    pub fn issue_for(&self, sid: &str, pubkey: &PKeyRef<Public>) -> Result<Issued, CaError> {
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, sid)?;
        let name = name.build();

        let serial = random_serial()?;
        let not_before = Asn1Time::days_from_now(0)?;
        let not_after = Asn1Time::days_from_now(self.validity_days)?;

        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_pubkey(pubkey)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        b.append_extension(leaf_key_usage(pubkey)?)?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(aki)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        let cert = b.build();

        Ok(Issued {
            sid: sid.to_string(),
            serial_hex: serial.to_hex_str()?.to_string(),
            not_before: unix_time(&not_before)?,
            not_after: unix_time(&not_after)?,
            der: cert.to_der()?,
        })
    }
}

/// The leaf's key usage: digitalSignature for the TLS handshake, plus
/// keyEncipherment for RSA keys only (Blackboard encrypts the session key to
/// an RSA student key). RFC 5480 section 3 forbids keyEncipherment on an EC
/// key, so a P-256 student gets digitalSignature alone.
fn leaf_key_usage(pubkey: &PKeyRef<Public>) -> Result<openssl::x509::X509Extension, ErrorStack> {
    let mut ku = KeyUsage::new();
    ku.critical().digital_signature();
    if pubkey.id() == Id::RSA {
        ku.key_encipherment();
    }
    ku.build()
}

/// Days a CRL stays current (its nextUpdate).
pub const CRL_VALIDITY_DAYS: u32 = 7;

impl CertificateAuthority {
    /// A CRL listing `revoked` (serial hex, revocation time), signed by the
    /// root, with the given CRL number.
    pub fn crl(&self, revoked: &[(String, i64)], number: u64) -> Result<X509Crl, CaError> {
        let mut b = X509CrlBuilder::new()?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_last_update(Asn1Time::days_from_now(0)?.as_ref())?;
        b.set_next_update(Asn1Time::days_from_now(CRL_VALIDITY_DAYS)?.as_ref())?;
        let dummy = X509Builder::new()?;
        let ctx = dummy.x509v3_context(Some(&self.cert), None);
        b.append_extension(AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?)?;
        b.append_extension(CrlNumber::new(BigNum::from_dec_str(&number.to_string())?)?.build()?)?;
        for (serial_hex, at) in revoked {
            let serial = BigNum::from_hex_str(serial_hex)?;
            let mut r = X509RevokedBuilder::new()?;
            r.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
            r.set_revocation_date(Asn1Time::from_unix(*at)?.as_ref())?;
            b.add_revoked(r.build())?;
        }
        b.sort()?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(b.build()?)
    }
}

/// Seconds since the Unix epoch of an ASN.1 time.
pub fn unix_time(t: &openssl::asn1::Asn1TimeRef) -> Result<i64, ErrorStack> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// The key types the CA certifies for students: RSA of 2048 to 4096 bits
/// (Blackboard needs RSA to encrypt the session key) and EC P-256.
fn check_student_key(key: &PKeyRef<Public>) -> Result<(), CaError> {
    match key.id() {
        Id::RSA => {
            let bits = key.bits();
            if (2048..=4096).contains(&bits) {
                Ok(())
            } else {
                Err(CaError::UnsupportedKey(format!(
                    "RSA-{bits} (2048 to 4096 bits accepted)"
                )))
            }
        }
        Id::EC => {
            let ec = key.ec_key()?;
            if ec.group().curve_name() == Some(Nid::X9_62_PRIME256V1) {
                Ok(())
            } else {
                Err(CaError::UnsupportedKey("EC key not on P-256".into()))
            }
        }
        other => Err(CaError::UnsupportedKey(format!("key type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509Extension, X509ReqBuilder, X509StoreContext};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn test_ca(dir: &Path, kind: CaKeyType) -> Result<CertificateAuthority, CaError> {
        Ok(CertificateAuthority::open(dir, b"correct horse", kind, 30)?.0)
    }

    pub(crate) fn csr(sid: &str, key: &PKey<Private>) -> Result<X509Req, ErrorStack> {
        let mut b = X509ReqBuilder::new()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, sid)?;
        b.set_subject_name(&name.build())?;
        b.set_pubkey(key)?;
        b.sign(key, MessageDigest::sha256())?;
        Ok(b.build())
    }

    fn rsa_key() -> Result<PKey<Private>, ErrorStack> {
        PKey::from_rsa(Rsa::generate(2048)?)
    }

    fn ext_text(cert: &X509) -> String {
        String::from_utf8_lossy(&cert.to_text().unwrap_or_default()).into_owned()
    }

    #[test]
    fn issues_the_fixed_profile_for_both_root_types() -> TestResult {
        for kind in [CaKeyType::Rsa2048, CaKeyType::P256] {
            let dir = tempfile::tempdir()?;
            let ca = test_ca(dir.path(), kind)?;
            let key = rsa_key()?;
            let issued = ca.issue(&csr("1155000001", &key)?.to_der()?)?;
            let cert = X509::from_der(&issued.der)?;
            assert_eq!(issued.sid, "1155000001");
            assert!(cert.public_key()?.public_eq(&key));
            assert_eq!(
                name_text(cert.subject_name()),
                "CN=1155000001",
                "subject is the SID alone"
            );
            let text = ext_text(&cert);
            for needle in [
                "CA:FALSE",
                "Digital Signature, Key Encipherment",
                "TLS Web Client Authentication",
                "X509v3 Subject Key Identifier",
                "X509v3 Authority Key Identifier",
            ] {
                assert!(
                    text.contains(needle),
                    "{kind:?}: missing {needle} in\n{text}"
                );
            }
            let serial = cert.serial_number().to_bn()?;
            assert_eq!(serial.num_bits(), 127, "16-byte positive serial");
            assert_eq!(serial.to_hex_str()?.to_string(), issued.serial_hex);
            assert_eq!(issued.not_after - issued.not_before, 30 * 86_400);

            // It chains to the root under OpenSSL's own verifier.
            let mut store = X509StoreBuilder::new()?;
            store.add_cert(ca.cert().clone())?;
            let store = store.build();
            let mut ctx = X509StoreContext::new()?;
            let chain: Stack<X509> = Stack::new()?;
            let ok = ctx.init(&store, &cert, &chain, |c| c.verify_cert())?;
            assert!(ok, "{kind:?}: {}", ctx.error());
        }
        Ok(())
    }

    #[test]
    fn root_has_ca_extensions_and_reloads() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (ca, origin) =
            CertificateAuthority::open(dir.path(), b"correct horse", CaKeyType::Rsa2048, 30)?;
        assert_eq!(origin, RootOrigin::Created);
        let text = ext_text(ca.cert());
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
        let mode = fs::metadata(dir.path().join(CA_KEY_FILE))?.permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        let key_pem = fs::read_to_string(dir.path().join(CA_KEY_FILE))?;
        assert!(key_pem.contains("ENCRYPTED PRIVATE KEY"));

        let (again, origin) =
            CertificateAuthority::open(dir.path(), b"correct horse", CaKeyType::P256, 30)?;
        assert_eq!(origin, RootOrigin::Loaded);
        assert_eq!(again.cert_der(), ca.cert_der());
        Ok(())
    }

    #[test]
    fn wrong_passphrase_is_refused_and_nothing_is_overwritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        test_ca(dir.path(), CaKeyType::P256)?;
        let before = fs::read(dir.path().join(CA_KEY_FILE))?;
        let err = CertificateAuthority::open(dir.path(), b"wrong passphrase", CaKeyType::P256, 30)
            .err()
            .ok_or("opened with a wrong passphrase")?;
        assert!(matches!(err, CaError::BadPassphrase(_)), "{err}");
        assert_eq!(fs::read(dir.path().join(CA_KEY_FILE))?, before);
        Ok(())
    }

    #[test]
    fn weak_passphrase_and_half_root_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let err = CertificateAuthority::open(dir.path(), b"short", CaKeyType::P256, 30).err();
        assert!(matches!(err, Some(CaError::WeakPassphrase)));
        assert!(!dir.path().join(CA_KEY_FILE).exists());
        test_ca(dir.path(), CaKeyType::P256)?;
        fs::remove_file(dir.path().join(CA_CERT_FILE))?;
        let err =
            CertificateAuthority::open(dir.path(), b"correct horse", CaKeyType::P256, 30).err();
        assert!(matches!(err, Some(CaError::HalfRoot { .. })));
        Ok(())
    }

    #[test]
    fn csr_extensions_are_not_copied() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = rsa_key()?;
        let mut b = X509ReqBuilder::new()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "alice")?;
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Evil Corp")?;
        b.set_subject_name(&name.build())?;
        b.set_pubkey(&key)?;
        let mut exts = Stack::<X509Extension>::new()?;
        exts.push(BasicConstraints::new().critical().ca().build()?)?;
        exts.push(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.add_extensions(&exts)?;
        b.sign(&key, MessageDigest::sha256())?;
        let issued = ca.issue(&b.build().to_der()?)?;
        let cert = X509::from_der(&issued.der)?;
        let text = ext_text(&cert);
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(!text.contains("CA:TRUE"), "{text}");
        assert!(!text.contains("Certificate Sign"), "{text}");
        assert!(!text.contains("Evil Corp"), "only the CN is copied: {text}");
        Ok(())
    }

    #[test]
    fn bad_csr_signature_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let mut der = csr("alice", &rsa_key()?)?.to_der()?;
        // The signature is the last field: flip a bit in it.
        let last = der.len() - 5;
        der[last] ^= 0x01;
        let err = ca.issue(&der).err().ok_or("issued for a forged CSR")?;
        assert!(matches!(err, CaError::CsrSignature), "{err}");
        Ok(())
    }

    #[test]
    fn bad_sids_and_garbage_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = rsa_key()?;
        for sid in ["has space", "semi;colon", "ünïcode", &"x".repeat(33)] {
            let err = ca.issue(&csr(sid, &key)?.to_der()?).err();
            assert!(matches!(err, Some(CaError::BadSid(_))), "{sid}: {err:?}");
        }
        let err = ca.issue(b"not a csr").err();
        assert!(matches!(err, Some(CaError::MalformedCsr(_))), "{err:?}");
        Ok(())
    }

    #[test]
    fn ec_student_keys_get_no_key_encipherment() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::Rsa2048)?;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let issued = ca.issue(&csr("1155000001", &key)?.to_der()?)?;
        let text = ext_text(&X509::from_der(&issued.der)?);
        assert!(text.contains("Digital Signature"), "{text}");
        assert!(!text.contains("Key Encipherment"), "RFC 5480: {text}");
        Ok(())
    }

    #[test]
    fn small_rsa_keys_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = PKey::from_rsa(Rsa::generate(1024)?)?;
        let err = ca.issue(&csr("alice", &key)?.to_der()?).err();
        assert!(matches!(err, Some(CaError::UnsupportedKey(_))), "{err:?}");
        Ok(())
    }
}
