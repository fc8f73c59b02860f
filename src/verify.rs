//! Blackboard's check of a student's certificate: OpenSSL path validation to
//! the pinned CUHK root, then the profile this service needs. Each refusal
//! has its own variant, so the student and the operator learn exactly why.

use std::fmt;

use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{
    X509ExtendedKeyUsage, X509PurposeId, X509StoreContext, X509VerifyResult, X509,
};

use crate::ca::{RevocationReason, Serial};
use crate::der::{self, oid, tag, DerError, Reader, TbsCertificate};

/// OpenSSL's `X509_V_ERR_CERT_HAS_EXPIRED`.
pub const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;

/// OpenSSL's `X509_V_ERR_INVALID_PURPOSE` ("unsupported certificate
/// purpose"), which rust-openssl has no constant for.
const X509_V_ERR_INVALID_PURPOSE: i32 = 26;

/// Most untrusted intermediates a submission may carry (and all are refused
/// by the depth limit: the CUHK root issues students directly).
pub const MAX_CHAIN: usize = 4;

/// Why a presented certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a DER certificate.
    Malformed,
    /// OpenSSL failed for a reason of its own (out of memory), not because
    /// of the certificate.
    Internal(OpensslFailure),
    /// OpenSSL's path validation failed; the text is OpenSSL's reason
    /// (expired, not yet valid, unable to get local issuer, self-signed,
    /// chain too long, bad signature…).
    Path {
        /// OpenSSL's `X509_V_ERR_*` code.
        code: i32,
        /// Its description.
        reason: String,
    },
    /// The certificate is itself a CA.
    IsCa,
    /// No extendedKeyUsage, or one without clientAuth.
    NotClientAuth,
    /// The CN differs from the SID the student claims.
    SidMismatch {
        /// The SID claimed in the message.
        claimed: String,
        /// The CN in the certificate.
        in_cert: String,
    },
    /// The key is not RSA, so the session key cannot be sent to it.
    NotRsa,
    /// The RSA public exponent is even, below 65537 or above 2^256.
    WeakRsaExponent,
    /// The CA's records do not list this certificate.
    NotIssued(Serial),
    /// The CA revoked it.
    Revoked {
        /// Its serial.
        serial: Serial,
        /// The operator's reason (`None`: the store names none).
        reason: Option<RevocationReason>,
    },
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Malformed => write!(f, "the certificate is not valid DER"),
            CertError::Internal(e) => write!(f, "OpenSSL failed while checking the certificate: {e}"),
            CertError::Path { reason, .. } => {
                write!(f, "the certificate does not chain to the CUHK root: {reason}")
            }
            CertError::IsCa => write!(f, "a CA certificate cannot be used as a student's"),
            CertError::NotClientAuth => write!(
                f,
                "the certificate is not valid for client authentication (extendedKeyUsage clientAuth missing)"
            ),
            CertError::SidMismatch { claimed, in_cert } => write!(
                f,
                "the certificate is for {in_cert:?}, not for the claimed SID {claimed:?}"
            ),
            CertError::NotRsa => write!(
                f,
                "the certificate's key is not RSA; Blackboard needs RSA to send the session key"
            ),
            CertError::WeakRsaExponent => write!(
                f,
                "the certificate's RSA public exponent is unsafe (must be odd, from 65537 to 2^256-1)"
            ),
            CertError::NotIssued(s) => {
                write!(f, "certificate serial {s} is not in the CA's records")
            }
            CertError::Revoked {
                serial,
                reason: None,
            } => {
                write!(f, "certificate serial {serial} has been revoked")
            }
            CertError::Revoked {
                serial,
                reason: Some(reason),
            } => {
                write!(
                    f,
                    "certificate serial {serial} has been revoked ({})",
                    reason.name()
                )
            }
        }
    }
}

impl std::error::Error for CertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CertError::Internal(e) => Some(&e.0),
            _ => None,
        }
    }
}

/// An OpenSSL error stack inside a [`CertError`], compared by its text:
/// rust-openssl's `ErrorStack` has no equality, and `CertError` is compared
/// in tests.
#[derive(Debug, Clone)]
pub struct OpensslFailure(pub ErrorStack);

