//! The leaf certificate writer: the one fixed profile every student
//! certificate gets, its TBSCertificate built directly in DER around the
//! student's SubjectPublicKeyInfo (kept as it came) and signed by the root.
//!
//! Why not OpenSSL's builder? Its 3.0 key decoders and encoders cost ten
//! times the P-256 signature itself (see BENCHMARKS.md); the tests check the
//! result byte for byte against OpenSSL's builder.

use std::path::PathBuf;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKeyRef, Private};
use openssl::sign::Signer;
use openssl::x509::X509Ref;

use super::csr::{KeyFamily, StudentKey};
use super::{backdated_now, CaError, Issued, Serial, CA_CERT_FILE};
use crate::der::{self, oid, tag, DerError};

/// What every leaf takes from the root, encoded once when the CA starts.
pub(super) struct LeafProfile {
    /// The AlgorithmIdentifier of the CA's signatures (SHA-256 with its key
    /// type), DER, as it appears twice in every certificate.
    pub(super) sig_alg_der: Vec<u8>,
    /// The root's subject Name, DER, exactly as in the root certificate:
    /// the issuer of every certificate.
    pub(super) issuer_der: Vec<u8>,
    /// The authorityKeyIdentifier extension (the root's key id), DER.
    pub(super) aki_ext_der: Vec<u8>,
    /// The extensions an RSA leaf gets before its key identifiers, DER.
    fixed_exts_rsa: Vec<u8>,
    /// The same for an EC leaf.
    fixed_exts_ec: Vec<u8>,
    /// cRLDistributionPoints and authorityInfoAccess (OCSP) naming the
    /// public URL (`--public-url`), DER; empty without one.
    url_exts: Vec<u8>,
}

impl LeafProfile {
    /// The profile of leaves signed by this root key and certificate.
    pub(super) fn for_root(
        key: &PKeyRef<Private>,
        cert: &X509Ref,
        cert_der: &[u8],
    ) -> Result<LeafProfile, CaError> {
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
        let issuer_der = root_subject_der(cert_der)
            .map_err(|_| CaError::RootMismatch(PathBuf::from(CA_CERT_FILE)))?;
        // The root's own subjectKeyIdentifier; a root made elsewhere without
        // one gets the same SHA-1 of its key bits.
        let key_id = match cert.subject_key_id() {
            Some(id) => id.as_slice().to_vec(),
            None => {
                let spki = key.public_key_to_der()?;
                let parts = der::spki_parts(&spki)
                    .map_err(|_| CaError::RootMismatch(PathBuf::from(CA_CERT_FILE)))?;
                openssl::sha::sha1(parts.bits).to_vec()
            }
        };
        let mut aki_ext_der = Vec::new();
        der::write_nested(&mut aki_ext_der, tag::SEQUENCE, |e| {
            // authorityKeyIdentifier, not critical.
            der::write_tlv(e, tag::OID, oid::AUTHORITY_KEY_IDENTIFIER);
            der::write_nested(e, tag::OCTET_STRING, |o| {
                der::write_nested(o, tag::SEQUENCE, |aki| {
                    // keyIdentifier [0] IMPLICIT OCTET STRING
                    der::write_tlv(aki, tag::IMPLICIT_0, &key_id);
                });
            });
        });
        Ok(LeafProfile {
            sig_alg_der,
            issuer_der,
            aki_ext_der,
            fixed_exts_rsa: fixed_extensions(KeyFamily::Rsa),
            fixed_exts_ec: fixed_extensions(KeyFamily::Ec),
            url_exts: Vec::new(),
        })
    }

