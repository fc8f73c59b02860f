//! Just enough DER for the CA's fast issuance path: a strict reader for the
//! few structures the CA looks into (a PKCS#10 request, a
//! SubjectPublicKeyInfo, a name, a certificate's TBSCertificate) and a
//! writer for the TBSCertificate of our one fixed profile; and `oid`,
//! every object identifier certboard uses. No cryptography here: signatures
//! are checked and made by OpenSSL in `ca/`.
//!
//! Why not let OpenSSL parse the request and build the certificate? Its
//! 3.0 key decoders and encoders cost ten times the P-256 signature itself
//! (see BENCHMARKS.md); the student's SubjectPublicKeyInfo can instead go
//! into the certificate exactly as it came, once checked.
//!
//! The reader accepts DER only (definite, minimal lengths; single-byte
//! tags), so whatever it passes through into a certificate is DER too.

use std::fmt;

/// Universal tags used here.
pub(crate) mod tag {
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const NULL: u8 = 0x05;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    pub(crate) const PRINTABLE_STRING: u8 = 0x13;
    pub(crate) const T61_STRING: u8 = 0x14;
    pub(crate) const IA5_STRING: u8 = 0x16;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const UNIVERSAL_STRING: u8 = 0x1c;
    pub(crate) const BMP_STRING: u8 = 0x1e;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
    /// `[0]` constructed (explicit tag 0, or implicit SET OF in PKCS#10).
    pub(crate) const CONTEXT_0: u8 = 0xa0;
    /// `[3]` constructed.
    pub(crate) const CONTEXT_3: u8 = 0xa3;
    /// ENUMERATED (CRLReason, OCSPResponseStatus).
    pub(crate) const ENUMERATED: u8 = 0x0a;
    /// `[0]` primitive (an implicitly tagged primitive, such as
    /// AuthorityKeyIdentifier's keyIdentifier).
    pub(crate) const IMPLICIT_0: u8 = 0x80;
    /// `[2] IMPLICIT IA5String`: a GeneralName's dNSName.
    pub(crate) const IMPLICIT_2: u8 = 0x82;
    /// `[6]` primitive: GeneralName's uniformResourceIdentifier.
    pub(crate) const IMPLICIT_6: u8 = 0x86;
}

/// Every object identifier certboard uses, as the content bytes of its DER
/// encoding, named once with the standard that defines it (rcgen's
/// `oid.rs`). No other file spells an OID's bytes.
pub(crate) mod oid {
    /// 2.5.4.3 id-at-commonName (X.520; RFC 5280 appendix A.1).
    pub(crate) const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

    /// 1.2.840.113549.1.1.1 rsaEncryption (RFC 8017 appendix A.1; RFC 3279
    /// section 2.3.1).
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.1.11 sha256WithRSAEncryption (RFC 4055 section 5).
    pub(crate) const SHA256_WITH_RSA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    /// 1.2.840.113549.1.1.12 sha384WithRSAEncryption (RFC 4055 section 5).
    pub(crate) const SHA384_WITH_RSA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    /// 1.2.840.113549.1.1.13 sha512WithRSAEncryption (RFC 4055 section 5).
    pub(crate) const SHA512_WITH_RSA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

    /// 1.2.840.10045.2.1 id-ecPublicKey (RFC 5480 section 2.1.1).
    pub(crate) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 secp256r1 / prime256v1, P-256 (RFC 5480 section
    /// 2.1.1.1).
    pub(crate) const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.2.840.10045.4.3.2 ecdsa-with-SHA256 (RFC 5758 section 3.2).
    pub(crate) const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// 1.2.840.10045.4.3.3 ecdsa-with-SHA384 (RFC 5758 section 3.2).
    pub(crate) const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// 1.2.840.10045.4.3.4 ecdsa-with-SHA512 (RFC 5758 section 3.2).
    pub(crate) const ECDSA_WITH_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];