impl PartialEq for OpensslFailure {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for OpensslFailure {}

impl fmt::Display for OpensslFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An OpenSSL failure that is not the certificate's fault.
fn internal(e: ErrorStack) -> CertError {
    CertError::Internal(OpensslFailure(e))
}

/// What a valid certificate tells Blackboard.
#[derive(Debug)]
pub struct Student {
    /// The verified SID.
    pub sid: String,
    /// The certificate's serial.
    pub serial: Serial,
    /// Her public key, to encrypt the session key to.
    pub key: PKey<Public>,
}

/// The pinned root and the validation policy.
pub struct Verifier {
    store: X509Store,
    /// The root, for a check at another time ([`Verifier::verify_at`]).
    root: X509,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    /// A verifier trusting only `root`.
    pub fn new(root: &X509) -> Result<Verifier, ErrorStack> {
        Self::checking_at(root, None)
    }

    /// A verifier trusting only `root` that checks validity periods at
    /// `at` (Unix seconds) instead of now.
    fn checking_at(root: &X509, at: Option<i64>) -> Result<Verifier, ErrorStack> {
        let mut b = X509StoreBuilder::new()?;
        b.add_cert(root.clone())?;
        b.set_purpose(X509PurposeId::SSL_CLIENT)?;
        b.set_flags(X509VerifyFlags::X509_STRICT)?;
        // Depth 0: no intermediate between the student and the root.
        let mut param = openssl::x509::verify::X509VerifyParam::new()?;
        param.set_depth(0);
        param.set_flags(X509VerifyFlags::X509_STRICT)?;
        param.set_purpose(X509PurposeId::SSL_CLIENT)?;
        if let Some(at) = at {
            // time_t is 64 bits on every platform certboard builds for.
            param.set_time(at);
        }
        b.set_param(&param)?;
        Ok(Verifier {
            store: b.build(),
            root: root.clone(),
        })
    }

    /// [`Verifier::verify`] as it would have answered at `at` (Unix
    /// seconds): the renewal grace asks whether a certificate that expired
    /// recently held up in every other respect when it was last valid. A
    /// store is built for the call (a rare request: a renewal after expiry).
    pub fn verify_at(
        &self,
        claimed_sid: &str,
        cert_der: &[u8],
        chain: &[Vec<u8>],
        at: i64,
    ) -> Result<Student, CertError> {
        Self::checking_at(&self.root, Some(at))
            .map_err(internal)?
            .verify(claimed_sid, cert_der, chain)
    }