    /// Every leaf from now on names `base/crl` as its CRL distribution
    /// point and `base/ocsp` as its OCSP responder (RFC 5280 §4.2.1.13,
    /// §4.2.2.1). `base` is an `http://` URL (RFC 5280 and RFC 5019 want
    /// plain HTTP for both: the answers are signed), printable ASCII.
    pub(super) fn set_public_url(&mut self, base: &str) -> Result<(), CaError> {
        let base = base.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| CaError::BadPublicUrl(base.to_string()))?;
        if rest.is_empty() || !base.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CaError::BadPublicUrl(base.to_string()));
        }
        let crl = format!("{base}/crl");
        let ocsp = format!("{base}/ocsp");
        let mut out = Vec::with_capacity(2 * base.len() + 64);
        extension(&mut out, oid::CRL_DISTRIBUTION_POINTS, false, |v| {
            der::write_nested(v, tag::SEQUENCE, |points| {
                der::write_nested(points, tag::SEQUENCE, |point| {
                    // distributionPoint [0] { fullName [0] { URI [6] } }
                    der::write_nested(point, tag::CONTEXT_0, |name| {
                        der::write_nested(name, tag::CONTEXT_0, |full| {
                            der::write_tlv(full, tag::IMPLICIT_6, crl.as_bytes());
                        });
                    });
                });
            });
        });
        extension(&mut out, oid::AUTHORITY_INFO_ACCESS, false, |v| {
            der::write_nested(v, tag::SEQUENCE, |aia| {
                der::write_nested(aia, tag::SEQUENCE, |desc| {
                    der::write_tlv(desc, tag::OID, oid::AD_OCSP);
                    der::write_tlv(desc, tag::IMPLICIT_6, ocsp.as_bytes());
                });
            });
        });
        self.url_exts = out;
        Ok(())
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
    /// 4.2.1.2 method 1); authorityKeyIdentifier keyid of the root; with a
    /// public URL, cRLDistributionPoints and authorityInfoAccess.
    pub(super) fn sign(
        &self,
        root_key: &PKeyRef<Private>,
        validity_days: u32,
        sid: &str,
        spki: &[u8],
        key: &StudentKey<'_>,
    ) -> Result<Issued, CaError> {
        let fixed = match key.family {
            KeyFamily::Rsa => &self.fixed_exts_rsa,
            KeyFamily::Ec => &self.fixed_exts_ec,
        };
        let lifetime = i64::from(validity_days) * 86_400;
        self.sign_leaf(root_key, lifetime, sid, spki, key.bits, |exts| {
            exts.extend_from_slice(fixed)
        })
    }

    /// Blackboard's certificate: the same writer, with the server profile
    /// (after the subject `CN=<name>` and the key): basicConstraints
    /// critical CA:FALSE; keyUsage critical digitalSignature;
    /// extendedKeyUsage serverAuth; subjectAltName dNSName `<name>`; then
    /// the key identifiers as for students. `name` is a checked DNS name.
    pub(super) fn sign_server(
        &self,
        root_key: &PKeyRef<Private>,
        lifetime_secs: i64,
        name: &str,
        spki: &[u8],
        key_bits: &[u8],
    ) -> Result<Issued, CaError> {
        self.sign_leaf(root_key, lifetime_secs, name, spki, key_bits, |exts| {
            extension(exts, oid::BASIC_CONSTRAINTS, true, |v| {
                der::write_tlv(v, tag::SEQUENCE, &[]);
            });
            extension(exts, oid::KEY_USAGE, true, |v| {
                der::write_tlv(v, tag::BIT_STRING, &[7, 0x80]);
            });
            extension(exts, oid::EXT_KEY_USAGE, false, |v| {
                der::write_nested(v, tag::SEQUENCE, |kps| {
                    der::write_tlv(kps, tag::OID, oid::KP_SERVER_AUTH);
                });
            });
            extension(exts, oid::SUBJECT_ALT_NAME, false, |v| {
                der::write_nested(v, tag::SEQUENCE, |names| {
                    der::write_tlv(names, tag::IMPLICIT_2, name.as_bytes());
                });
            });
        })
    }

    /// The one leaf writer: v3; a random 16-byte serial; the root's subject
    /// as issuer; backdated now to now + `lifetime_secs`; `CN=<cn>` as a
    /// UTF8String; the key as it came; the extensions `profile_exts`
    /// writes, then subjectKeyIdentifier (SHA-1 of the key bits, RFC 5280
    /// 4.2.1.2 method 1) and the root's authorityKeyIdentifier.
    fn sign_leaf(
        &self,
        root_key: &PKeyRef<Private>,
        lifetime_secs: i64,
        cn: &str,
        spki: &[u8],
        key_bits: &[u8],
        profile_exts: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Issued, CaError> {
        let serial = Serial::random()?;
        let not_before = backdated_now();
        let not_after = not_before + lifetime_secs;
        let ski = openssl::sha::sha1(key_bits);

        let mut tbs = Vec::with_capacity(512 + spki.len());
        der::write_nested(&mut tbs, tag::SEQUENCE, |t| {
            t.extend_from_slice(&[tag::CONTEXT_0, 3, tag::INTEGER, 1, 2]);
            // A drawn serial is positive with its top bit clear: its magnitude
            // is its DER content.
            der::write_tlv(t, tag::INTEGER, serial.magnitude());
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
                        der::write_tlv(atv, tag::UTF8_STRING, cn.as_bytes());
                    });
                });
            });
            t.extend_from_slice(spki);
            der::write_nested(t, tag::CONTEXT_3, |x| {
                der::write_nested(x, tag::SEQUENCE, |exts| {
                    profile_exts(exts);
                    extension(exts, oid::SUBJECT_KEY_IDENTIFIER, false, |v| {
                        der::write_tlv(v, tag::OCTET_STRING, &ski);
                    });
                    exts.extend_from_slice(&self.aki_ext_der);
                    exts.extend_from_slice(&self.url_exts);
                });
            });
        });

        let mut signer = Signer::new(MessageDigest::sha256(), root_key)?;
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
        Ok(Issued {
            sid: cn.to_string(),
            serial,
            not_before,
            not_after,
            der: cert,
        })
    }
}