    /// 2.5.29.14 id-ce-subjectKeyIdentifier (RFC 5280 section 4.2.1.2).
    pub(crate) const SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x0e];
    /// 2.5.29.15 id-ce-keyUsage (RFC 5280 section 4.2.1.3).
    pub(crate) const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    /// 2.5.29.19 id-ce-basicConstraints (RFC 5280 section 4.2.1.9).
    pub(crate) const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    /// 2.5.29.35 id-ce-authorityKeyIdentifier (RFC 5280 section 4.2.1.1).
    pub(crate) const AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x23];
    /// 2.5.29.37 id-ce-extKeyUsage (RFC 5280 section 4.2.1.12).
    pub(crate) const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
    /// 1.3.6.1.5.5.7.3.2 id-kp-clientAuth (RFC 5280 section 4.2.1.12).
    pub(crate) const KP_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    /// 1.3.6.1.5.5.7.3.1 id-kp-serverAuth (RFC 5280 section 4.2.1.12).
    pub(crate) const KP_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    /// 2.5.29.17 id-ce-subjectAltName (RFC 5280 section 4.2.1.6).
    pub(crate) const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

    /// 2.5.29.20 id-ce-cRLNumber (RFC 5280 section 5.2.3).
    pub(crate) const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
    /// 2.5.29.21 id-ce-cRLReasons (RFC 5280 section 5.3.1).
    pub(crate) const CRL_REASON: &[u8] = &[0x55, 0x1d, 0x15];
    /// 2.5.29.31 id-ce-cRLDistributionPoints (RFC 5280 section 4.2.1.13).
    pub(crate) const CRL_DISTRIBUTION_POINTS: &[u8] = &[0x55, 0x1d, 0x1f];
    /// 1.3.6.1.5.5.7.1.1 id-pe-authorityInfoAccess (RFC 5280 section
    /// 4.2.2.1).
    pub(crate) const AUTHORITY_INFO_ACCESS: &[u8] =
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
    /// 1.3.6.1.5.5.7.48.1 id-ad-ocsp (RFC 5280 section 4.2.2.1).
    pub(crate) const AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

    /// 1.3.14.3.2.26 id-sha1 (RFC 3279 section 2.2.1), in OCSP CertIDs.
    pub(crate) const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// 2.16.840.1.101.3.4.2.1 id-sha256 (RFC 5754 section 2.2).
    pub(crate) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// 1.3.6.1.5.5.7.48.1.1 id-pkix-ocsp-basic (RFC 6960 section 4.2.1).
    pub(crate) const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
    /// 1.3.6.1.5.5.7.48.1.2 id-pkix-ocsp-nonce (RFC 6960 section 4.4.1).
    pub(crate) const OCSP_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

    /// Dotted text of an OID's content bytes, for messages.
    pub(crate) fn text(content: &[u8]) -> String {
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
}

/// Why bytes are not the DER the CA expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DerError {
    /// The input ends inside an element.
    Truncated,
    /// A length is indefinite, not minimal, or larger than supported.
    BadLength,
    /// A multi-byte (high-number) tag.
    UnsupportedTag,
    /// An element of another type than the structure requires.
    UnexpectedTag {
        /// What the structure requires there.
        expected: u8,
        /// What was found.
        found: u8,
    },
    /// Bytes follow the end of a structure.
    TrailingData,
    /// A field's content breaks its own rules (named).
    BadValue(&'static str),
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerError::Truncated => write!(f, "truncated DER"),
            DerError::BadLength => write!(f, "invalid DER length"),
            DerError::UnsupportedTag => write!(f, "unsupported multi-byte DER tag"),
            DerError::UnexpectedTag { expected, found } => {
                write!(f, "expected DER tag 0x{expected:02x}, found 0x{found:02x}")
            }
            DerError::TrailingData => write!(f, "unexpected bytes after a DER structure"),
            DerError::BadValue(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for DerError {}

/// One element: its tag, its content, and all of its bytes (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    pub(crate) raw: &'a [u8],
}

/// Reads consecutive elements off a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

/// Longest length accepted: 4 length bytes, far beyond any CSR.
const MAX_LEN_BYTES: usize = 4;

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The tag of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element, whatever its tag.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let data = self.data;
        let (&tag, rest) = data.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::UnsupportedTag);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            // 0x80 is BER's indefinite length; DER forbids it.
            if n == 0 || n > MAX_LEN_BYTES {
                return Err(DerError::BadLength);
            }
            let bytes = rest.get(..n).ok_or(DerError::Truncated)?;
            rest = &rest[n..];
            if bytes[0] == 0 {
                return Err(DerError::BadLength);
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            // DER: the long form only when the short form cannot say it.
            if len < 0x80 {
                return Err(DerError::BadLength);
            }
            len
        };
        let header = data.len() - rest.len();
        let content = rest.get(..len).ok_or(DerError::Truncated)?;
        let total = header + len;
        self.data = &data[total..];
        Ok(Tlv {
            tag,
            content,
            raw: &data[..total],
        })
    }

    /// The next element, which must have tag `expected`.
    pub(crate) fn expect_tag(&mut self, expected: u8) -> Result<Tlv<'a>, DerError> {
        let found = self.peek_tag().ok_or(DerError::Truncated)?;
        if found != expected {
            return Err(DerError::UnexpectedTag { expected, found });
        }
        self.any()
    }

    /// A reader over the content of the next element, which must have tag
    /// `expected` (a SEQUENCE, a SET, an explicit tag…).
    pub(crate) fn nested(&mut self, expected: u8) -> Result<Reader<'a>, DerError> {
        Ok(Reader::new(self.expect_tag(expected)?.content))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), DerError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// The magnitude of a DER INTEGER that must be positive, minimally encoded,