    /// Checks a student's certificate (plus any intermediates she sent)
    /// for the claimed SID. Revocation is checked by the caller against the
    /// store.
    pub fn verify(
        &self,
        claimed_sid: &str,
        cert_der: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<Student, CertError> {
        let cert = X509::from_der(cert_der).map_err(|_| CertError::Malformed)?;
        let mut untrusted = Stack::new().map_err(internal)?;
        for der in chain {
            let c = X509::from_der(der).map_err(|_| CertError::Malformed)?;
            untrusted.push(c).map_err(internal)?;
        }
        let mut ctx = X509StoreContext::new().map_err(internal)?;
        let result = ctx
            .init(&self.store, &cert, &untrusted, |c| {
                Ok(match c.verify_cert()? {
                    true => X509VerifyResult::OK,
                    false => c.error(),
                })
            })
            .unwrap_or(X509VerifyResult::APPLICATION_VERIFICATION);
        if result != X509VerifyResult::OK {
            // The purpose check reports "unsupported certificate purpose"
            // for a leaf lacking clientAuth, and for a CA certificate (the
            // root itself, say) whose key usage is for signing
            // certificates; say which plainly.
            if result.as_raw() == X509_V_ERR_INVALID_PURPOSE {
                if cert.pathlen().is_some() || is_ca(&cert, cert_der) {
                    return Err(CertError::IsCa);
                }
                return Err(CertError::NotClientAuth);
            }
            return Err(CertError::Path {
                code: result.as_raw(),
                reason: result.error_string().to_string(),
            });
        }
        // Path validation accepts a leaf without extendedKeyUsage or one that
        // is a CA (a root-signed sub-CA); our profile does not.
        if cert.pathlen().is_some() || is_ca(&cert, cert_der) {
            return Err(CertError::IsCa);
        }
        match cert.extended_key_usage() {
            Some(eku) if eku.contains(X509ExtendedKeyUsage::SSL_CLIENT) => {}
            _ => return Err(CertError::NotClientAuth),
        }
        let cn = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        if cn != claimed_sid {
            return Err(CertError::SidMismatch {
                claimed: claimed_sid.to_string(),
                in_cert: cn,
            });
        }
        let key = cert.public_key().map_err(|_| CertError::Malformed)?;
        if key.id() != Id::RSA {
            return Err(CertError::NotRsa);
        }
        // The session key is encrypted to this key: a tiny exponent (e = 1
        // is the identity) would hand it to anyone watching. The exponent
        // is read from the DER OpenSSL has just decoded this RSA key from:
        // asking OpenSSL 3 for it (`EVP_PKEY_get1_RSA`) copies the whole key
        // into a legacy RSA structure first, 1.3% of a submission.
        let exponent_ok = rsa_public_exponent(cert_der).is_ok_and(crate::ca::rsa_exponent_ok);
        if !exponent_ok {
            return Err(CertError::WeakRsaExponent);
        }
        let serial = Serial::from_asn1(cert.serial_number()).map_err(internal)?;
        Ok(Student {
            sid: cn,
            serial,
            key,
        })
    }
}

/// OpenSSL's `X509_V_ERR_HOSTNAME_MISMATCH`.
const X509_V_ERR_HOSTNAME_MISMATCH: i32 = 62;

/// Why a certificate presented as Blackboard's is refused (by the client,
/// before she decrypts anything or sends her report).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlackboardCertError {
    /// No certificate, or bytes that are not a DER certificate.
    Malformed,
    /// OpenSSL failed for a reason of its own.
    Internal(OpensslFailure),
    /// Path validation to the pinned root failed (OpenSSL's reason: not
    /// from this root, expired, bad signature...).
    Path {
        /// OpenSSL's `X509_V_ERR_*` code.
        code: i32,
        /// Its description.
        reason: String,
    },
    /// It is a CA certificate.
    IsCa,
    /// No extendedKeyUsage serverAuth.
    NotServerAuth,
    /// Its subjectAltName does not carry the expected Blackboard name.
    WrongName {
        /// The name expected.
        expected: String,
    },
}

impl fmt::Display for BlackboardCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlackboardCertError::Malformed => {
                write!(f, "Blackboard's certificate is missing or not valid DER")
            }
            BlackboardCertError::Internal(e) => {
                write!(
                    f,
                    "OpenSSL failed while checking Blackboard's certificate: {e}"
                )
            }
            BlackboardCertError::Path { reason, .. } => write!(
                f,
                "Blackboard's certificate does not chain to the pinned CUHK root: {reason}"
            ),
            BlackboardCertError::IsCa => {
                write!(
                    f,
                    "the certificate presented as Blackboard's is a CA certificate"
                )
            }
            BlackboardCertError::NotServerAuth => write!(
                f,
                "the certificate presented as Blackboard's is not a server certificate \
                 (extendedKeyUsage serverAuth missing)"
            ),
            BlackboardCertError::WrongName { expected } => write!(
                f,
                "the certificate presented as Blackboard's is not for the name {expected:?} \
                 (its subjectAltName dNSName differs; see --blackboard-name)"
            ),
        }
    }
}

impl std::error::Error for BlackboardCertError {}

