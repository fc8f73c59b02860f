//! Blackboard's own key and certificate (protocol version 2): issued by
//! the root with the server profile (`profile.rs`, the one leaf writer),
//! kept as two files in the keys dir, renewed when a third of its life
//! remains. Blackboard signs the transcript of every exchange with it and
//! every receipt (CMS SignedData), so a student can tell the real
//! Blackboard from anything answering in its place.
//!
//! Both signatures are made on every submission, so what can be prepared
//! is prepared once per identity: the receipt's SignedData is written here
//! around the certificate's bytes and its IssuerAndSerialNumber, both taken
//! at load (OpenSSL's `CMS_sign` rebuilt and re-encoded the whole
//! structure, certificate included, for every receipt: about as much work
//! again as the signature itself, BENCHMARKS.md), and both signatures are
//! ECDSA over a SHA-256 digest through one `EVP_PKEY_sign`. The receipt is
//! the SignedData `CMS_sign` makes, element for element (a unit test
//! compares the two), and `openssl cms -verify` checks it as before.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use log::{info, warn};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::md::Md;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::x509::{X509Ref, X509};

use super::{io_err, write_err, CaError, CertificateAuthority};
use crate::der::{self, oid, tag};
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
    /// The certificate's IssuerAndSerialNumber (RFC 5652 section 10.2.4),
    /// DER: how a receipt's SignerInfo names its signer.
    signer_id: Vec<u8>,
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
    fn from_parts(key: PKey<Private>, cert: X509) -> Result<BlackboardIdentity, CaError> {
        let name = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        let cert_der = cert.to_der()?;
        // OpenSSL's own encoding of a certificate it parsed: DER our
        // reader takes (as `profile.rs` reads the root's).
        let tbs = der::TbsCertificate::parse(&cert_der).map_err(CaError::MalformedCsr)?;
        let mut signer_id = Vec::new();
        der::write_nested(&mut signer_id, tag::SEQUENCE, |s| {
            s.extend_from_slice(tbs.issuer.raw);
            s.extend_from_slice(tbs.serial.raw);
        });
        Ok(BlackboardIdentity {
            signer_id,
            cert_der,
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
        self.sign_digest(&openssl::sha::sha256(data))
    }

    /// The signature [`BlackboardIdentity::sign`] makes of data whose
    /// SHA-256 digest is `digest`: one `EVP_PKEY_sign`, without the digest
    /// context `EVP_DigestSign` sets up around it.
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
    /// certificate included, SHA-256, no S/MIME capabilities attribute):
    /// what `CMS_sign(cert, key, NULL, content, CMS_BINARY | CMS_NOSMIMECAP)`
    /// makes, signed now.
    pub fn sign_receipt(&self, content: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        self.sign_receipt_at(content, now_unix())
    }

    /// [`BlackboardIdentity::sign_receipt`] with its signingTime given.
    fn sign_receipt_at(&self, content: &[u8], signing_time: i64) -> Result<Vec<u8>, ErrorStack> {
        let attrs = signed_attributes(&openssl::sha::sha256(content), signing_time);
        // The signature covers the attributes' DER under the SET OF tag
        // (RFC 5652 section 5.4), not the [0] they are sent under.
        let mut to_sign = Vec::with_capacity(attrs.len() + 2);
        der::write_tlv(&mut to_sign, tag::SET, &attrs);
        let signature = self.sign(&to_sign)?;
        let sha256 = |out: &mut Vec<u8>| {
            der::write_nested(out, tag::SEQUENCE, |a| {
                der::write_tlv(a, tag::OID, oid::SHA256)
            });
        };
        let mut out = Vec::with_capacity(self.cert_der.len() + content.len() + 400);
        der::write_nested(&mut out, tag::SEQUENCE, |ci| {
            der::write_tlv(ci, tag::OID, oid::CMS_SIGNED_DATA);
            der::write_nested(ci, tag::CONTEXT_0, |x| {
                der::write_nested(x, tag::SEQUENCE, |sd| {
                    // Version 1: the signer named by issuer and serial, and
                    // id-data content.
                    der::write_tlv(sd, tag::INTEGER, &[1]);
                    der::write_nested(sd, tag::SET, sha256);
                    der::write_nested(sd, tag::SEQUENCE, |eci| {
                        der::write_tlv(eci, tag::OID, oid::CMS_DATA);
                        der::write_nested(eci, tag::CONTEXT_0, |c| {
                            der::write_tlv(c, tag::OCTET_STRING, content);
                        });
                    });
                    // certificates [0] IMPLICIT SET OF: the signer's alone.
                    der::write_tlv(sd, tag::CONTEXT_0, &self.cert_der);
                    der::write_nested(sd, tag::SET, |infos| {
                        der::write_nested(infos, tag::SEQUENCE, |si| {
                            der::write_tlv(si, tag::INTEGER, &[1]);
                            si.extend_from_slice(&self.signer_id);
                            sha256(si);
                            der::write_tlv(si, tag::CONTEXT_0, &attrs);
                            der::write_nested(si, tag::SEQUENCE, |a| {
                                der::write_tlv(a, tag::OID, oid::ECDSA_WITH_SHA256);
                            });
                            der::write_tlv(si, tag::OCTET_STRING, &signature);
                        });
                    });
                });
            });
        });
        Ok(out)
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
        BlackboardIdentity::from_parts(key, cert)
    }
}

/// The content of a receipt's signedAttrs (RFC 5652 section 11): its
/// contentType (id-data), signingTime and messageDigest, in the order DER
/// sorts a SET OF (by encoding: all three are SEQUENCEs, of 24, 28 and 47
/// bytes while the time is a UTCTime, of 24, 30 and 47 from 2050).
fn signed_attributes(digest: &[u8; 32], signing_time: i64) -> Vec<u8> {
    let mut attrs = Vec::with_capacity(112);
    der::write_nested(&mut attrs, tag::SEQUENCE, |a| {
        der::write_tlv(a, tag::OID, oid::CMS_CONTENT_TYPE);
        der::write_nested(a, tag::SET, |v| der::write_tlv(v, tag::OID, oid::CMS_DATA));
    });
    der::write_nested(&mut attrs, tag::SEQUENCE, |a| {
        der::write_tlv(a, tag::OID, oid::CMS_SIGNING_TIME);
        der::write_nested(a, tag::SET, |v| {
            der::CivilTime::from_unix(signing_time).write(v)
        });
    });
    der::write_nested(&mut attrs, tag::SEQUENCE, |a| {
        der::write_tlv(a, tag::OID, oid::CMS_MESSAGE_DIGEST);
        der::write_nested(a, tag::SET, |v| {
            der::write_tlv(v, tag::OCTET_STRING, digest)
        });
    });
    attrs
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
        BlackboardIdentity::from_parts(key, cert)
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
    use crate::der::{DerError, Reader};
    use openssl::cms::{CMSOptions, CmsContentInfo};

    /// Every element of a DER structure in order: its tag, and a
    /// primitive's content, except what differs between two signatures of
    /// the same content: the signingTime's value and the signature (the
    /// last primitive).
    fn skeleton(der: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DerError> {
        fn walk(r: &mut Reader<'_>, out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), DerError> {
            while !r.is_empty() {
                let t = r.any()?;
                if t.tag & 0x20 != 0 {
                    out.push((t.tag, Vec::new()));
                    walk(&mut Reader::new(t.content), out)?;
                } else if t.tag == tag::UTC_TIME || t.tag == tag::GENERALIZED_TIME {
                    out.push((t.tag, Vec::new()));
                } else {
                    out.push((t.tag, t.content.to_vec()));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&mut Reader::new(der), &mut out)?;
        if let Some(last) = out.last_mut() {
            last.1.clear();
        }
        Ok(out)
    }

    #[test]
    fn a_receipt_is_the_signed_data_cms_sign_makes() -> TestResult {
        let dir = tempfile::tempdir()?;
        for (sub, kind) in [("p", CaKeyType::P256), ("r", CaKeyType::Rsa2048)] {
            let ca = test_ca(&dir.path().join(sub), kind)?;
            let id = ca.issue_blackboard(DEFAULT_BLACKBOARD_NAME)?;
            let content = b"{\"sid\":\"1155000001\",\"version\":2}";
            let ours = id.sign_receipt(content)?;
            let openssl = CmsContentInfo::sign(
                Some(&id.cert),
                Some(&id.key),
                None,
                Some(content),
                CMSOptions::BINARY | CMSOptions::NOSMIMECAP,
            )?
            .to_der()?;
            assert_eq!(skeleton(&ours)?, skeleton(&openssl)?);
            // The same one OpenSSL reads back: content, and signer by
            // issuer and serial.
            let mut cms = CmsContentInfo::from_der(&ours)?;
            let mut store = openssl::x509::store::X509StoreBuilder::new()?;
            store.add_cert(ca.cert().clone())?;
            store.set_purpose(openssl::x509::X509PurposeId::ANY)?;
            let store = store.build();
            let mut out = Vec::new();
            cms.verify(None, Some(&store), None, Some(&mut out), CMSOptions::BINARY)?;
            assert_eq!(out, content);
        }
        Ok(())
    }

    #[test]
    fn the_signing_time_is_utc_time_until_2049_then_generalized() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let id = ca.issue_blackboard(DEFAULT_BLACKBOARD_NAME)?;
        // 2049-12-31T23:59:59Z and 2050-01-01T00:00:00Z.
        for (t, want) in [
            (2_524_607_999, tag::UTC_TIME),
            (2_524_608_000, tag::GENERALIZED_TIME),
        ] {
            let der = id.sign_receipt_at(b"{}", t)?;
            // The last time in it (the certificate's validity comes first).
            let signing_time = skeleton(&der)?
                .into_iter()
                .map(|(tag, _)| tag)
                .rfind(|t| *t == tag::UTC_TIME || *t == tag::GENERALIZED_TIME);
            assert_eq!(signing_time, Some(want));
            // Still a valid SET OF ordering: OpenSSL parses and checks it.
            let mut cms = CmsContentInfo::from_der(&der)?;
            let mut out = Vec::new();
            cms.verify(
                None,
                None,
                None,
                Some(&mut out),
                CMSOptions::NOVERIFY | CMSOptions::BINARY,
            )?;
            assert_eq!(out, b"{}");
        }
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
}
