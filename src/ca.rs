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
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use openssl::symm::Cipher;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{
    CrlNumber, X509Builder, X509Crl, X509CrlBuilder, X509Name, X509NameRef, X509RevokedBuilder,
    X509,
};

use crate::der::{self, oid, tag, DerError, Reader};
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
    /// The AlgorithmIdentifier of the CA's signatures (SHA-256 with its key
    /// type), DER, as it appears twice in every certificate.
    sig_alg_der: Vec<u8>,
    /// The root's subject Name, DER, exactly as in the root certificate:
    /// the issuer of every certificate.
    issuer_der: Vec<u8>,
    /// The authorityKeyIdentifier extension (the root's key id), DER.
    aki_ext_der: Vec<u8>,
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

/// The paths of the root files in a keys dir.
pub fn root_paths(keys_dir: &Path) -> (PathBuf, PathBuf) {
    (keys_dir.join(CA_KEY_FILE), keys_dir.join(CA_CERT_FILE))
}

/// Whether a keys dir already holds a root (both files).
pub fn root_exists(keys_dir: &Path) -> bool {
    let (k, c) = root_paths(keys_dir);
    k.exists() && c.exists()
}

/// How far notBefore (and a CRL's thisUpdate) is set in the past: a
/// verifier whose clock is a little behind ours, or a clock stepped back
/// between issuance and the first check, must not see "not yet valid".
pub const BACKDATE_SECS: i64 = 300;

/// Now, minus [`BACKDATE_SECS`], in Unix seconds.
fn backdated_now() -> i64 {
    crate::time::now_unix() - BACKDATE_SECS
}

/// A random, positive serial of 16 bytes (126 random bits; the top bits are
/// fixed so every serial has the same DER length and is never negative).
pub fn random_serial() -> Result<BigNum, ErrorStack> {
    BigNum::from_slice(&random_serial_bytes()?)
}