/// without its sign byte.
pub(crate) fn positive_integer<'a>(t: &Tlv<'a>) -> Result<&'a [u8], DerError> {
    let c = t.content;
    match c {
        [] => Err(DerError::BadValue("INTEGER (empty)")),
        [b, ..] if b & 0x80 != 0 => Err(DerError::BadValue("INTEGER (negative)")),
        [0, next, ..] if next & 0x80 == 0 => Err(DerError::BadValue("INTEGER (not minimal)")),
        [0] => Err(DerError::BadValue("INTEGER (zero)")),
        [0, rest @ ..] => Ok(rest),
        _ => Ok(c),
    }
}

/// The bits of a BIT STRING holding whole bytes (no unused bits), as keys
/// and signatures always do.
pub(crate) fn bit_string_bytes<'a>(t: &Tlv<'a>) -> Result<&'a [u8], DerError> {
    match t.content.split_first() {
        Some((&0, bits)) => Ok(bits),
        _ => Err(DerError::BadValue("BIT STRING (unused bits)")),
    }
}

/// An AlgorithmIdentifier: the OID's content and the parameters' raw bytes
/// (None when absent).
pub(crate) fn algorithm<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], Option<Tlv<'a>>), DerError> {
    let mut alg = r.nested(tag::SEQUENCE)?;
    let oid = alg.expect_tag(tag::OID)?.content;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.any()?)
    };
    alg.finish()?;
    Ok((oid, params))
}

/// A SubjectPublicKeyInfo's parts (RFC 5280 4.1.2.7), borrowed from its DER.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpkiParts<'a> {
    /// The algorithm's OID (content bytes).
    pub(crate) alg: &'a [u8],
    /// The algorithm's parameters, when present.
    pub(crate) params: Option<Tlv<'a>>,
    /// The subjectPublicKey BIT STRING's bytes.
    pub(crate) bits: &'a [u8],
}

/// Splits a SubjectPublicKeyInfo into its parts.
pub(crate) fn spki_parts(spki: &[u8]) -> Result<SpkiParts<'_>, DerError> {
    let mut outer = Reader::new(spki);
    let mut r = outer.nested(tag::SEQUENCE)?;
    outer.finish()?;
    let (alg, params) = algorithm(&mut r)?;
    let bits = bit_string_bytes(&r.expect_tag(tag::BIT_STRING)?)?;
    r.finish()?;
    Ok(SpkiParts { alg, params, bits })
}

/// An RSA public key's two integers (RFC 8017 A.1.1), big-endian
/// magnitudes without sign bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RsaPublicKey<'a> {
    /// The modulus.
    pub(crate) n: &'a [u8],
    /// The public exponent.
    pub(crate) e: &'a [u8],
}

