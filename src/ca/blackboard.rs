//! Blackboard's own key and certificate (protocol version 2): issued by
//! the root with the server profile (`profile.rs`, the one leaf writer),
//! kept as two files in the keys dir, renewed when a third of its life
//! remains. Blackboard signs the transcript of every exchange with it and
//! every receipt (CMS SignedData), so a student can tell the real
//! Blackboard from anything answering in its place.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use log::{info, warn};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::sign::Signer;
use openssl::x509::{X509Ref, X509};

use super::{io_err, write_err, CaError, CertificateAuthority};
use crate::der;
use crate::time::{now_unix, unix_time};

/// File name of Blackboard's private key (PKCS#8 PEM, mode 0600) in the
/// keys dir.
pub const BLACKBOARD_KEY_FILE: &str = "blackboard-key.pem";
/// File name of Blackboard's certificate in the keys dir.
pub const BLACKBOARD_CERT_FILE: &str = "blackboard-cert.pem";
/// The name Blackboard's certificate carries when none is configured.
/// Two labels, not the design's bare `blackboard`: pkilint (and the CA/B
/// Forum's rules it follows) refuses a single-label dNSName, and `.invalid`
/// (RFC 2606) can never resolve to anybody's host: the name is an identity
/// the client checks, never looked up.
pub const DEFAULT_BLACKBOARD_NAME: &str = "blackboard.invalid";
/// How long a Blackboard certificate is valid (after the usual backdating).
pub const BLACKBOARD_LIFETIME_SECS: i64 = 7 * 86_400;
/// Least time between two attempts at a renewal that failed (or, without
/// the root key, between two looks at the files for a fresh certificate).
const RETRY_SECS: i64 = 60;

/// Why the keys dir holds no usable Blackboard certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlackboardCertProblem {
    /// One of the two files is missing.
    Missing,
    /// The certificate does not belong to the key beside it.
    KeyMismatch,
    /// The certificate was not issued by the root this Blackboard trusts.
    NotThisRoot,
    /// The certificate has expired.
    Expired,
}

impl fmt::Display for BlackboardCertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlackboardCertProblem::Missing => "missing",
            BlackboardCertProblem::KeyMismatch => "does not belong to the key beside it",
            BlackboardCertProblem::NotThisRoot => "was not issued by this root",
            BlackboardCertProblem::Expired => "has expired",
        })
    }
}

/// Checks a Blackboard name: a DNS name of at least two labels (RFC 1035
/// preferred syntax, lower case), since it goes into the certificate's
/// dNSName.
pub fn check_name(name: &str) -> Result<(), CaError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    // At least two labels: a single-label dNSName fails RFC 5280 linters.
    if name.len() <= 253 && name.contains('.') && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(CaError::BadBlackboardName(name.to_string()))
    }
}

/// Blackboard's key and certificate.
pub struct BlackboardIdentity {
    key: PKey<Private>,
    cert: X509,
    cert_der: Vec<u8>,
    name: String,
    not_before: i64,
    not_after: i64,
}