/// The DER content octets of a fresh serial (see [`random_serial`]).
fn random_serial_bytes() -> Result<[u8; 16], ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(bytes)
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
    crate::fsutil::write_atomic(path, data, mode).map_err(io_err(path))?;
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
    b.set_not_before(Asn1Time::from_unix(backdated_now())?.as_ref())?;
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
        let mut sig_alg_der = Vec::new();
        match key.id() {
            Id::RSA => der::write_nested(&mut sig_alg_der, tag::SEQUENCE, |a| {
                der::write_tlv(a, tag::OID, oid::SHA256_WITH_RSA);
                der::write_tlv(a, tag::NULL, &[]);
            }),
            Id::EC => der::write_nested(&mut sig_alg_der, tag::SEQUENCE, |a| {
                der::write_tlv(a, tag::OID, oid::ECDSA_WITH_SHA256);
            }),
            other => {
                return Err(CaError::UnsupportedKey(format!(
                    "CA root key of type {other:?} (RSA or EC accepted)"
                )))
            }
        }
        let issuer_der = root_subject_der(&cert_der)
            .map_err(|_| CaError::RootMismatch(PathBuf::from(CA_CERT_FILE)))?;
        // The root's own subjectKeyIdentifier; a root made elsewhere without
        // one gets the same SHA-1 of its key bits.
        let key_id = match cert.subject_key_id() {
            Some(id) => id.as_slice().to_vec(),
            None => {
                let spki = key.public_key_to_der()?;
                let parts = spki_parts(&spki)
                    .map_err(|_| CaError::RootMismatch(PathBuf::from(CA_CERT_FILE)))?;
                openssl::sha::sha1(parts.bits).to_vec()
            }
        };
        let mut aki_ext_der = Vec::new();
        der::write_nested(&mut aki_ext_der, tag::SEQUENCE, |e| {
            // authorityKeyIdentifier 2.5.29.35, not critical.
            der::write_tlv(e, tag::OID, &[0x55, 0x1d, 0x23]);
            der::write_nested(e, tag::OCTET_STRING, |o| {
                der::write_nested(o, tag::SEQUENCE, |aki| {
                    // keyIdentifier [0] IMPLICIT OCTET STRING
                    der::write_tlv(aki, 0x80, &key_id);
                });
            });
        });
        Ok(CertificateAuthority {
            key,
            cert,
            cert_der,
            validity_days,
            sig_alg_der,
            issuer_der,
            aki_ext_der,
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
        let csr = CsrParts::parse(csr_der).map_err(CaError::MalformedCsr)?;
        let key = StudentKey::parse(csr.spki)?;
        self.verify_csr_signature(&csr, &key)?;
        let cn = csr.common_name()?.ok_or(CaError::MissingCn)?;
        let sid = sid::validate(&cn).map_err(CaError::BadSid)?;
        self.sign_certificate(sid, csr.spki, &key)
    }

    /// Issues a certificate for `sid` and an already checked public key
    /// (legacy mode, where the server made the key).
    pub fn issue_for(&self, sid: &str, pubkey: &PKeyRef<Public>) -> Result<Issued, CaError> {
        let sid = sid::validate(sid).map_err(CaError::BadSid)?;
        let spki = pubkey.public_key_to_der()?;
        let key = StudentKey::parse(&spki)?;
        self.sign_certificate(sid, &spki, &key)
    }

    /// Verifies the CSR's signature over its CertificationRequestInfo with
    /// the key it carries (proof of possession).
    fn verify_csr_signature(
        &self,
        csr: &CsrParts<'_>,
        key: &StudentKey<'_>,
    ) -> Result<(), CaError> {
        let (md, family) = signature_algorithm(csr.sig_alg, csr.sig_params.as_ref())?;
        if family != key.family {
            return Err(CaError::CsrSignature);
        }
        let pkey = match key.material {
            KeyMaterial::Rsa { n, e } => PKey::from_rsa(Rsa::from_public_components(
                BigNum::from_slice(n)?,
                BigNum::from_slice(e)?,
            )?)?,
            KeyMaterial::P256 { point } => {
                let mut ctx = BigNumContext::new()?;
                let point = EcPoint::from_bytes(&self.p256, point, &mut ctx)
                    .map_err(|_| CaError::UnsupportedKey("EC point not on P-256".into()))?;
                PKey::from_ec_key(EcKey::from_public_key(&self.p256, &point)?)?
            }
        };
        let mut verifier = Verifier::new(md, &pkey)?;
        if verifier
            .verify_oneshot(csr.signature, csr.info)
            .unwrap_or(false)
        {
            Ok(())
        } else {
            // Clear OpenSSL's error queue so it does not leak into the next call.
            let _ = ErrorStack::get();
            Err(CaError::CsrSignature)
        }
    }

    /// Builds the fixed profile's TBSCertificate around `spki` (kept as it
    /// came), signs it and assembles the certificate.
    ///
    /// The profile, in this order (the order OpenSSL's builder produced
    /// before this path replaced it): v3; a random 16-byte serial; the
    /// root's subject as issuer; now to now + validity; `CN=<sid>` as a
    /// UTF8String; the key; basicConstraints critical CA:FALSE; keyUsage
    /// critical digitalSignature, plus keyEncipherment for an RSA key (RFC
    /// 5480 forbids it on EC keys); extendedKeyUsage
    /// clientAuth; subjectKeyIdentifier (SHA-1 of the key bits, RFC 5280
    /// 4.2.1.2 method 1); authorityKeyIdentifier keyid of the root.
    fn sign_certificate(
        &self,
        sid: &str,
        spki: &[u8],
        key: &StudentKey<'_>,
    ) -> Result<Issued, CaError> {
        let serial = random_serial_bytes()?;
        let not_before = backdated_now();
        let not_after = not_before + i64::from(self.validity_days) * 86_400;
        let ski = openssl::sha::sha1(key.bits);

        let mut tbs = Vec::with_capacity(512 + spki.len());
        der::write_nested(&mut tbs, tag::SEQUENCE, |t| {
            t.extend_from_slice(&[tag::CONTEXT_0, 3, tag::INTEGER, 1, 2]);
            der::write_tlv(t, tag::INTEGER, &serial);
            t.extend_from_slice(&self.sig_alg_der);
            t.extend_from_slice(&self.issuer_der);
            der::write_nested(t, tag::SEQUENCE, |v| {
                der::CivilTime::from_unix(not_before).write(v);
                der::CivilTime::from_unix(not_after).write(v);
            });
            der::write_nested(t, tag::SEQUENCE, |name| {
                der::write_nested(name, tag::SET, |rdn| {
                    der::write_nested(rdn, tag::SEQUENCE, |atv| {
                        der::write_tlv(atv, tag::OID, oid::COMMON_NAME);
                        der::write_tlv(atv, tag::UTF8_STRING, sid.as_bytes());
                    });
                });
            });
            t.extend_from_slice(spki);
            der::write_nested(t, tag::CONTEXT_3, |x| {
                der::write_nested(x, tag::SEQUENCE, |exts| {
                    exts.extend_from_slice(BASIC_CONSTRAINTS_LEAF);
                    exts.extend_from_slice(match key.family {
                        KeyFamily::Rsa => KEY_USAGE_RSA,
                        KeyFamily::Ec => KEY_USAGE_EC,
                    });
                    exts.extend_from_slice(EXT_KEY_USAGE_CLIENT);
                    // subjectKeyIdentifier 2.5.29.14
                    exts.extend_from_slice(&[0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e]);
                    exts.extend_from_slice(&[0x04, 0x16, tag::OCTET_STRING, 0x14]);
                    exts.extend_from_slice(&ski);
                    exts.extend_from_slice(&self.aki_ext_der);
                });
            });
        });

        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        let signature = signer.sign_oneshot_to_vec(&tbs)?;
        let mut cert =
            Vec::with_capacity(tbs.len() + self.sig_alg_der.len() + signature.len() + 16);
        der::write_nested(&mut cert, tag::SEQUENCE, |c| {
            c.extend_from_slice(&tbs);
            c.extend_from_slice(&self.sig_alg_der);
            der::write_header(c, tag::BIT_STRING, signature.len() + 1);
            c.push(0);
            c.extend_from_slice(&signature);
        });
        let serial_hex = serial.iter().map(|b| format!("{b:02X}")).collect();
        Ok(Issued {
            sid: sid.to_string(),
            serial_hex,
            not_before,
            not_after,
            der: cert,
        })
    }
}