/// Reads the RSAPublicKey held in an rsaEncryption key's subjectPublicKey
/// bits: one SEQUENCE of two positive, minimal INTEGERs, nothing after.
///
/// The one reader of it, strict for both its users. The CA refuses a CSR
/// whose key does not read. Blackboard reads only the exponent of a key
/// OpenSSL has already decoded, in a certificate that chains to our root;
/// every key our CA certifies has passed this same reader (`issue` and
/// `issue_for` both check it), so strictness there refuses nothing our CA
/// issued, and anything else fails closed.
pub(crate) fn rsa_public_key(bits: &[u8]) -> Result<RsaPublicKey<'_>, DerError> {
    let mut outer = Reader::new(bits);
    let mut key = outer.nested(tag::SEQUENCE)?;
    outer.finish()?;
    let n = positive_integer(&key.expect_tag(tag::INTEGER)?)?;
    let e = positive_integer(&key.expect_tag(tag::INTEGER)?)?;
    key.finish()?;
    Ok(RsaPublicKey { n, e })
}

/// A certificate's TBSCertificate (RFC 5280 4.1), the one walker of it:
/// the CA reads its root's subject here, Blackboard's check a student's
/// key and extensions.
///
/// The fields up to the key are read at once, each checked for its tag;
/// the optional fields after it (unique ids, extensions) and the
/// signature after the TBSCertificate only when asked for, so a caller
/// that wants the subject or the key does not depend on how the rest is
/// encoded.
// Every field is named so the next reader finds it; today's code reads the
// subject, the key and the extensions, and the tests read them all.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct TbsCertificate<'a> {
    /// `[0] EXPLICIT Version`, absent in a v1 certificate.
    pub(crate) version: Option<Tlv<'a>>,
    /// serialNumber.
    pub(crate) serial: Tlv<'a>,
    /// signature (the AlgorithmIdentifier, repeated inside the TBS).
    pub(crate) signature: Tlv<'a>,
    /// issuer Name.
    pub(crate) issuer: Tlv<'a>,
    /// validity.
    pub(crate) validity: Tlv<'a>,
    /// subject Name.
    pub(crate) subject: Tlv<'a>,
    /// subjectPublicKeyInfo.
    pub(crate) spki: Tlv<'a>,
    /// The TBS fields after the key, unread.
    rest: Reader<'a>,
    /// The Certificate's fields after the TBS, unread.
    after: Reader<'a>,
}

#[cfg_attr(not(test), allow(dead_code))]
impl<'a> TbsCertificate<'a> {
    /// Reads the TBSCertificate of a Certificate ::= SEQUENCE {
    /// tbsCertificate, signatureAlgorithm, signatureValue }.
    pub(crate) fn parse(cert_der: &'a [u8]) -> Result<TbsCertificate<'a>, DerError> {
        let mut cert = Reader::new(cert_der).nested(tag::SEQUENCE)?;
        let mut tbs = cert.nested(tag::SEQUENCE)?;
        let version = if tbs.peek_tag() == Some(tag::CONTEXT_0) {
            Some(tbs.any()?)
        } else {
            None
        };
        Ok(TbsCertificate {
            version,
            serial: tbs.expect_tag(tag::INTEGER)?,
            signature: tbs.expect_tag(tag::SEQUENCE)?,
            issuer: tbs.expect_tag(tag::SEQUENCE)?,
            validity: tbs.expect_tag(tag::SEQUENCE)?,
            subject: tbs.expect_tag(tag::SEQUENCE)?,
            spki: tbs.expect_tag(tag::SEQUENCE)?,
            rest: tbs,
            after: cert,
        })
    }

    /// Every field of the TBSCertificate in order, the optional ones
    /// included.
    pub(crate) fn fields(&self) -> Result<Vec<Tlv<'a>>, DerError> {
        let mut fields: Vec<Tlv<'a>> = self.version.into_iter().collect();
        fields.extend([
            self.serial,
            self.signature,
            self.issuer,
            self.validity,
            self.subject,
            self.spki,
        ]);
        let mut rest = self.rest.clone();
        while !rest.is_empty() {
            fields.push(rest.any()?);
        }
        Ok(fields)
    }