/// Appends one Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT
/// FALSE, extnValue OCTET STRING } whose value `value` writes.
pub(super) fn extension(
    out: &mut Vec<u8>,
    id: &[u8],
    critical: bool,
    value: impl FnOnce(&mut Vec<u8>),
) {
    der::write_nested(out, tag::SEQUENCE, |e| {
        der::write_tlv(e, tag::OID, id);
        if critical {
            der::write_tlv(e, tag::BOOLEAN, &[0xff]);
        }
        der::write_nested(e, tag::OCTET_STRING, value);
    });
}

/// The extensions every leaf of a key family gets before its key
/// identifiers, in order: basicConstraints critical CA:FALSE (an empty
/// SEQUENCE); keyUsage critical, digitalSignature plus keyEncipherment for
/// an RSA key (Blackboard encrypts the session key to it) and
/// digitalSignature alone for an EC key (RFC 5480 section 3 forbids
/// keyEncipherment there); extendedKeyUsage clientAuth, not critical.
fn fixed_extensions(family: KeyFamily) -> Vec<u8> {
    // KeyUsage BIT STRING contents: the count of unused bits, then the bits
    // (digitalSignature is bit 0, keyEncipherment bit 2).
    let key_usage: &[u8] = match family {
        KeyFamily::Rsa => &[5, 0xa0],
        KeyFamily::Ec => &[7, 0x80],
    };
    let mut out = Vec::with_capacity(64);
    extension(&mut out, oid::BASIC_CONSTRAINTS, true, |v| {
        der::write_tlv(v, tag::SEQUENCE, &[]);
    });
    extension(&mut out, oid::KEY_USAGE, true, |v| {
        der::write_tlv(v, tag::BIT_STRING, key_usage);
    });
    extension(&mut out, oid::EXT_KEY_USAGE, false, |v| {
        der::write_nested(v, tag::SEQUENCE, |kps| {
            der::write_tlv(kps, tag::OID, oid::KP_CLIENT_AUTH);
        });
    });
    out
}