/// basicConstraints (2.5.29.19) critical, CA:FALSE (an empty SEQUENCE).
const BASIC_CONSTRAINTS_LEAF: &[u8] = &[
    0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00,
];

/// keyUsage (2.5.29.15) critical, digitalSignature and keyEncipherment:
/// for RSA keys (Blackboard encrypts the session key to an RSA student key).
const KEY_USAGE_RSA: &[u8] = &[
    0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x05, 0xa0,
];

/// keyUsage (2.5.29.15) critical, digitalSignature alone: for EC keys, on
/// which RFC 5480 section 3 forbids keyEncipherment.
const KEY_USAGE_EC: &[u8] = &[
    0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80,
];

/// extendedKeyUsage (2.5.29.37) clientAuth (1.3.6.1.5.5.7.3.2).
const EXT_KEY_USAGE_CLIENT: &[u8] = &[
    0x30, 0x13, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01,
    0x05, 0x05, 0x07, 0x03, 0x02,
];

/// The parts of a PKCS#10 request issuance needs, borrowed from its DER.
#[derive(Debug)]
struct CsrParts<'a> {
    /// The CertificationRequestInfo, all of its bytes: what is signed.
    info: &'a [u8],
    /// The subject Name's content (its RDNs).
    subject: &'a [u8],
    /// The SubjectPublicKeyInfo, all of its bytes.
    spki: &'a [u8],
    /// The signature algorithm's OID (content bytes) and parameters.
    sig_alg: &'a [u8],
    sig_params: Option<der::Tlv<'a>>,
    /// The signature bits.
    signature: &'a [u8],
}