/// Checks a certificate presented as Blackboard's (`chain[0]`, then any
/// intermediates) against `root` with OpenSSL's path validation: valid at
/// `at` (Unix seconds; now when `None`), not a CA, extendedKeyUsage
/// serverAuth present, and, when `name` is given, that name among its
/// subjectAltName dNSNames (OpenSSL's host check, never the CN).
pub fn verify_blackboard(
    root: &X509,
    chain: &[Vec<u8>],
    name: Option<&str>,
    at: Option<i64>,
) -> Result<X509, BlackboardCertError> {
    let bb_internal = |e: ErrorStack| BlackboardCertError::Internal(OpensslFailure(e));
    let (leaf_der, rest) = chain.split_first().ok_or(BlackboardCertError::Malformed)?;
    let cert = X509::from_der(leaf_der).map_err(|_| BlackboardCertError::Malformed)?;
    let mut untrusted = Stack::new().map_err(bb_internal)?;
    for der in rest.iter().take(MAX_CHAIN) {
        let c = X509::from_der(der).map_err(|_| BlackboardCertError::Malformed)?;
        untrusted.push(c).map_err(bb_internal)?;
    }
    let mut param = openssl::x509::verify::X509VerifyParam::new().map_err(bb_internal)?;
    param
        .set_flags(X509VerifyFlags::X509_STRICT)
        .map_err(bb_internal)?;
    param
        .set_purpose(X509PurposeId::SSL_SERVER)
        .map_err(bb_internal)?;
    if let Some(t) = at {
        // A time before 1970 or past time_t is no time a receipt was made.
        #[allow(clippy::useless_conversion)] // time_t is i64 here, not everywhere
        let t = t.try_into().map_err(|_| BlackboardCertError::Path {
            code: 0,
            reason: format!("time {t} is out of range"),
        })?;
        param.set_time(t);
    }
    if let Some(n) = name {
        // The name is a dNSName or nothing (never the CN), and a wildcard
        // stands for one whole label (PROTOCOL.md 4.3.2).
        param.set_hostflags(
            openssl::x509::verify::X509CheckFlags::NEVER_CHECK_SUBJECT
                | openssl::x509::verify::X509CheckFlags::NO_PARTIAL_WILDCARDS,
        );
        param.set_host(n).map_err(bb_internal)?;
    }
    let mut b = X509StoreBuilder::new().map_err(bb_internal)?;
    b.add_cert(root.clone()).map_err(bb_internal)?;
    b.set_param(&param).map_err(bb_internal)?;
    let store = b.build();
    let mut ctx = X509StoreContext::new().map_err(bb_internal)?;
    let result = ctx
        .init(&store, &cert, &untrusted, |c| {
            Ok(match c.verify_cert()? {
                true => X509VerifyResult::OK,
                false => c.error(),
            })
        })
        .unwrap_or(X509VerifyResult::APPLICATION_VERIFICATION);
    if result != X509VerifyResult::OK {
        return Err(match (result.as_raw(), name) {
            (X509_V_ERR_HOSTNAME_MISMATCH, Some(n)) => BlackboardCertError::WrongName {
                expected: n.to_string(),
            },
            (X509_V_ERR_INVALID_PURPOSE, _) if is_ca(&cert, leaf_der) => BlackboardCertError::IsCa,
            (X509_V_ERR_INVALID_PURPOSE, _) => BlackboardCertError::NotServerAuth,
            (code, _) => BlackboardCertError::Path {
                code,
                reason: result.error_string().to_string(),
            },
        });
    }
    if cert.pathlen().is_some() || is_ca(&cert, leaf_der) {
        return Err(BlackboardCertError::IsCa);
    }
    // The purpose check lets a certificate without extendedKeyUsage pass;
    // Blackboard's profile always has it.
    match cert.extended_key_usage() {
        Some(eku) if eku.contains(X509ExtendedKeyUsage::SSL_SERVER) => Ok(cert),
        _ => Err(BlackboardCertError::NotServerAuth),
    }
}

/// Whether the certificate is a CA's: basicConstraints says `cA: TRUE`,
/// or its key usage allows signing certificates. rust-openssl exposes no
/// accessor for basicConstraints, so it is read from the DER (which
/// OpenSSL has already parsed and path-validated). A certificate whose
/// extensions do not read as strict DER is treated as a CA: refused.
fn is_ca(cert: &X509, der: &[u8]) -> bool {
    if cert
        .key_usage()
        .is_some_and(|ku| ku.contains(openssl::x509::X509KeyUsage::KEY_CERT_SIGN))
    {
        return true;
    }
    basic_constraints_ca(der).unwrap_or(true)
}

/// The public exponent (big-endian magnitude, minimal) of a certificate's
/// RSA key, read from its SubjectPublicKeyInfo by the CA's own key reader
/// ([`der::rsa_public_key`]). Anything but a strict DER rsaEncryption key
/// is an error, and the caller refuses the certificate.
fn rsa_public_exponent(der: &[u8]) -> Result<&[u8], DerError> {
    let tbs = TbsCertificate::parse(der)?;
    let spki = der::spki_parts(tbs.spki.raw)?;
    if spki.alg != oid::RSA_ENCRYPTION {
        return Err(DerError::BadValue("key algorithm (not rsaEncryption)"));
    }
    Ok(der::rsa_public_key(spki.bits)?.e)
}