/// The subject Name of a certificate, all of its bytes, as encoded in it.
fn root_subject_der(cert_der: &[u8]) -> Result<Vec<u8>, DerError> {
    Ok(der::TbsCertificate::parse(cert_der)?.subject.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        ext_text, make_csr, p256_key, rsa_key, test_ca, verifies_under_root, TestResult,
    };
    use super::super::{name_text, random_serial, CaError, CaKeyType, CertificateAuthority};
    use super::*;
    use crate::der::Reader;
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::error::ErrorStack;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Public};
    use openssl::stack::Stack;
    use openssl::x509::extension::{
        AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
    };
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{
        X509Builder, X509Extension, X509Name, X509ReqBuilder, X509StoreContext, X509,
    };

    /// The issuance this module did before the fast path: OpenSSL's own
    /// builder, kept here as the reference the fast path must match.
    fn reference_issue(
        ca: &CertificateAuthority,
        sid: &str,
        pubkey: &PKeyRef<Public>,
    ) -> Result<X509, ErrorStack> {
        reference_issue_with(ca, sid, pubkey, None)
    }

    /// The reference, with the two URL extensions when `url` is given.
    #[allow(deprecated)] // X509Extension::new_nid: the config-string form
    fn reference_issue_with(
        ca: &CertificateAuthority,
        sid: &str,
        pubkey: &PKeyRef<Public>,
        url: Option<&str>,
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
        if let Some(url) = url {
            let ctx = b.x509v3_context(Some(&ca.cert), None);
            let cdp = X509Extension::new_nid(
                None,
                Some(&ctx),
                Nid::CRL_DISTRIBUTION_POINTS,
                &format!("URI:{url}/crl"),
            )?;
            let aia = X509Extension::new_nid(
                None,
                Some(&ctx),
                Nid::INFO_ACCESS,
                &format!("OCSP;URI:{url}/ocsp"),
            )?;
            b.append_extension(cdp)?;
            b.append_extension(aia)?;
        }
        b.sign(&ca.key, MessageDigest::sha256())?;
        Ok(b.build())
    }

    /// The TBSCertificate's fields of a certificate, each as raw DER:
    /// version, serial, signature algorithm, issuer, validity, subject,
    /// key, extensions; then the outer signature algorithm.
    fn cert_fields(der: &[u8]) -> Result<Vec<Vec<u8>>, DerError> {
        let mut outer = Reader::new(der);
        outer.any()?;
        outer.finish()?;
        let tbs = der::TbsCertificate::parse(der)?;
        let mut fields: Vec<Vec<u8>> = tbs.fields()?.iter().map(|f| f.raw.to_vec()).collect();
        fields.push(tbs.signature_value()?.0.raw.to_vec());
        Ok(fields)
    }

    #[test]
    fn issues_the_fixed_profile_for_both_root_types() -> TestResult {
        for kind in [CaKeyType::Rsa2048, CaKeyType::P256] {
            let dir = tempfile::tempdir()?;
            let ca = test_ca(dir.path(), kind)?;
            let key = rsa_key()?;
            let issued = ca.issue(&make_csr("1155000001", &key)?)?;
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
            assert_eq!(serial.to_hex_str()?.to_string(), issued.serial.to_string());
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
    fn ec_student_keys_get_no_key_encipherment() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::Rsa2048)?;
        let key = p256_key()?;
        let issued = ca.issue(&make_csr("1155000001", &key)?)?;
        let text = ext_text(&X509::from_der(&issued.der)?);
        assert!(text.contains("Digital Signature"), "{text}");
        assert!(!text.contains("Key Encipherment"), "RFC 5480: {text}");
        Ok(())
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
        let der = make_csr("alice", &key)?;
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
    fn fast_path_matches_the_openssl_builder_byte_for_byte() -> TestResult {
        for (kind, url) in [
            (CaKeyType::Rsa2048, None),
            (CaKeyType::P256, None),
            (CaKeyType::Rsa2048, Some("http://ca.example.edu:8080")),
            (CaKeyType::P256, Some("http://127.0.0.1:9")),
        ] {
            let dir = tempfile::tempdir()?;
            let mut ca = test_ca(dir.path(), kind)?;
            if let Some(url) = url {
                // A trailing slash is not doubled.
                ca.set_public_url(&format!("{url}/"))?;
            }
            for student in [rsa_key()?, p256_key()?] {
                let issued = ca.issue(&make_csr("1155000042", &student)?)?;
                let pubkey = PKey::public_key_from_der(&student.public_key_to_der()?)?;
                let reference = reference_issue_with(&ca, "1155000042", &pubkey, url)?;
                if let Some(url) = url {
                    let text = ext_text(&X509::from_der(&issued.der)?);
                    assert!(text.contains(&format!("URI:{url}/crl")), "{text}");
                    assert!(text.contains(&format!("OCSP - URI:{url}/ocsp")), "{text}");
                }
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
                    issued.serial.to_string()
                );
                assert!(cert.not_before() == Asn1Time::from_unix(issued.not_before)?);
                assert!(cert.not_after() == Asn1Time::from_unix(issued.not_after)?);
                assert!(cert.verify(ca.cert().public_key()?.as_ref())?);
                assert!(verifies_under_root(&ca, &cert)?, "{kind:?}");
                // The Blackboard check accepts it (RSA students only).
                if student.id() == Id::RSA {
                    let v = crate::verify::Verifier::new(ca.cert())?;
                    let s = v.verify("1155000042", &issued.der, &[])?;
                    assert_eq!(s.serial, issued.serial);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn public_urls_must_be_plain_http() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut ca = test_ca(dir.path(), CaKeyType::P256)?;
        for bad in ["https://x", "ftp://x", "http://", "http://a b", "x"] {
            assert!(
                matches!(ca.set_public_url(bad), Err(CaError::BadPublicUrl(_))),
                "{bad}"
            );
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
}