impl<'a> CsrParts<'a> {
    /// CertificationRequest ::= SEQUENCE { certificationRequestInfo,
    /// signatureAlgorithm, signature BIT STRING }, with
    /// CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject
    /// Name, subjectPKInfo, attributes [0] } (RFC 2986).
    fn parse(csr_der: &'a [u8]) -> Result<CsrParts<'a>, DerError> {
        let mut outer = Reader::new(csr_der);
        let mut req = outer.nested(tag::SEQUENCE)?;
        outer.finish()?;
        let info = req.expect_tag(tag::SEQUENCE)?;
        let (sig_alg, sig_params) = der::algorithm(&mut req)?;
        let signature = der::bit_string_bytes(&req.expect_tag(tag::BIT_STRING)?)?;
        req.finish()?;

        let mut fields = Reader::new(info.content);
        if fields.expect_tag(tag::INTEGER)?.content != [0] {
            return Err(DerError::BadValue("CSR version (must be 0, v1)"));
        }
        let subject = fields.expect_tag(tag::SEQUENCE)?.content;
        let spki = fields.expect_tag(tag::SEQUENCE)?.raw;
        // The attributes are ignored (a requested extension is never
        // copied), but must be well-formed DER; some writers omit them.
        if !fields.is_empty() {
            fields.expect_tag(tag::CONTEXT_0)?;
        }
        fields.finish()?;
        Ok(CsrParts {
            info: info.raw,
            subject,
            spki,
            sig_alg,
            sig_params,
            signature,
        })
    }

    /// The first commonName of the subject, as text (`Ok(None)` when there
    /// is none, `Err` when the name is not well-formed).
    fn common_name(&self) -> Result<Option<String>, CaError> {
        let malformed = CaError::MalformedCsr;
        let mut rdns = Reader::new(self.subject);
        let mut found = None;
        while !rdns.is_empty() {
            let mut rdn = rdns.nested(tag::SET).map_err(malformed)?;
            while !rdn.is_empty() {
                let mut atv = rdn.nested(tag::SEQUENCE).map_err(malformed)?;
                let oid = atv.expect_tag(tag::OID).map_err(malformed)?.content;
                let value = atv.any().map_err(malformed)?;
                atv.finish().map_err(malformed)?;
                if found.is_none() && oid == oid::COMMON_NAME {
                    found = Some(value);
                }
            }
        }
        let Some(value) = found else {
            return Ok(None);
        };
        directory_string(&value).map(Some).ok_or(CaError::MissingCn)
    }
}

/// A DirectoryString as UTF-8, the way OpenSSL's `ASN1_STRING_to_UTF8`
/// reads it: the 8-bit types byte by byte (Latin-1), BMPString as UTF-16
/// and UniversalString as UTF-32, big-endian. None for other types or
/// invalid text.
fn directory_string(value: &der::Tlv<'_>) -> Option<String> {
    let c = value.content;
    match value.tag {
        tag::UTF8_STRING => std::str::from_utf8(c).ok().map(str::to_owned),
        tag::PRINTABLE_STRING | tag::IA5_STRING | tag::T61_STRING => {
            Some(c.iter().map(|b| char::from(*b)).collect())
        }
        tag::BMP_STRING if c.len().is_multiple_of(2) => {
            char::decode_utf16(c.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])))
                .collect::<Result<String, _>>()
                .ok()
        }
        tag::UNIVERSAL_STRING if c.len().is_multiple_of(4) => c
            .chunks_exact(4)
            .map(|q| char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
            .collect(),
        _ => None,
    }
}

/// Key families the CA certifies for students.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    Ec,
}

/// A student key's components, borrowed from its SubjectPublicKeyInfo.
#[derive(Debug)]
enum KeyMaterial<'a> {
    /// Modulus and public exponent, big-endian magnitudes.
    Rsa { n: &'a [u8], e: &'a [u8] },
    /// An encoded P-256 point.
    P256 { point: &'a [u8] },
}

/// A student's public key, checked against what the CA certifies.
#[derive(Debug)]
struct StudentKey<'a> {
    family: KeyFamily,
    material: KeyMaterial<'a>,
    /// The subjectPublicKey BIT STRING's bytes (hashed for the SKI).
    bits: &'a [u8],
}

impl<'a> StudentKey<'a> {
    /// The key types the CA certifies for students: RSA of 2048 to 4096
    /// bits (Blackboard needs RSA to encrypt the session key) and EC P-256.
    /// Everything else is refused before any signature is checked, so an
    /// oversized key costs nothing.
    fn parse(spki: &'a [u8]) -> Result<StudentKey<'a>, CaError> {
        let malformed = CaError::MalformedCsr;
        let SpkiParts { alg, params, bits } = spki_parts(spki).map_err(malformed)?;
        match alg {
            oid::RSA_ENCRYPTION => {
                // RFC 3279 2.3.1: the parameters MUST be NULL.
                if params.map(|p| p.raw) != Some(&[tag::NULL, 0][..]) {
                    return Err(malformed(DerError::BadValue(
                        "RSA key parameters (must be NULL)",
                    )));
                }
                let mut outer = Reader::new(bits);
                let mut key = outer.nested(tag::SEQUENCE).map_err(malformed)?;
                outer.finish().map_err(malformed)?;
                let n = der::positive_integer(&key.expect_tag(tag::INTEGER).map_err(malformed)?)
                    .map_err(malformed)?;
                let e = der::positive_integer(&key.expect_tag(tag::INTEGER).map_err(malformed)?)
                    .map_err(malformed)?;
                key.finish().map_err(malformed)?;
                let modulus_bits = n.len() * 8 - n[0].leading_zeros() as usize; // ok: n is non-empty
                if !(2048..=4096).contains(&modulus_bits) {
                    return Err(CaError::UnsupportedKey(format!(
                        "RSA-{modulus_bits} (2048 to 4096 bits accepted)"
                    )));
                }
                if n.last().is_some_and(|b| b & 1 == 0) {
                    return Err(CaError::UnsupportedKey("RSA modulus is even".into()));
                }
                if !rsa_exponent_ok(e) {
                    return Err(CaError::UnsupportedKey(
                        "RSA public exponent must be odd and from 65537 to 2^256-1 \
                         (a tiny exponent such as 1 makes the proof of possession and \
                         the session key's encryption worthless)"
                            .into(),
                    ));
                }
                Ok(StudentKey {
                    family: KeyFamily::Rsa,
                    material: KeyMaterial::Rsa { n, e },
                    bits,
                })
            }
            oid::EC_PUBLIC_KEY => {
                let on_p256 =
                    params.is_some_and(|p| p.tag == tag::OID && p.content == oid::PRIME256V1);
                if !on_p256 {
                    return Err(CaError::UnsupportedKey("EC key not on P-256".into()));
                }
                Ok(StudentKey {
                    family: KeyFamily::Ec,
                    material: KeyMaterial::P256 { point: bits },
                    bits,
                })
            }
            other => Err(CaError::UnsupportedKey(format!(
                "key type with algorithm OID {} (RSA and EC P-256 accepted)",
                oid_text(other)
            ))),
        }
    }
}

/// Whether an RSA public exponent (big-endian magnitude, minimal) is odd and
/// in 65537..2^256, the range CA/Browser Forum practice allows: e = 1 makes
/// "encryption" the identity, and a small e is needlessly fragile.
pub(crate) fn rsa_exponent_ok(e: &[u8]) -> bool {
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    let at_least_65537 = e.len() > 3 || (e.len() == 3 && e >= &[0x01, 0x00, 0x01][..]);
    odd && at_least_65537 && e.len() <= 32
}

/// A SubjectPublicKeyInfo's parts, borrowed from its DER.
struct SpkiParts<'a> {
    /// The algorithm's OID (content bytes).
    alg: &'a [u8],
    /// The algorithm's parameters, when present.
    params: Option<der::Tlv<'a>>,
    /// The subjectPublicKey BIT STRING's bytes.
    bits: &'a [u8],
}