    /// A reader over the extensions (each an Extension SEQUENCE), or None
    /// when the certificate has no `[3]` field.
    pub(crate) fn extensions(&self) -> Result<Option<Reader<'a>>, DerError> {
        let mut rest = self.rest.clone();
        while !rest.is_empty() {
            let field = rest.any()?;
            if field.tag == tag::CONTEXT_3 {
                return Ok(Some(Reader::new(field.content).nested(tag::SEQUENCE)?));
            }
        }
        Ok(None)
    }

    /// The Certificate's signatureAlgorithm and the signature's bits, the
    /// last two fields.
    pub(crate) fn signature_value(&self) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
        let mut after = self.after.clone();
        let alg = after.expect_tag(tag::SEQUENCE)?;
        let bits = bit_string_bytes(&after.expect_tag(tag::BIT_STRING)?)?;
        after.finish()?;
        Ok((alg, bits))
    }
}

/// Appends a header for an element of `len` content bytes.
pub(crate) fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8); // ok: < 0x80
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8); // ok: at most 8
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends a whole element.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    write_header(out, tag, content.len());
    out.extend_from_slice(content);
}

/// Appends an element whose content is written by `f`.
pub(crate) fn write_nested(out: &mut Vec<u8>, tag: u8, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::with_capacity(256);
    f(&mut inner);
    write_tlv(out, tag, &inner);
}

/// A UTC calendar time, for certificate validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CivilTime {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
}

