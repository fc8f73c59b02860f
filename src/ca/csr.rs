//! The certificate signing request: PKCS#10 parsing, proof of possession
//! (the CSR's signature under its own key), the subject's CN (the SID) and
//! the key policy (which key types, sizes, curves and RSA exponents the CA
//! certifies).
//!
//! From the CSR only two things are taken: the subject's CN and the public
//! key; every attribute and requested extension is ignored.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroupRef, EcKey, EcPoint};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Verifier;

use super::CaError;
use crate::der::{self, oid, tag, DerError, Reader};

/// The parts of a PKCS#10 request issuance needs, borrowed from its DER.
#[derive(Debug)]
pub(super) struct CsrParts<'a> {
    /// The CertificationRequestInfo, all of its bytes: what is signed.
    info: &'a [u8],
    /// The subject Name's content (its RDNs).
    subject: &'a [u8],
    /// The SubjectPublicKeyInfo, all of its bytes.
    pub(super) spki: &'a [u8],
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
    pub(super) fn parse(csr_der: &'a [u8]) -> Result<CsrParts<'a>, DerError> {
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
    pub(super) fn common_name(&self) -> Result<Option<String>, CaError> {
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

    /// Verifies the CSR's signature over its CertificationRequestInfo with
    /// the key it carries (proof of possession).
    pub(super) fn verify_signature(
        &self,
        key: &StudentKey<'_>,
        p256: &EcGroupRef,
    ) -> Result<(), CaError> {
        let csr = self;
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
                let point = EcPoint::from_bytes(p256, point, &mut ctx)
                    .map_err(|_| CaError::UnsupportedKey("EC point not on P-256".into()))?;
                PKey::from_ec_key(EcKey::from_public_key(p256, &point)?)?
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
pub(super) enum KeyFamily {
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
pub(super) struct StudentKey<'a> {
    pub(super) family: KeyFamily,
    material: KeyMaterial<'a>,
    /// The subjectPublicKey BIT STRING's bytes (hashed for the SKI).
    pub(super) bits: &'a [u8],
}

impl<'a> StudentKey<'a> {
    /// The key types the CA certifies for students: RSA of 2048 to 4096
    /// bits (Blackboard needs RSA to encrypt the session key) and EC P-256.
    /// Everything else is refused before any signature is checked, so an
    /// oversized key costs nothing.
    pub(super) fn parse(spki: &'a [u8]) -> Result<StudentKey<'a>, CaError> {
        let malformed = CaError::MalformedCsr;
        let der::SpkiParts { alg, params, bits } = der::spki_parts(spki).map_err(malformed)?;
        match alg {
            oid::RSA_ENCRYPTION => {
                // RFC 3279 2.3.1: the parameters MUST be NULL.
                if params.map(|p| p.raw) != Some(&[tag::NULL, 0][..]) {
                    return Err(malformed(DerError::BadValue(
                        "RSA key parameters (must be NULL)",
                    )));
                }
                let der::RsaPublicKey { n, e } = der::rsa_public_key(bits).map_err(malformed)?;
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
                oid::text(other)
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
    found.ok_or_else(|| CaError::UnsupportedSignature(oid::text(alg)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        make_csr, p256_key, rsa_key, test_ca, verifies_under_root, TestResult,
    };
    use super::super::{name_text, CaKeyType, CertificateAuthority};
    use super::*;
    use openssl::ec::EcGroup;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Name, X509ReqBuilder, X509};
    use proptest::prelude::*;

    #[test]
    fn bad_csr_signature_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let mut der = make_csr("alice", &rsa_key()?)?;
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
            let err = ca.issue(&make_csr(sid, &key)?).err();
            assert!(matches!(err, Some(CaError::BadSid(_))), "{sid}: {err:?}");
        }
        let err = ca.issue(b"not a csr").err();
        assert!(matches!(err, Some(CaError::MalformedCsr(_))), "{err:?}");
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
    fn a_csr_with_exponent_3_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let key = PKey::from_rsa(Rsa::generate_with_e(2048, BigNum::from_u32(3)?.as_ref())?)?;
        let err = ca.issue(&make_csr("alice", &key)?).err();
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
        let err = ca.issue(&make_csr("alice", &key)?).err();
        assert!(matches!(err, Some(CaError::UnsupportedKey(_))), "{err:?}");
        Ok(())
    }

    #[test]
    fn other_key_types_and_curves_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let p384_group = EcGroup::from_curve_name(Nid::SECP384R1)?;
        let p384 = PKey::from_ec_key(EcKey::generate(&p384_group)?)?;
        let err = ca.issue(&make_csr("alice", &p384)?).err();
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
        ca.issue(&make_csr("bob", &p256_key()?)?)?;
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
        let der = make_csr("alice", &rsa_key()?)?;
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
                    let der = make_csr("alice", &key).expect("ok: test fixture");
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