/// Splits a SubjectPublicKeyInfo into its parts.
fn spki_parts(spki: &[u8]) -> Result<SpkiParts<'_>, DerError> {
    let mut outer = Reader::new(spki);
    let mut r = outer.nested(tag::SEQUENCE)?;
    outer.finish()?;
    let (alg, params) = der::algorithm(&mut r)?;
    let bits = der::bit_string_bytes(&r.expect_tag(tag::BIT_STRING)?)?;
    r.finish()?;
    Ok(SpkiParts { alg, params, bits })
}

/// The digest and key family of a CSR's signature algorithm.
fn signature_algorithm(
    alg: &[u8],
    params: Option<&der::Tlv<'_>>,
) -> Result<(MessageDigest, KeyFamily), CaError> {
    let null_or_absent = params.is_none_or(|p| p.raw == [tag::NULL, 0]);
    let found = match alg {
        oid::SHA256_WITH_RSA if null_or_absent => Some((MessageDigest::sha256(), KeyFamily::Rsa)),
        oid::SHA384_WITH_RSA if null_or_absent => Some((MessageDigest::sha384(), KeyFamily::Rsa)),
        oid::SHA512_WITH_RSA if null_or_absent => Some((MessageDigest::sha512(), KeyFamily::Rsa)),
        oid::ECDSA_WITH_SHA256 if params.is_none() => {
            Some((MessageDigest::sha256(), KeyFamily::Ec))
        }
        oid::ECDSA_WITH_SHA384 if params.is_none() => {
            Some((MessageDigest::sha384(), KeyFamily::Ec))
        }
        oid::ECDSA_WITH_SHA512 if params.is_none() => {
            Some((MessageDigest::sha512(), KeyFamily::Ec))
        }
        _ => None,
    };
    found.ok_or_else(|| CaError::UnsupportedSignature(oid_text(alg)))
}