impl CivilTime {
    /// The UTC time of a Unix timestamp (proleptic Gregorian; the
    /// days-to-civil algorithm of Howard Hinnant's date library).
    pub(crate) fn from_unix(t: i64) -> CivilTime {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400) as u32; // ok: 0..86400
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // ok: 1..=31
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // ok: 1..=12
        let year = yoe + era * 400 + i64::from(month <= 2);
        CivilTime {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    /// Appends the time as RFC 5280 wants it: UTCTime through 2049,
    /// GeneralizedTime from 2050 (years outside 0..=9999 are clamped, and
    /// never occur for validity periods of at most 825 days).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let year = self.year.clamp(0, 9999);
        let text = if (1950..2050).contains(&year) {
            format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}Z",
                year % 100,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second
            )
        } else {
            format!(
                "{:04}{:02}{:02}{:02}{:02}{:02}Z",
                year, self.month, self.day, self.hour, self.minute, self.second
            )
        };
        let tag = if text.len() == 13 {
            tag::UTC_TIME
        } else {
            tag::GENERALIZED_TIME
        };
        write_tlv(out, tag, text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_short_and_long_lengths() -> Result<(), DerError> {
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7, 0x80));
        let mut r = Reader::new(&long);
        let t = r.expect_tag(tag::OCTET_STRING)?;
        assert_eq!(t.content.len(), 0x80);
        assert_eq!(t.raw.len(), long.len());
        r.finish()?;
        let mut r = Reader::new(&[0x05, 0x00, 0x02, 0x01, 0x05]);
        assert_eq!(r.expect_tag(tag::NULL)?.content, b"");
        assert_eq!(r.expect_tag(tag::INTEGER)?.content, [5]);
        assert!(r.is_empty());
        Ok(())
    }

    #[test]
    fn refuses_ber_and_truncation() {
        for bad in [
            &[0x30, 0x80, 0x00, 0x00][..],      // indefinite
            &[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], // long form for a short length
            &[0x04, 0x82, 0x00, 0x80],          // leading zero length byte
            &[0x04, 0x85, 1, 1, 1, 1, 1],       // too many length bytes
            &[0x1f, 0x22, 0x00],                // high tag number
            &[0x04, 0x03, 1, 2],                // truncated content
            &[0x04],                            // truncated header
        ] {
            assert!(Reader::new(bad).any().is_err(), "{bad:02x?}");
        }
        let mut r = Reader::new(&[0x02, 0x01, 0x01]);
        assert_eq!(
            r.expect_tag(tag::SEQUENCE),
            Err(DerError::UnexpectedTag {
                expected: tag::SEQUENCE,
                found: tag::INTEGER
            })
        );
    }

    #[test]
    fn positive_integers_are_minimal() {
        let int = |c: &'static [u8]| Tlv {
            tag: tag::INTEGER,
            content: c,
            raw: c,
        };
        assert_eq!(positive_integer(&int(&[0x00, 0x80])), Ok(&[0x80][..]));
        assert_eq!(positive_integer(&int(&[0x7f, 0x00])), Ok(&[0x7f, 0x00][..]));
        assert!(positive_integer(&int(&[0x00, 0x7f])).is_err());
        assert!(positive_integer(&int(&[0x80])).is_err());
        assert!(positive_integer(&int(&[0x00])).is_err());
        assert!(positive_integer(&int(&[])).is_err());
    }

    #[test]
    fn rsa_public_keys_are_two_integers_and_nothing_else() {
        let key = |content: &[u8]| {
            let mut out = Vec::new();
            write_tlv(&mut out, tag::SEQUENCE, content);
            out
        };
        let good = key(&[0x02, 0x02, 0x00, 0xC1, 0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(
            rsa_public_key(&good),
            Ok(RsaPublicKey {
                n: &[0xC1],
                e: &[0x01, 0x00, 0x01]
            })
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(rsa_public_key(&trailing).is_err(), "bytes after the key");
        let extra = key(&[0x02, 0x01, 0x41, 0x02, 0x01, 0x03, 0x02, 0x01, 0x01]);
        assert!(rsa_public_key(&extra).is_err(), "a third integer");
        let negative = key(&[0x02, 0x01, 0xC1, 0x02, 0x01, 0x03]);
        assert!(rsa_public_key(&negative).is_err(), "a negative modulus");
        assert!(
            rsa_public_key(&key(&[0x02, 0x01, 0x41])).is_err(),
            "no exponent"
        );
        assert!(rsa_public_key(b"").is_err());
    }

    #[test]
    fn writes_lengths_as_der() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536] {
            let content = vec![0u8; len];
            let mut out = Vec::new();
            write_tlv(&mut out, tag::OCTET_STRING, &content);
            let mut r = Reader::new(&out);
            assert_eq!(r.any().map(|t| t.content.len()), Ok(len));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn civil_time_matches_known_dates() {
        let cases = [
            (0, "700101000000Z"),
            (951_782_400, "000229000000Z"),
            (1_700_000_000, "231114221320Z"),
            (2_524_607_999, "491231235959Z"),
            (2_524_608_000, "20500101000000Z"),
        ];
        for (t, text) in cases {
            let mut out = Vec::new();
            CivilTime::from_unix(t).write(&mut out);
            assert_eq!(&out[2..], text.as_bytes(), "{t}");
            let want = if text.len() == 13 {
                tag::UTC_TIME
            } else {
                tag::GENERALIZED_TIME
            };
            assert_eq!(out[0], want);
        }
    }

    #[test]
    fn oids_read_as_their_dotted_names() {
        for (content, dotted) in [
            (oid::COMMON_NAME, "2.5.4.3"),
            (oid::RSA_ENCRYPTION, "1.2.840.113549.1.1.1"),
            (oid::SHA256_WITH_RSA, "1.2.840.113549.1.1.11"),
            (oid::SHA384_WITH_RSA, "1.2.840.113549.1.1.12"),
            (oid::SHA512_WITH_RSA, "1.2.840.113549.1.1.13"),
            (oid::EC_PUBLIC_KEY, "1.2.840.10045.2.1"),
            (oid::PRIME256V1, "1.2.840.10045.3.1.7"),
            (oid::ECDSA_WITH_SHA256, "1.2.840.10045.4.3.2"),
            (oid::ECDSA_WITH_SHA384, "1.2.840.10045.4.3.3"),
            (oid::ECDSA_WITH_SHA512, "1.2.840.10045.4.3.4"),
            (oid::SUBJECT_KEY_IDENTIFIER, "2.5.29.14"),
            (oid::KEY_USAGE, "2.5.29.15"),
            (oid::BASIC_CONSTRAINTS, "2.5.29.19"),
            (oid::AUTHORITY_KEY_IDENTIFIER, "2.5.29.35"),
            (oid::EXT_KEY_USAGE, "2.5.29.37"),
            (oid::KP_CLIENT_AUTH, "1.3.6.1.5.5.7.3.2"),
        ] {
            assert_eq!(oid::text(content), dotted);
            // OpenSSL agrees on the bytes.
            let obj = openssl::asn1::Asn1Object::from_str(dotted).expect("ok: a valid OID");
            assert_eq!(obj.as_slice(), content, "{dotted}");
        }
    }

    proptest! {
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while let Ok(t) = r.any() {
                prop_assert!(t.raw.len() >= 2);
                let _ = Reader::new(t.content).any();
            }
        }
    }
}