impl fmt::Debug for BlackboardIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlackboardIdentity")
            .field("name", &self.name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl BlackboardIdentity {
    fn from_parts(key: PKey<Private>, cert: X509) -> Result<BlackboardIdentity, ErrorStack> {
        let name = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        Ok(BlackboardIdentity {
            cert_der: cert.to_der()?,
            not_before: unix_time(cert.not_before())?,
            not_after: unix_time(cert.not_after())?,
            key,
            cert,
            name,
        })
    }

    /// The certificate.
    pub fn cert(&self) -> &X509Ref {
        &self.cert
    }

    /// The certificate, DER (what `SessionOffer` carries and the
    /// transcript covers).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The name in its CN and dNSName.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// End of validity, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// When it is due for renewal: once less than a third of its life
    /// remains.
    pub fn renew_after(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }

    /// Signs `data` with SHA-256 (ECDSA, DER-encoded signature).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        let mut s = Signer::new(MessageDigest::sha256(), &self.key)?;
        s.sign_oneshot_to_vec(data)
    }

    /// Signs a SHA-256 digest already computed (the offer's transcript
    /// hash, which the session keys need anyway): the same ECDSA signature
    /// as [`sign`](Self::sign) of the data, without hashing it twice.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, ErrorStack> {
        let mut ctx = PkeyCtx::new(&self.key)?;
        ctx.sign_init()?;
        // Also refuses a digest of any other length.
        ctx.set_signature_md(Md::sha256())?;
        let mut sig = Vec::with_capacity(72);
        ctx.sign_to_vec(digest, &mut sig)?;
        Ok(sig)
    }

    /// A CMS SignedData over `content` (DER, content attached, signer
    /// certificate included, SHA-256, no S/MIME capabilities attribute).
    pub fn sign_receipt(&self, content: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        let flags = CMSOptions::BINARY | CMSOptions::NOSMIMECAP;
        CmsContentInfo::sign(
            Some(&self.cert),
            Some(&self.key),
            None,
            Some(content),
            flags,
        )?
        .to_der()
    }

    /// The key's PEM (PKCS#8, unencrypted: the server signs with it on
    /// every submission without a passphrase; the file is mode 0600).
    fn key_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.key.private_key_to_pem_pkcs8()
    }

    /// Writes both files into `dir` (created if needed), each atomically,
    /// the key first: a crash between the two leaves a certificate that
    /// does not match its key, which the next start notices and renews.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        crate::fsutil::create_private_dir_all(dir).map_err(io_err(dir))?;
        let (key_path, cert_path) = paths(dir);
        crate::fsutil::write_private_atomic(&key_path, &self.key_pem()?, 0o600)
            .map_err(write_err(&key_path))?;
        crate::fsutil::write_private_atomic(&cert_path, &self.cert.to_pem()?, 0o644)
            .map_err(write_err(&cert_path))?;
        Ok(())
    }

    /// Loads the files from `dir` and checks that they belong together and
    /// that the certificate was issued by `root`.
    pub fn load(dir: &Path, root: &X509Ref) -> Result<BlackboardIdentity, CaError> {
        let (key_path, cert_path) = paths(dir);
        if !key_path.exists() || !cert_path.exists() {
            return Err(problem(dir, BlackboardCertProblem::Missing));
        }
        let key_pem = fs::read(&key_path).map_err(io_err(&key_path))?;
        let key = PKey::private_key_from_pem(&key_pem)
            .map_err(|_| problem(dir, BlackboardCertProblem::KeyMismatch))?;
        let cert_pem = fs::read(&cert_path).map_err(io_err(&cert_path))?;
        let cert = X509::from_pem(&cert_pem)
            .map_err(|_| problem(dir, BlackboardCertProblem::KeyMismatch))?;
        if !cert.public_key()?.public_eq(&key) {
            return Err(problem(dir, BlackboardCertProblem::KeyMismatch));
        }
        if !cert.verify(root.public_key()?.as_ref()).unwrap_or(false) {
            return Err(problem(dir, BlackboardCertProblem::NotThisRoot));
        }
        Ok(BlackboardIdentity::from_parts(key, cert)?)
    }
}

fn problem(dir: &Path, why: BlackboardCertProblem) -> CaError {
    CaError::BlackboardCert {
        dir: dir.to_path_buf(),
        why,
    }
}

/// The paths of Blackboard's key and certificate in a keys dir.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join(BLACKBOARD_KEY_FILE),
        dir.join(BLACKBOARD_CERT_FILE),
    )
}

impl CertificateAuthority {
    /// Makes a fresh P-256 key for Blackboard and certifies it under
    /// `name` with the server profile, valid [`BLACKBOARD_LIFETIME_SECS`].
    pub fn issue_blackboard(&self, name: &str) -> Result<BlackboardIdentity, CaError> {
        check_name(name)?;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let spki = key.public_key_to_der()?;
        let bits = der::spki_parts(&spki)
            .map_err(CaError::MalformedCsr)?
            .bits
            .to_vec();
        let issued =
            self.profile
                .sign_server(&self.key, BLACKBOARD_LIFETIME_SECS, name, &spki, &bits)?;
        let cert = X509::from_der(&issued.der)?;
        Ok(BlackboardIdentity::from_parts(key, cert)?)
    }
}

/// How [`BlackboardKeys::open`] found Blackboard's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysOrigin {
    /// Loaded from the keys dir, still good.
    Loaded,
    /// Issued now (none was there, or it was due for renewal, or for
    /// another name) and written to the keys dir.
    Issued,
    /// Loaded, due for renewal, and no root key here to renew it with.
    DueWithoutCa,
}