/// Dotted text of an OID's content bytes, for messages.
fn oid_text(content: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for b in content {
        acc = acc.saturating_mul(128).saturating_add(u64::from(b & 0x7f));
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Days a CRL stays current (its nextUpdate).
pub const CRL_VALIDITY_DAYS: u32 = 7;

impl CertificateAuthority {
    /// A CRL listing `revoked` (serial hex, revocation time), signed by the
    /// root, with the given CRL number.
    pub fn crl(&self, revoked: &[(String, i64)], number: u64) -> Result<X509Crl, CaError> {
        let mut b = X509CrlBuilder::new()?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_last_update(Asn1Time::from_unix(backdated_now())?.as_ref())?;
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

/// The subject Name of a certificate, all of its bytes, as encoded in it.
fn root_subject_der(cert_der: &[u8]) -> Result<Vec<u8>, DerError> {
    let mut cert = Reader::new(cert_der).nested(tag::SEQUENCE)?;
    let mut tbs = cert.nested(tag::SEQUENCE)?;
    if tbs.peek_tag() == Some(tag::CONTEXT_0) {
        tbs.any()?; // version
    }
    tbs.expect_tag(tag::INTEGER)?; // serial
    tbs.expect_tag(tag::SEQUENCE)?; // signature algorithm
    tbs.expect_tag(tag::SEQUENCE)?; // issuer
    tbs.expect_tag(tag::SEQUENCE)?; // validity
    Ok(tbs.expect_tag(tag::SEQUENCE)?.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::extension::ExtendedKeyUsage;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509Extension, X509Req, X509ReqBuilder, X509StoreContext};
    use proptest::prelude::*;

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
    fn rsa_exponents_outside_the_safe_range_are_refused() {
        assert!(rsa_exponent_ok(&[0x01, 0x00, 0x01]));
        assert!(rsa_exponent_ok(&[0x01, 0x00, 0x00, 0x01]));
        assert!(!rsa_exponent_ok(&[0x01]), "e = 1");
        assert!(!rsa_exponent_ok(&[0x03]), "e = 3");
        assert!(!rsa_exponent_ok(&[0x01, 0x00, 0x00]), "even");
        assert!(!rsa_exponent_ok(&[0x01, 0x00, 0x00, 0x00]), "even");
        assert!(!rsa_exponent_ok(&[0xff; 33]), "over 2^256");
    }

    #[test]
    fn certificates_verify_at_once_even_across_a_second_boundary() -> TestResult {
        // OpenSSL's time() may lag the clock notBefore is taken from by a
        // coarse-clock tick: issue and verify back to back for a while
        // (bounded) so some pairs straddle a second boundary.
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let verifier = crate::verify::Verifier::new(ca.cert())?;
        let key = rsa_key()?;
        let der = csr("alice", &key)?.to_der()?;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        let mut n = 0;
        while std::time::Instant::now() < until && n < 5000 {
            let issued = ca.issue(&der)?;
            verifier
                .verify("alice", &issued.der, &[])
                .map_err(|e| format!("issuance {n}: {e}"))?;
            n += 1;
        }
        assert!(n > 0);
        Ok(())
    }

    #[test]
    fn a_csr_with_exponent_3_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = PKey::from_rsa(Rsa::generate_with_e(2048, BigNum::from_u32(3)?.as_ref())?)?;
        let err = ca.issue(&csr("alice", &key)?.to_der()?).err();
        assert!(
            matches!(&err, Some(CaError::UnsupportedKey(m)) if m.contains("exponent")),
            "{err:?}"
        );
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

    /// The issuance this module did before the fast path: OpenSSL's own
    /// builder, kept here as the reference the fast path must match.
    fn reference_issue(
        ca: &CertificateAuthority,
        sid: &str,
        pubkey: &PKeyRef<Public>,
    ) -> Result<X509, ErrorStack> {
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, sid)?;
        let name = name.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = random_serial()?;
        b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(ca.cert.subject_name())?;
        b.set_pubkey(pubkey)?;
        b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
        b.set_not_after(Asn1Time::days_from_now(ca.validity_days)?.as_ref())?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        let mut ku = KeyUsage::new();
        ku.critical().digital_signature();
        if pubkey.id() == Id::RSA {
            ku.key_encipherment();
        }
        b.append_extension(ku.build()?)?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca.cert), None))?;
        b.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&ca.cert), None))?;
        b.append_extension(aki)?;
        b.sign(&ca.key, MessageDigest::sha256())?;
        Ok(b.build())
    }

    /// The TBSCertificate's fields of a certificate, each as raw DER:
    /// version, serial, signature algorithm, issuer, validity, subject,
    /// key, extensions; then the outer signature algorithm.
    fn cert_fields(der: &[u8]) -> Result<Vec<Vec<u8>>, DerError> {
        let mut outer = Reader::new(der);
        let mut cert = outer.nested(tag::SEQUENCE)?;
        outer.finish()?;
        let mut tbs = cert.nested(tag::SEQUENCE)?;
        let mut fields = Vec::new();
        while !tbs.is_empty() {
            fields.push(tbs.any()?.raw.to_vec());
        }
        fields.push(cert.expect_tag(tag::SEQUENCE)?.raw.to_vec());
        cert.expect_tag(tag::BIT_STRING)?;
        cert.finish()?;
        Ok(fields)
    }

    fn p256_key() -> Result<PKey<Private>, ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        PKey::from_ec_key(EcKey::generate(&group)?)
    }

    fn verifies_under_root(ca: &CertificateAuthority, cert: &X509) -> Result<bool, ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(ca.cert().clone())?;
        let store = store.build();
        let mut ctx = X509StoreContext::new()?;
        let chain: Stack<X509> = Stack::new()?;
        ctx.init(&store, cert, &chain, |c| c.verify_cert())
    }

    #[test]
    fn fast_path_matches_the_openssl_builder_byte_for_byte() -> TestResult {
        for kind in [CaKeyType::Rsa2048, CaKeyType::P256] {
            let dir = tempfile::tempdir()?;
            let ca = test_ca(dir.path(), kind)?;
            for student in [rsa_key()?, p256_key()?] {
                let issued = ca.issue(&csr("1155000042", &student)?.to_der()?)?;
                let pubkey = PKey::public_key_from_der(&student.public_key_to_der()?)?;
                let reference = reference_issue(&ca, "1155000042", &pubkey)?;
                let ours = cert_fields(&issued.der)?;
                let theirs = cert_fields(&reference.to_der()?)?;
                assert_eq!(ours.len(), 9, "{kind:?}: v3 with extensions");
                assert_eq!(ours.len(), theirs.len());
                // Everything but the serial (1) and validity (4) is identical.
                for i in [0, 2, 3, 5, 6, 7, 8] {
                    assert_eq!(ours[i], theirs[i], "{kind:?}, field {i}");
                }
                assert_eq!(ours[1].len(), theirs[1].len(), "serial length");
                assert_eq!(ours[4].len(), theirs[4].len(), "validity encoding");

                // OpenSSL parses it, reads the same values, and it chains.
                let cert = X509::from_der(&issued.der)?;
                assert_eq!(cert.to_der()?, issued.der);
                assert!(cert.public_key()?.public_eq(&student));
                assert_eq!(
                    cert.serial_number().to_bn()?.to_hex_str()?.to_string(),
                    issued.serial_hex
                );
                assert!(cert.not_before() == Asn1Time::from_unix(issued.not_before)?);
                assert!(cert.not_after() == Asn1Time::from_unix(issued.not_after)?);
                assert!(cert.verify(ca.cert().public_key()?.as_ref())?);
                assert!(verifies_under_root(&ca, &cert)?, "{kind:?}");
                // The Blackboard check accepts it (RSA students only).
                if student.id() == Id::RSA {
                    let v = crate::verify::Verifier::new(ca.cert())?;
                    let s = v.verify("1155000042", &issued.der, &[])?;
                    assert_eq!(s.serial_hex, issued.serial_hex);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn issue_for_a_server_made_key_matches_too() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::Rsa2048)?;
        let key = rsa_key()?;
        let pubkey = PKey::public_key_from_der(&key.public_key_to_der()?)?;
        let issued = ca.issue_for("legacy-1", &pubkey)?;
        let cert = X509::from_der(&issued.der)?;
        assert!(verifies_under_root(&ca, &cert)?);
        assert_eq!(name_text(cert.subject_name()), "CN=legacy-1");
        let reference = reference_issue(&ca, "legacy-1", &pubkey)?;
        assert_eq!(
            cert_fields(&issued.der)?[7],
            cert_fields(&reference.to_der()?)?[7],
            "same extensions"
        );
        let err = ca.issue_for("bad sid", &pubkey).err();
        assert!(matches!(err, Some(CaError::BadSid(_))), "{err:?}");
        Ok(())
    }

    #[test]
    fn other_key_types_and_curves_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let p384_group = EcGroup::from_curve_name(Nid::SECP384R1)?;
        let p384 = PKey::from_ec_key(EcKey::generate(&p384_group)?)?;
        let err = ca.issue(&csr("alice", &p384)?.to_der()?).err();
        assert!(
            matches!(&err, Some(CaError::UnsupportedKey(m)) if m.contains("P-256")),
            "{err:?}"
        );

        let ed = PKey::generate_ed25519()?;
        let mut b = X509ReqBuilder::new()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "alice")?;
        b.set_subject_name(&name.build())?;
        b.set_pubkey(&ed)?;
        b.sign(&ed, MessageDigest::null())?;
        let err = ca.issue(&b.build().to_der()?).err();
        assert!(
            matches!(&err, Some(CaError::UnsupportedKey(m)) if m.contains("1.3.101.112")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn weak_csr_signature_algorithms_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = rsa_key()?;
        let mut b = X509ReqBuilder::new()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "alice")?;
        b.set_subject_name(&name.build())?;
        b.set_pubkey(&key)?;
        b.sign(&key, MessageDigest::sha1())?;
        let err = ca.issue(&b.build().to_der()?).err();
        assert!(
            matches!(&err, Some(CaError::UnsupportedSignature(o)) if o == "1.2.840.113549.1.1.5"),
            "{err:?}"
        );
        // SHA-512 is fine, and an EC student key signs with ECDSA.
        let mut b = X509ReqBuilder::new()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "alice")?;
        b.set_subject_name(&name.build())?;
        b.set_pubkey(&key)?;
        b.sign(&key, MessageDigest::sha512())?;
        ca.issue(&b.build().to_der()?)?;
        ca.issue(&csr("bob", &p256_key()?)?.to_der()?)?;
        Ok(())
    }

    #[test]
    fn common_name_string_types_and_missing_cn() -> TestResult {
        use openssl::asn1::Asn1Type;
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = rsa_key()?;
        let request = |entries: &[(Nid, &str, Asn1Type)]| -> Result<Vec<u8>, ErrorStack> {
            let mut b = X509ReqBuilder::new()?;
            let mut name = X509Name::builder()?;
            for (nid, value, ty) in entries {
                name.append_entry_by_nid_with_type(*nid, value, *ty)?;
            }
            b.set_subject_name(&name.build())?;
            b.set_pubkey(&key)?;
            b.sign(&key, MessageDigest::sha256())?;
            b.build().to_der()
        };
        for ty in [
            Asn1Type::PRINTABLESTRING,
            Asn1Type::IA5STRING,
            Asn1Type::T61STRING,
        ] {
            let der = request(&[
                (Nid::ORGANIZATIONNAME, "CUHK", Asn1Type::UTF8STRING),
                (Nid::COMMONNAME, "s-1155", ty),
            ])?;
            let issued = ca.issue(&der)?;
            assert_eq!(issued.sid, "s-1155", "{ty:?}");
            let cert = X509::from_der(&issued.der)?;
            assert_eq!(name_text(cert.subject_name()), "CN=s-1155");
        }
        let der = request(&[(Nid::ORGANIZATIONNAME, "CUHK", Asn1Type::UTF8STRING)])?;
        let err = ca.issue(&der).err();
        assert!(matches!(err, Some(CaError::MissingCn)), "{err:?}");
        Ok(())
    }

    #[test]
    fn directory_strings_decode_like_openssl() {
        let text = |tag: u8, content: &'static [u8]| {
            directory_string(&der::Tlv {
                tag,
                content,
                raw: content,
            })
        };
        assert_eq!(
            text(tag::BMP_STRING, b"\0s\0-\x001").as_deref(),
            Some("s-1")
        );
        assert_eq!(text(tag::BMP_STRING, b"\0s\0"), None, "odd length");
        assert_eq!(
            text(tag::UNIVERSAL_STRING, b"\0\0\0a").as_deref(),
            Some("a")
        );
        assert_eq!(text(tag::UTF8_STRING, b"\xff"), None, "not UTF-8");
        assert_eq!(text(tag::T61_STRING, b"\xfc").as_deref(), Some("\u{fc}"));
        assert_eq!(text(tag::OCTET_STRING, b"a"), None);
    }

    #[test]
    fn truncated_or_padded_csrs_are_malformed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let der = csr("alice", &rsa_key()?)?.to_der()?;
        for bad in [
            der[..der.len() - 1].to_vec(),
            [der.as_slice(), &[0]].concat(),
            Vec::new(),
        ] {
            let err = ca.issue(&bad).err();
            assert!(matches!(err, Some(CaError::MalformedCsr(_))), "{err:?}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// A CSR with any byte changed is refused or, when the change
        /// happens to leave it valid, issued as a valid certificate; it
        /// never panics.
        #[test]
        fn mutated_csrs_never_panic(at in any::<prop::sample::Index>(), xor in 1u8..) {
            thread_local! {
                static FIXTURE: (tempfile::TempDir, CertificateAuthority, Vec<u8>) = {
                    let dir = tempfile::tempdir().expect("ok: test fixture");
                    let ca = test_ca(dir.path(), CaKeyType::P256).expect("ok: test fixture");
                    let key = rsa_key().expect("ok: test fixture");
                    let der = csr("alice", &key).and_then(|r| r.to_der()).expect("ok: test fixture");
                    (dir, ca, der)
                };
            }
            FIXTURE.with(|(_, ca, der)| {
                let mut bad = der.clone();
                let i = at.index(bad.len());
                bad[i] ^= xor;
                if let Ok(issued) = ca.issue(&bad) {
                    let cert = X509::from_der(&issued.der).expect("ok: issued DER parses");
                    assert!(verifies_under_root(ca, &cert).unwrap_or(false));
                }
            });
        }
    }
}