/// Reads `cA` from a certificate's basicConstraints extension (absent:
/// false).
fn basic_constraints_ca(der: &[u8]) -> Result<bool, DerError> {
    let Some(mut exts) = TbsCertificate::parse(der)?.extensions()? else {
        return Ok(false);
    };
    while !exts.is_empty() {
        let mut ext = exts.nested(tag::SEQUENCE)?;
        let oid = ext.expect_tag(tag::OID)?;
        if oid.content != oid::BASIC_CONSTRAINTS {
            continue;
        }
        if ext.peek_tag() == Some(tag::BOOLEAN) {
            ext.any()?; // critical
        }
        let value = ext.expect_tag(tag::OCTET_STRING)?;
        let mut bc = Reader::new(value.content).nested(tag::SEQUENCE)?;
        return Ok(bc.peek_tag() == Some(tag::BOOLEAN) && bc.any()?.content != [0x00]);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{p256_key, rsa_key, CaParams, CertParams, Constraints, Issuer};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::X509Builder;

    /// A self-signed certificate named "CA:TRUE" over a new RSA key, with
    /// `constraints`, DER.
    fn cert_with(constraints: Constraints) -> Result<Vec<u8>, ErrorStack> {
        let key = rsa_key()?;
        CertParams {
            constraints,
            ..CertParams::student("CA:TRUE")
        }
        .self_signed(&key)?
        .to_der()
    }

    #[test]
    fn a_certificate_with_a_tiny_rsa_exponent_is_refused() -> Result<(), Box<dyn std::error::Error>>
    {
        use openssl::bn::BigNum;
        let dir = tempfile::tempdir()?;
        let ca = CaParams::default().create(dir.path())?;
        let weak = PKey::from_rsa(Rsa::generate_with_e(2048, BigNum::from_u32(3)?.as_ref())?)?;
        let der = CertParams::student("alice")
            .signed_by(&weak, Issuer::ca(&ca))?
            .to_der()?;
        let v = Verifier::new(ca.cert())?;
        assert_eq!(
            v.verify("alice", &der, &[]).err(),
            Some(CertError::WeakRsaExponent)
        );
        Ok(())
    }

    #[test]
    fn reads_the_rsa_exponent_from_der_as_openssl_decodes_it(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use openssl::bn::BigNum;
        for e in [3u32, 65_537, 0x7fff_ffff, 0x8000_0001] {
            let key = PKey::from_rsa(Rsa::generate_with_e(2048, BigNum::from_u32(e)?.as_ref())?)?;
            let der = CertParams::student("alice").self_signed(&key)?.to_der()?;
            let openssl_e = X509::from_der(&der)?.public_key()?.rsa()?.e().to_vec();
            assert_eq!(rsa_public_exponent(&der)?, &openssl_e[..], "e = {e}");
        }
        // A P-256 key is not read as RSA.
        let ec = p256_key()?;
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        b.set_pubkey(&ec)?;
        b.sign(&ec, MessageDigest::sha256())?;
        assert!(rsa_public_exponent(&b.build().to_der()?).is_err());
        // Version 1 certificates carry no [0] version field.
        let key = rsa_key()?;
        let mut b = X509Builder::new()?;
        b.set_version(0)?;
        b.set_pubkey(&key)?;
        b.sign(&key, MessageDigest::sha256())?;
        let der = b.build().to_der()?;
        let mut cert = Reader::new(&der).nested(crate::der::tag::SEQUENCE)?;
        let tbs = cert.nested(crate::der::tag::SEQUENCE)?;
        assert_ne!(
            tbs.peek_tag(),
            Some(crate::der::tag::CONTEXT_0),
            "version 1"
        );
        assert_eq!(rsa_public_exponent(&der)?, &[1, 0, 1]);
        assert!(rsa_public_exponent(b"\x30\x03garbage").is_err());
        Ok(())
    }

    #[test]
    fn reads_basic_constraints_from_der() -> Result<(), Box<dyn std::error::Error>> {
        let ca = Constraints::Ca {
            critical: true,
            pathlen: None,
        };
        assert!(basic_constraints_ca(&cert_with(ca)?)?);
        let ca_len = Constraints::Ca {
            critical: false,
            pathlen: Some(0),
        };
        assert!(basic_constraints_ca(&cert_with(ca_len)?)?);
        assert!(!basic_constraints_ca(&cert_with(Constraints::Leaf)?)?);
        // A name that renders as "CA:TRUE" fools no one.
        assert!(!basic_constraints_ca(&cert_with(Constraints::Absent)?)?);
        assert!(basic_constraints_ca(b"\x30\x03garbage").is_err());
        Ok(())
    }

    /// A Blackboard certificate for the dNSNames `names`, serverAuth, valid
    /// from a minute ago for 30 days, issued by `issuer`.
    fn server_leaf(names: &[&str], issuer: Issuer<'_>) -> Result<Vec<u8>, ErrorStack> {
        use openssl::x509::extension::{
            AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage,
            SubjectAlternativeName,
        };
        let key = p256_key()?;
        let p = CertParams::student("blackboard");
        let mut subject = openssl::x509::X509Name::builder()?;
        subject.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, "blackboard")?;
        let subject = subject.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = openssl::bn::BigNum::from_u32(7)?.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(issuer.cert.subject_name())?;
        b.set_pubkey(&key)?;
        b.set_not_before(openssl::asn1::Asn1Time::from_unix(p.not_before)?.as_ref())?;
        b.set_not_after(openssl::asn1::Asn1Time::from_unix(p.not_after)?.as_ref())?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        let mut san = SubjectAlternativeName::new();
        for n in names {
            san.dns(n);
        }
        b.append_extension(san.build(&b.x509v3_context(Some(issuer.cert), None))?)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(issuer.cert), None))?;
        b.append_extension(aki)?;
        b.sign(issuer.key, MessageDigest::sha256())?;
        b.build().to_der()
    }

    /// PROTOCOL.md 4.3.2's name rules: ASCII case ignored, a wildcard
    /// stands for one whole left-most label (never part of one, never
    /// across dots, never right under a one-label suffix), the CN never
    /// consulted.
    #[test]
    fn blackboard_names_match_as_the_spec_says() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ca = CaParams::default().create(dir.path())?;
        let root = ca.cert();
        let check = |names: &[&str], name: &str| -> Result<bool, Box<dyn std::error::Error>> {
            let leaf = server_leaf(names, Issuer::ca(&ca))?;
            match verify_blackboard(root, &[leaf], Some(name), None) {
                Ok(_) => Ok(true),
                Err(BlackboardCertError::WrongName { expected }) => {
                    assert_eq!(expected, name);
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        };
        assert!(check(&["bb.course.example"], "bb.course.example")?);
        assert!(check(&["bb.course.example"], "BB.Course.EXAMPLE")?);
        assert!(check(&["BB.COURSE.EXAMPLE"], "bb.course.example")?);
        assert!(!check(&["bb.course.example"], "bb.course.example.org")?);
        assert!(!check(&["bb.course.example"], "course.example")?);
        // Several names: any one of them.
        assert!(check(
            &["other.example", "bb.course.example"],
            "bb.course.example"
        )?);
        // Wildcards: one whole left-most label.
        assert!(check(&["*.course.example"], "bb.course.example")?);
        assert!(check(&["*.course.example"], "BB.course.example")?);
        assert!(!check(&["*.course.example"], "a.bb.course.example")?);
        assert!(!check(&["*.course.example"], "course.example")?);
        assert!(!check(&["b*.course.example"], "bb.course.example")?);
        assert!(!check(&["*b.course.example"], "bb.course.example")?);
        assert!(!check(&["*.example"], "course.example")?);
        // The CN ("blackboard") is never consulted.
        assert!(!check(&["other.example"], "blackboard")?);
        Ok(())
    }

    /// OpenSSL's `X509_V_ERR_CERT_NOT_YET_VALID` and `_HAS_EXPIRED`.
    const CERT_NOT_YET_VALID: i32 = 9;
    const CERT_HAS_EXPIRED: i32 = 10;

    /// The pinned root's own validity period is checked at the same time
    /// as the rest of the path (now, or a receipt's `received_at`).
    #[test]
    fn a_root_outside_its_validity_period_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let now = crate::time::now_unix();
        let key = rsa_key()?;
        let root = CertParams {
            not_before: now - 10 * 86_400,
            not_after: now - 86_400,
            ..CertParams::authority("expired root")
        }
        .self_signed(&key)?;
        let leaf = server_leaf(
            &["bb.course.example"],
            Issuer {
                cert: &root,
                key: &key,
            },
        )?;
        let name = Some("bb.course.example");
        match verify_blackboard(&root, std::slice::from_ref(&leaf), name, None) {
            Err(BlackboardCertError::Path { code, .. }) => {
                assert_eq!(code, CERT_HAS_EXPIRED)
            }
            other => panic!("an expired root must be refused: {other:?}"),
        }
        // Back when the root was valid, the leaf was not yet: refused too.
        let then = Some(now - 5 * 86_400);
        match verify_blackboard(&root, std::slice::from_ref(&leaf), name, then) {
            Err(BlackboardCertError::Path { code, .. }) => {
                assert_eq!(code, CERT_NOT_YET_VALID)
            }
            other => panic!("a leaf not yet valid must be refused: {other:?}"),
        }
        // A root valid now passes with the same kind of leaf.
        let good = CertParams::authority("good root").self_signed(&key)?;
        let leaf = server_leaf(
            &["bb.course.example"],
            Issuer {
                cert: &good,
                key: &key,
            },
        )?;
        assert!(verify_blackboard(&good, &[leaf], name, None).is_ok());
        Ok(())
    }
}