/// Blackboard's current identity, shared by every reactor, renewed in
/// place: each exchange takes the current one ([`BlackboardKeys::current`]),
/// and an exchange under way keeps the one it started with.
pub struct BlackboardKeys {
    dir: PathBuf,
    name: String,
    /// The root it must chain to (a reloaded certificate is checked too).
    root: X509,
    current: RwLock<Arc<BlackboardIdentity>>,
    /// When a renewal was last tried (Unix seconds); held while trying, so
    /// only one reactor tries at a time.
    last_attempt: Mutex<i64>,
}

impl fmt::Debug for BlackboardKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlackboardKeys")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BlackboardKeys {
    /// Loads Blackboard's key and certificate from `dir`, or, when they are
    /// missing, due for renewal, for another name or not from `root`,
    /// issues new ones with `ca` (when this process holds the root key) and
    /// writes them there. Without `ca`, a certificate due for renewal is
    /// used (with a warning) until it expires; a missing or expired one is
    /// an error that says how to get one.
    pub fn open(
        dir: &Path,
        name: &str,
        ca: Option<&CertificateAuthority>,
        root: &X509Ref,
    ) -> Result<(BlackboardKeys, KeysOrigin), CaError> {
        check_name(name)?;
        let now = now_unix();
        let loaded = BlackboardIdentity::load(dir, root);
        let (identity, origin) = match (loaded, ca) {
            (Ok(id), _) if id.name == name && now < id.renew_after() => (id, KeysOrigin::Loaded),
            (_, Some(ca)) => {
                let id = ca.issue_blackboard(name)?;
                id.save(dir)?;
                (id, KeysOrigin::Issued)
            }
            (Ok(id), None) if now < id.not_after => (id, KeysOrigin::DueWithoutCa),
            (Ok(_), None) => return Err(problem(dir, BlackboardCertProblem::Expired)),
            (Err(e), None) => return Err(e),
        };
        Ok((
            BlackboardKeys {
                dir: dir.to_path_buf(),
                name: name.to_string(),
                root: root.to_owned(),
                current: RwLock::new(Arc::new(identity)),
                last_attempt: Mutex::new(i64::MIN / 2),
            },
            origin,
        ))
    }

    fn read(&self) -> Arc<BlackboardIdentity> {
        // A poisoned lock still holds a whole Arc: a swap cannot half-happen.
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The identity to use now. Cheap (a clock read and a comparison)
    /// unless the certificate is due for renewal: then one caller renews it
    /// with `ca` (a fresh P-256 key and a signature, written to the keys
    /// dir) or, without the root key here, looks in the keys dir for a
    /// newer one an operator put there (`server blackboard-cert`); at most
    /// once a minute, and the others carry on with the current one.
    pub fn current(&self, ca: Option<&CertificateAuthority>) -> Arc<BlackboardIdentity> {
        let cur = self.read();
        let now = now_unix();
        if now < cur.renew_after() {
            return cur;
        }
        let Ok(mut last) = self.last_attempt.try_lock() else {
            return cur;
        };
        if now < *last + RETRY_SECS {
            return cur;
        }
        *last = now;
        let fresh = match ca {
            Some(ca) => ca.issue_blackboard(&self.name).and_then(|id| {
                id.save(&self.dir)?;
                Ok(id)
            }),
            None => BlackboardIdentity::load(&self.dir, &self.root),
        };
        match fresh {
            Ok(id) if id.not_after > cur.not_after && id.name == self.name => {
                info!(
                    "Blackboard certificate renewed in {} (valid until {})",
                    self.dir.display(),
                    crate::time::time_text(id.not_after)
                );
                let id = Arc::new(id);
                match self.current.write() {
                    Ok(mut g) => *g = Arc::clone(&id),
                    Err(p) => *p.into_inner() = Arc::clone(&id),
                }
                id
            }
            Ok(_) => {
                warn!(
                    "Blackboard certificate expires {}: no root key here to renew it; run \
                     `server blackboard-cert --out DIR` where the root key is and put the files \
                     in {}",
                    crate::time::time_text(cur.not_after),
                    self.dir.display()
                );
                cur
            }
            Err(e) => {
                warn!("Blackboard certificate renewal failed: {e}");
                cur
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{ext_text, test_ca, verifies_under_root, TestResult};
    use super::super::CaKeyType;
    use super::*;

    #[test]
    fn names_are_dns_names_of_two_labels_or_more() {
        for good in [
            "blackboard.invalid",
            "bb-1.cuhk.edu.hk",
            DEFAULT_BLACKBOARD_NAME,
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "blackboard",
            "",
            "Blackboard.invalid",
            "-bb.invalid",
            "bb..x",
            "b b.x",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_server_profile_signs_chains_and_saves() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(&dir.path().join("keys"), CaKeyType::Rsa2048)?;
        let id = ca.issue_blackboard("bb.example.test")?;
        assert!(verifies_under_root(&ca, &X509::from_der(id.cert_der())?)?);
        let text = ext_text(&X509::from_der(id.cert_der())?);
        for needle in [
            "CA:FALSE",
            "Digital Signature",
            "TLS Web Server Authentication",
            "DNS:bb.example.test",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            "ASN1 OID: prime256v1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains("Client Authentication"), "{text}");
        assert!(!text.contains("Key Encipherment"), "{text}");
        assert_eq!(id.not_after() - id.not_before, BLACKBOARD_LIFETIME_SECS);
        assert_eq!(id.name(), "bb.example.test");
        // Saved with a private key file; loaded back, checked against the root.
        let out = dir.path().join("out");
        id.save(&out)?;
        use std::os::unix::fs::PermissionsExt;
        let (key_path, _) = paths(&out);
        assert_eq!(fs::metadata(&key_path)?.permissions().mode() & 0o777, 0o600);
        let back = BlackboardIdentity::load(&out, ca.cert())?;
        assert_eq!(back.cert_der(), id.cert_der());
        let other = test_ca(&dir.path().join("other"), CaKeyType::P256)?;
        assert!(matches!(
            BlackboardIdentity::load(&out, other.cert()),
            Err(CaError::BlackboardCert {
                why: BlackboardCertProblem::NotThisRoot,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn open_issues_once_then_loads_and_renews_for_a_new_name() -> TestResult {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys");
        let ca = test_ca(&keys, CaKeyType::P256)?;
        let (a, origin) = BlackboardKeys::open(&keys, "bb.invalid", Some(&ca), ca.cert())?;
        assert_eq!(origin, KeysOrigin::Issued);
        let (b, origin) = BlackboardKeys::open(&keys, "bb.invalid", Some(&ca), ca.cert())?;
        assert_eq!(origin, KeysOrigin::Loaded);
        assert_eq!(a.current(None).cert_der(), b.current(None).cert_der());
        // Without the root key, a loaded certificate is used as it is...
        let (c, origin) = BlackboardKeys::open(&keys, "bb.invalid", None, ca.cert())?;
        assert_eq!(origin, KeysOrigin::Loaded);
        assert_eq!(c.current(None).cert_der(), a.current(None).cert_der());
        // ...a missing one is an error that says what to run.
        let empty = dir.path().join("empty");
        let err = BlackboardKeys::open(&empty, "bb.invalid", None, ca.cert()).unwrap_err();
        assert!(err.to_string().contains("server blackboard-cert"), "{err}");
        // Another name: a new certificate.
        let (d, origin) = BlackboardKeys::open(&keys, "other.invalid", Some(&ca), ca.cert())?;
        assert_eq!(origin, KeysOrigin::Issued);
        assert_eq!(d.current(None).name(), "other.invalid");
        Ok(())
    }

    #[test]
    fn a_receipt_signature_is_cms_signed_data_with_the_signer_certificate() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let id = ca.issue_blackboard(DEFAULT_BLACKBOARD_NAME)?;
        let der = id.sign_receipt(b"{\"x\":1}")?;
        let mut cms = CmsContentInfo::from_der(&der)?;
        let mut out = Vec::new();
        let mut store = openssl::x509::store::X509StoreBuilder::new()?;
        store.add_cert(ca.cert().clone())?;
        store.set_purpose(openssl::x509::X509PurposeId::ANY)?;
        let store = store.build();
        cms.verify(None, Some(&store), None, Some(&mut out), CMSOptions::BINARY)?;
        assert_eq!(out, b"{\"x\":1}");
        Ok(())
    }

    #[test]
    fn sign_digest_is_sign_of_the_hashed_data() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let id = ca.issue_blackboard(DEFAULT_BLACKBOARD_NAME)?;
        let data = b"certboard v2 transcript";
        let key = id.cert().public_key()?;
        for sig in [id.sign(data)?, id.sign_digest(&openssl::sha::sha256(data))?] {
            let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)?;
            assert!(v.verify_oneshot(&sig, data)?);
        }
        Ok(())
    }
}
