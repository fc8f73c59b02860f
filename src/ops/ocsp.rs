//! The OCSP responder's core (RFC 6960, RFC 5019 profile), pure: request
//! bytes in, signed response bytes out. No sockets, no store: the caller
//! passes a lookup from serial to [`CertStatus`] and the current time.
//!
//! rust-openssl parses OCSP requests but cannot build or sign a basic
//! response, so, as for certificates in the CA, the ResponseData is written
//! with [`crate::der`] and OpenSSL only signs it.
//!
//! Answers, by what the request holds:
//!
//! - undecodable DER, an empty request list, a CertID hashed with an
//!   algorithm other than SHA-1 or SHA-256, an unknown *critical*
//!   extension: `malformedRequest` (1), unsigned;
//! - a CertID naming another issuer than ours: `unauthorized` (6),
//!   unsigned (RFC 5019 §2.2.3: the responder cannot answer
//!   authoritatively). Also when other CertIDs in the request are ours:
//!   OpenSSL refuses a CA-signed response whose CertIDs name several
//!   issuers (`ocsp_check_ids`: "root ca not trusted"), so answering the
//!   others "unknown" would make the whole answer unusable;
//! - otherwise `successful` with one SingleResponse per CertID: good,
//!   revoked (time and reason) or unknown;
//! - a signing failure: `internalError` (2).
//!
//! Why `malformedRequest` for an unsupported hash algorithm rather than
//! `unknown`: with a hash we cannot compute we cannot tell whether the
//! CertID names our issuer at all, and `unknown` is a signed statement
//! about a certificate of ours ("this responder does not know it").
//! RFC 6960 defines no status for it; Go's `x/crypto/ocsp` (behind cfssl's
//! and Boulder's responders) refuses such a request as malformed too, and an
//! unsigned error tells the client to retry with SHA-1 or SHA-256 rather
//! than cache an answer.
//!
//! The responder is the CA itself (responderID byKey; no certificates in the
//! response, RFC 5019 §2.2.1 keeps responses small): relying parties already
//! trust the CA's key, and there is no delegated key to guard or roll.

use std::fmt;

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::sign::Signer;
use openssl::x509::X509Ref;

use crate::ca::{RevocationReason, Serial};
use crate::der::{self, tag, DerError, Reader, Tlv};

/// Tags of the OCSP structures that [`crate::der::tag`] does not name.
mod ocsp_tag {
    /// BOOLEAN (an extension's `critical`).
    pub(super) const BOOLEAN: u8 = 0x01;
    /// `[1]` constructed: requestorName, responseExtensions, `revoked`.
    pub(super) const CONTEXT_1: u8 = 0xa1;
    /// `[2]` constructed: requestExtensions, responderID byKey.
    pub(super) const CONTEXT_2: u8 = 0xa2;
    /// `[0] IMPLICIT NULL`: CertStatus `good`.
    pub(super) const GOOD: u8 = 0x80;
    /// `[2] IMPLICIT NULL`: CertStatus `unknown`.
    pub(super) const UNKNOWN: u8 = 0x82;
}

/// Most CertIDs answered in one request. RFC 5019 clients send one; the
/// cap bounds the lookups and the signature's input a peer can ask for.
pub const MAX_CERT_IDS: usize = 16;

/// Longest nonce extension value echoed: an OCTET STRING of up to 32 octets
/// (RFC 8954 §2.1 allows a responder to leave longer ones out).
const MAX_NONCE_VALUE: usize = 34;

/// The hash algorithm of a CertID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1: what RFC 5019 clients and `openssl ocsp` send by default.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl HashAlgorithm {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha1 => openssl::sha::sha1(data).to_vec(),
            HashAlgorithm::Sha256 => openssl::sha::sha256(data).to_vec(),
        }
    }
}

/// One certificate asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    /// How the issuer's name and key were hashed.
    pub hash: HashAlgorithm,
    /// Hash of the DER of the issuer's distinguished name.
    pub issuer_name_hash: Vec<u8>,
    /// Hash of the issuer's public key bits (BIT STRING value).
    pub issuer_key_hash: Vec<u8>,
    /// The serial number: the INTEGER's content bytes, as in the
    /// certificate.
    pub serial: Vec<u8>,
    /// The CertID's whole DER, echoed in the SingleResponse exactly as sent.
    pub der: Vec<u8>,
}

impl CertId {
    /// The serial in the form the store keys certificates by ([`Serial`]'s,
    /// so a serial with a sign byte reads as the certificate's does).
    pub fn serial_hex(&self) -> String {
        Serial::from_der_integer(&self.serial).to_string()
    }
}

/// A decoded OCSPRequest: what the responder needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    /// The certificates asked about, in request order (1..=MAX_CERT_IDS).
    pub cert_ids: Vec<CertId>,
    /// The nonce extension's extnValue content, if the request has one.
    pub nonce: Option<Vec<u8>>,
}

/// What the caller knows of one serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked.
    Revoked {
        /// When, Unix seconds.
        at_unix: i64,
        /// Why, if a reason was recorded (written as its CRLReason code).
        reason: Option<RevocationReason>,
    },
    /// Never issued by this CA.
    Unknown,
}

/// OCSPResponseStatus (RFC 6960 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseStatus {
    /// 0: a signed answer follows.
    Successful,
    /// 1: the request is not a valid OCSP request (or asks what we refuse).
    MalformedRequest,
    /// 2: the responder failed (signing).
    InternalError,
    /// 3: the responder cannot answer now (its store did not answer); the
    /// client may retry.
    TryLater,
    /// 6: the request names no certificate this responder answers for.
    Unauthorized,
}

impl ResponseStatus {
    fn code(self) -> u8 {
        match self {
            ResponseStatus::Successful => 0,
            ResponseStatus::MalformedRequest => 1,
            ResponseStatus::InternalError => 2,
            ResponseStatus::TryLater => 3,
            ResponseStatus::Unauthorized => 6,
        }
    }
}

/// Why an OCSP request cannot be answered, or the responder not built.
#[derive(Debug)]
#[non_exhaustive]
pub enum OcspError {
    /// The request is not DER of the OCSPRequest shape.
    Der(DerError),
    /// A request version other than v1.
    UnsupportedVersion,
    /// The request list is empty.
    NoCertIds,
    /// More CertIDs than [`MAX_CERT_IDS`].
    TooManyCertIds(usize),
    /// A CertID hashed with an algorithm other than SHA-1 or SHA-256
    /// (hex of the OID's content).
    UnsupportedHash(String),
    /// A critical extension this responder does not know (hex of its OID).
    UnknownCriticalExtension(String),
    /// The GET form's path is not percent-encoded base64.
    BadGetEncoding,
    /// The responder's key is neither RSA nor EC.
    UnsupportedKey(Id),
    /// The issuer certificate's public key could not be read.
    BadIssuer(DerError),
    /// OpenSSL failed (hashing the issuer, signing).
    OpenSsl(ErrorStack),
}

impl fmt::Display for OcspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OcspError::Der(e) => write!(f, "malformed ocsp request: {e}"),
            OcspError::UnsupportedVersion => write!(f, "unsupported ocsp request version"),
            OcspError::NoCertIds => write!(f, "ocsp request asks about no certificate"),
            OcspError::TooManyCertIds(n) => write!(
                f,
                "ocsp request asks about {n} certificates (at most {MAX_CERT_IDS})"
            ),
            OcspError::UnsupportedHash(oid) => {
                write!(
                    f,
                    "unsupported certid hash algorithm (oid {oid}): use sha-1 or sha-256"
                )
            }
            OcspError::UnknownCriticalExtension(oid) => {
                write!(f, "unknown critical extension (oid {oid})")
            }
            OcspError::BadGetEncoding => {
                write!(f, "ocsp get path is not url-encoded base64")
            }
            OcspError::UnsupportedKey(id) => {
                write!(f, "ocsp signing key of type {id:?} (rsa or ec supported)")
            }
            OcspError::BadIssuer(e) => write!(f, "unreadable issuer public key: {e}"),
            OcspError::OpenSsl(e) => write!(f, "openssl: {e}"),
        }
    }
}

impl std::error::Error for OcspError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OcspError::Der(e) | OcspError::BadIssuer(e) => Some(e),
            OcspError::OpenSsl(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DerError> for OcspError {
    fn from(e: DerError) -> Self {
        OcspError::Der(e)
    }
}

impl From<ErrorStack> for OcspError {
    fn from(e: ErrorStack) -> Self {
        OcspError::OpenSsl(e)
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Decodes an OCSPRequest (RFC 6960 §4.1.1). A signature on the request is
/// skipped unread (RFC 5019 §2.1.2: responders may ignore it).
pub fn parse_request(der: &[u8]) -> Result<OcspRequest, OcspError> {
    let mut outer = Reader::new(der);
    let mut ocsp_request = outer.nested(tag::SEQUENCE)?;
    outer.finish()?;
    let mut tbs = ocsp_request.nested(tag::SEQUENCE)?;
    if ocsp_request.peek_tag() == Some(tag::CONTEXT_0) {
        ocsp_request.any()?; // optionalSignature
    }
    ocsp_request.finish()?;

    if tbs.peek_tag() == Some(tag::CONTEXT_0) {
        let mut version = tbs.nested(tag::CONTEXT_0)?;
        // v1 is the DEFAULT, so DER leaves it out; tolerate it written.
        if version.expect_tag(tag::INTEGER)?.content != [0] {
            return Err(OcspError::UnsupportedVersion);
        }
        version.finish()?;
    }
    if tbs.peek_tag() == Some(ocsp_tag::CONTEXT_1) {
        tbs.any()?; // requestorName
    }
    let mut list = tbs.nested(tag::SEQUENCE)?;
    let mut nonce = None;
    if tbs.peek_tag() == Some(ocsp_tag::CONTEXT_2) {
        let mut explicit = tbs.nested(ocsp_tag::CONTEXT_2)?;
        nonce = read_extensions(explicit.nested(tag::SEQUENCE)?)?;
        explicit.finish()?;
    }
    tbs.finish()?;

    let mut cert_ids = Vec::new();
    while !list.is_empty() {
        if cert_ids.len() == MAX_CERT_IDS {
            let mut count = cert_ids.len();
            while !list.is_empty() {
                list.any()?;
                count += 1;
            }
            return Err(OcspError::TooManyCertIds(count));
        }
        let mut request = list.nested(tag::SEQUENCE)?;
        let id = read_cert_id(request.expect_tag(tag::SEQUENCE)?)?;
        if request.peek_tag() == Some(tag::CONTEXT_0) {
            // singleRequestExtensions: none is understood per certificate
            // (a nonce here is not where RFC 6960 puts it).
            let mut explicit = request.nested(tag::CONTEXT_0)?;
            read_extensions(explicit.nested(tag::SEQUENCE)?)?;
            explicit.finish()?;
        }
        request.finish()?;
        cert_ids.push(id);
    }
    if cert_ids.is_empty() {
        return Err(OcspError::NoCertIds);
    }
    Ok(OcspRequest { cert_ids, nonce })
}

fn read_cert_id(t: Tlv<'_>) -> Result<CertId, OcspError> {
    let mut r = Reader::new(t.content);
    let (oid, params) = der::algorithm(&mut r)?;
    // Parameters NULL or absent, both seen in the wild for SHA-x.
    if params.is_some_and(|p| p.tag != tag::NULL || !p.content.is_empty()) {
        return Err(DerError::BadValue("hash algorithm parameters").into());
    }
    let hash = match oid {
        der::oid::SHA1 => HashAlgorithm::Sha1,
        der::oid::SHA256 => HashAlgorithm::Sha256,
        other => return Err(OcspError::UnsupportedHash(hex_upper(other))),
    };
    let issuer_name_hash = r.expect_tag(tag::OCTET_STRING)?.content.to_vec();
    let issuer_key_hash = r.expect_tag(tag::OCTET_STRING)?.content.to_vec();
    let serial = r.expect_tag(tag::INTEGER)?.content;
    match serial {
        [] => return Err(DerError::BadValue("serial number (empty)").into()),
        [0x00, next, ..] if next & 0x80 == 0 => {
            return Err(DerError::BadValue("serial number (not minimal)").into())
        }
        [0xff, next, ..] if next & 0x80 != 0 => {
            return Err(DerError::BadValue("serial number (not minimal)").into())
        }
        _ => {}
    }
    r.finish()?;
    Ok(CertId {
        hash,
        issuer_name_hash,
        issuer_key_hash,
        serial: serial.to_vec(),
        der: t.raw.to_vec(),
    })
}

/// Reads an Extensions SEQUENCE's content: the nonce's extnValue content
/// if there is one; an error for any unknown critical extension.
fn read_extensions(mut exts: Reader<'_>) -> Result<Option<Vec<u8>>, OcspError> {
    let mut nonce = None;
    while !exts.is_empty() {
        let mut ext = exts.nested(tag::SEQUENCE)?;
        let oid = ext.expect_tag(tag::OID)?.content;
        let critical = if ext.peek_tag() == Some(ocsp_tag::BOOLEAN) {
            match ext.any()?.content {
                [0xff] => true,
                // DER: FALSE is the DEFAULT and left out, but tolerate it.
                [0x00] => false,
                _ => return Err(DerError::BadValue("BOOLEAN").into()),
            }
        } else {
            false
        };
        let value = ext.expect_tag(tag::OCTET_STRING)?.content;
        ext.finish()?;
        if oid == der::oid::OCSP_NONCE {
            nonce = Some(value.to_vec());
        } else if critical {
            return Err(OcspError::UnknownCriticalExtension(hex_upper(oid)));
        }
    }
    Ok(nonce)
}

/// Decodes the GET form's last path segment (RFC 5019 §5: the URL-encoding
/// of the base64 of the request's DER) to the request's DER. `encoded` is
/// everything after `/ocsp/`; `+` is a literal plus in a path, and missing
/// `=` padding is tolerated.
pub fn decode_get_path(encoded: &str) -> Result<Vec<u8>, OcspError> {
    let bytes = encoded.as_bytes();
    let mut b64 = String::with_capacity(bytes.len() + 3);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let c = if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(OcspError::BadGetEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| OcspError::BadGetEncoding)?;
            i += 3;
            u8::from_str_radix(hex, 16).map_err(|_| OcspError::BadGetEncoding)?
        } else {
            i += 1;
            b
        };
        // Only the base64 alphabet: decode_block would skip whitespace and
        // the like, and a request should have one spelling.
        if !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) {
            return Err(OcspError::BadGetEncoding);
        }
        b64.push(char::from(c));
    }
    if b64.is_empty() {
        return Err(OcspError::BadGetEncoding);
    }
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    openssl::base64::decode_block(&b64).map_err(|_| OcspError::BadGetEncoding)
}

/// The most seconds an HTTP cache may keep an OCSP GET answer
/// (`Cache-Control: max-age`, RFC 5019 §6.2), whatever its `nextUpdate`:
/// a cache answering "good" after a revocation does so for at most this
/// long. RFC 5019 §6.2 lets max-age be shorter than nextUpdate; a relying
/// party holding the answer itself may still use it until nextUpdate.
pub const GET_MAX_AGE_SECS: i64 = 300;

/// How long answers are good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponderConfig {
    /// `nextUpdate` is this many seconds after now: how long a relying
    /// party (or an HTTP cache, RFC 5019 §6) may reuse an answer.
    pub validity_secs: i64,
    /// `thisUpdate` is this many seconds before now, for relying parties
    /// whose clocks run behind.
    pub backdate_secs: i64,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            validity_secs: 3600,
            backdate_secs: 60,
        }
    }
}

/// One answer: the OCSPResponse DER to send, and what it says, for the
/// HTTP layer (caching headers) and the metrics.
#[derive(Debug)]
pub struct OcspAnswer {
    /// The OCSPResponse, DER (`application/ocsp-response`).
    pub der: Vec<u8>,
    /// Its responseStatus.
    pub status: ResponseStatus,
    /// For a successful answer, each certificate's status in request order.
    pub cert_statuses: Vec<CertStatus>,
    /// For a successful answer, `nextUpdate` (Unix seconds).
    pub next_update: Option<i64>,
    /// Why the answer is not successful, when it is not.
    pub error: Option<OcspError>,
}

impl OcspAnswer {
    fn unsuccessful(status: ResponseStatus, error: Option<OcspError>) -> Self {
        let mut der = Vec::with_capacity(5);
        der::write_nested(&mut der, tag::SEQUENCE, |s| {
            der::write_tlv(s, tag::ENUMERATED, &[status.code()]);
        });
        OcspAnswer {
            der,
            status,
            cert_statuses: Vec::new(),
            next_update: None,
            error,
        }
    }

    /// The unsigned `tryLater` answer (RFC 6960 §4.2.1), for when the
    /// status of a certificate cannot be read now: never a signed guess.
    pub fn try_later() -> Self {
        OcspAnswer::unsuccessful(ResponseStatus::TryLater, None)
    }

    /// A short label for the metrics: the certificate status of a
    /// successful single answer (`good`, `revoked`, `unknown`; `mixed` for
    /// several differing), else the error status (`malformed`,
    /// `unauthorized`, `internal_error`).
    pub fn label(&self) -> &'static str {
        match self.status {
            ResponseStatus::Successful => {
                let label = |s: &CertStatus| match s {
                    CertStatus::Good => "good",
                    CertStatus::Revoked { .. } => "revoked",
                    CertStatus::Unknown => "unknown",
                };
                let mut labels = self.cert_statuses.iter().map(label);
                let first = labels.next().unwrap_or("unknown"); // ok: successful answers hold at least one
                if labels.all(|l| l == first) {
                    first
                } else {
                    "mixed"
                }
            }
            ResponseStatus::MalformedRequest => "malformed",
            ResponseStatus::Unauthorized => "unauthorized",
            ResponseStatus::InternalError => "internal_error",
            ResponseStatus::TryLater => "try_later",
        }
    }

    /// Seconds until this answer's `nextUpdate`; 0 for an error. An HTTP
    /// cache gets at most [`GET_MAX_AGE_SECS`] of it (see `ops`).
    pub fn max_age(&self, now_unix: i64) -> i64 {
        self.next_update.map_or(0, |n| (n - now_unix).max(0))
    }
}

/// What the responder knows of its issuer, worked out once.
struct IssuerHashes {
    name_sha1: Vec<u8>,
    key_sha1: Vec<u8>,
    name_sha256: Vec<u8>,
    key_sha256: Vec<u8>,
}

impl IssuerHashes {
    fn matches(&self, id: &CertId) -> bool {
        let (name, key) = match id.hash {
            HashAlgorithm::Sha1 => (&self.name_sha1, &self.key_sha1),
            HashAlgorithm::Sha256 => (&self.name_sha256, &self.key_sha256),
        };
        id.issuer_name_hash == *name && id.issuer_key_hash == *key
    }
}

/// The OCSP responder for one issuer, signing with the issuer's own key.
pub struct Responder {
    key: PKey<Private>,
    issuer: IssuerHashes,
    /// AlgorithmIdentifier of the response signature, DER.
    sig_alg_der: Vec<u8>,
    config: ResponderConfig,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("key_id", &hex_upper(&self.issuer.key_sha1))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder answering for certificates issued by `issuer`, signing
    /// with `key` (the issuer's private key: RSA or EC).
    pub fn new(
        issuer: &X509Ref,
        key: &PKeyRef<Private>,
        config: ResponderConfig,
    ) -> Result<Responder, OcspError> {
        let mut sig_alg_der = Vec::new();
        match key.id() {
            Id::RSA => der::write_nested(&mut sig_alg_der, tag::SEQUENCE, |a| {
                der::write_tlv(a, tag::OID, der::oid::SHA256_WITH_RSA);
                der::write_tlv(a, tag::NULL, &[]);
            }),
            Id::EC => der::write_nested(&mut sig_alg_der, tag::SEQUENCE, |a| {
                der::write_tlv(a, tag::OID, der::oid::ECDSA_WITH_SHA256);
            }),
            other => return Err(OcspError::UnsupportedKey(other)),
        }
        let name_der = issuer.subject_name().to_der()?;
        let spki = issuer.public_key()?.public_key_to_der()?;
        let key_bits = spki_key_bits(&spki).map_err(OcspError::BadIssuer)?;
        Ok(Responder {
            key: key.to_owned(),
            issuer: IssuerHashes {
                name_sha1: HashAlgorithm::Sha1.digest(&name_der),
                key_sha1: HashAlgorithm::Sha1.digest(key_bits),
                name_sha256: HashAlgorithm::Sha256.digest(&name_der),
                key_sha256: HashAlgorithm::Sha256.digest(key_bits),
            },
            sig_alg_der,
            config,
        })
    }

    /// Answers the OCSPRequest `request_der` at `now_unix`, asking `lookup`
    /// about each serial (the INTEGER content bytes, see
    /// [`CertId::serial_hex`]). Always yields a response to send; see the
    /// module documentation for which.
    pub fn respond(
        &self,
        request_der: &[u8],
        now_unix: i64,
        mut lookup: impl FnMut(&[u8]) -> CertStatus,
    ) -> OcspAnswer {
        match parse_request(request_der) {
            Ok(request) => self.respond_to(&request, now_unix, &mut lookup),
            Err(e) => OcspAnswer::unsuccessful(ResponseStatus::MalformedRequest, Some(e)),
        }
    }

    /// Answers an already decoded request (see [`Responder::respond`]).
    pub fn respond_to(
        &self,
        request: &OcspRequest,
        now_unix: i64,
        mut lookup: impl FnMut(&[u8]) -> CertStatus,
    ) -> OcspAnswer {
        if !request.cert_ids.iter().all(|id| self.issuer.matches(id)) {
            return OcspAnswer::unsuccessful(ResponseStatus::Unauthorized, None);
        }
        let statuses: Vec<CertStatus> = request
            .cert_ids
            .iter()
            .map(|id| lookup(&id.serial))
            .collect();
        let this_update = now_unix - self.config.backdate_secs;
        let next_update = now_unix + self.config.validity_secs;
        let tbs = self.response_data(request, &statuses, now_unix, this_update, next_update);
        match self.sign(&tbs) {
            Ok(der) => OcspAnswer {
                der,
                status: ResponseStatus::Successful,
                cert_statuses: statuses,
                next_update: Some(next_update),
                error: None,
            },
            Err(e) => OcspAnswer::unsuccessful(ResponseStatus::InternalError, Some(e.into())),
        }
    }

    /// ResponseData (RFC 6960 §4.2.1), DER.
    fn response_data(
        &self,
        request: &OcspRequest,
        statuses: &[CertStatus],
        produced_at: i64,
        this_update: i64,
        next_update: i64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        der::write_nested(&mut out, tag::SEQUENCE, |rd| {
            // version v1 is the DEFAULT: left out.
            der::write_nested(rd, ocsp_tag::CONTEXT_2, |by_key| {
                der::write_tlv(by_key, tag::OCTET_STRING, &self.issuer.key_sha1);
            });
            write_generalized_time(rd, produced_at);
            der::write_nested(rd, tag::SEQUENCE, |responses| {
                for (id, status) in request.cert_ids.iter().zip(statuses) {
                    write_single_response(responses, id, *status, this_update, next_update);
                }
            });
            if let Some(nonce) = request
                .nonce
                .as_deref()
                .filter(|n| n.len() <= MAX_NONCE_VALUE)
            {
                der::write_nested(rd, ocsp_tag::CONTEXT_1, |explicit| {
                    der::write_nested(explicit, tag::SEQUENCE, |exts| {
                        der::write_nested(exts, tag::SEQUENCE, |ext| {
                            der::write_tlv(ext, tag::OID, der::oid::OCSP_NONCE);
                            der::write_tlv(ext, tag::OCTET_STRING, nonce);
                        });
                    });
                });
            }
        });
        out
    }

    /// Signs ResponseData and wraps it: BasicOCSPResponse in ResponseBytes
    /// in a successful OCSPResponse.
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        let signature = signer.sign_oneshot_to_vec(tbs)?;
        let mut basic = Vec::with_capacity(tbs.len() + signature.len() + 32);
        der::write_nested(&mut basic, tag::SEQUENCE, |b| {
            b.extend_from_slice(tbs);
            b.extend_from_slice(&self.sig_alg_der);
            der::write_header(b, tag::BIT_STRING, signature.len() + 1);
            b.push(0);
            b.extend_from_slice(&signature);
        });
        let mut out = Vec::with_capacity(basic.len() + 32);
        der::write_nested(&mut out, tag::SEQUENCE, |r| {
            der::write_tlv(r, tag::ENUMERATED, &[ResponseStatus::Successful.code()]);
            der::write_nested(r, tag::CONTEXT_0, |explicit| {
                der::write_nested(explicit, tag::SEQUENCE, |bytes| {
                    der::write_tlv(bytes, tag::OID, der::oid::OCSP_BASIC);
                    der::write_tlv(bytes, tag::OCTET_STRING, &basic);
                });
            });
        });
        Ok(out)
    }
}

fn write_single_response(
    out: &mut Vec<u8>,
    id: &CertId,
    status: CertStatus,
    this_update: i64,
    next_update: i64,
) {
    der::write_nested(out, tag::SEQUENCE, |s| {
        s.extend_from_slice(&id.der);
        match status {
            CertStatus::Good => der::write_tlv(s, ocsp_tag::GOOD, &[]),
            CertStatus::Revoked { at_unix, reason } => {
                der::write_nested(s, ocsp_tag::CONTEXT_1, |revoked| {
                    write_generalized_time(revoked, at_unix);
                    if let Some(code) = reason
                        .map(RevocationReason::code)
                        .filter(|c| reason_is_written(*c))
                    {
                        der::write_nested(revoked, tag::CONTEXT_0, |explicit| {
                            der::write_tlv(explicit, tag::ENUMERATED, &[code]);
                        });
                    }
                });
            }
            CertStatus::Unknown => der::write_tlv(s, ocsp_tag::UNKNOWN, &[]),
        }
        write_generalized_time(s, this_update);
        der::write_nested(s, tag::CONTEXT_0, |explicit| {
            write_generalized_time(explicit, next_update);
        });
    });
}

/// Whether a CRLReason code goes into a response: the RFC 5280 §5.3.1
/// values, less `unspecified` (0), which "SHOULD be absent" instead, and
/// the unused 7.
fn reason_is_written(code: u8) -> bool {
    matches!(code, 1..=6 | 8..=10)
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ`, which OCSP uses for every time
/// whatever the year (unlike a certificate's validity).
fn write_generalized_time(out: &mut Vec<u8>, unix: i64) {
    let t = der::CivilTime::from_unix(unix);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year.clamp(0, 9999),
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second
    );
    der::write_tlv(out, tag::GENERALIZED_TIME, text.as_bytes());
}

/// The subjectPublicKey bits of a SubjectPublicKeyInfo: what a CertID's
/// issuerKeyHash and a byKey responderID hash (RFC 6960 §4.1.1).
fn spki_key_bits(spki: &[u8]) -> Result<&[u8], DerError> {
    let mut outer = Reader::new(spki);
    let mut seq = outer.nested(tag::SEQUENCE)?;
    outer.finish()?;
    der::algorithm(&mut seq)?;
    let bits = der::bit_string_bytes(&seq.expect_tag(tag::BIT_STRING)?)?;
    seq.finish()?;
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::ocsp::{
        OcspCertId, OcspCertStatus, OcspFlag, OcspRequest as OpensslRequest, OcspResponse,
        OcspResponseStatus, OcspRevokedStatus,
    };
    use openssl::rsa::Rsa;
    use openssl::stack::Stack;
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509Builder, X509NameBuilder, X509};

    const NOW: i64 = 1_700_000_000;
    const REVOKED_AT: i64 = 1_699_990_000;

    struct Pki {
        ca: X509,
        ca_key: PKey<Private>,
        leaf: X509,
    }

    fn ec_key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn rsa_key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn name(cn: &str) -> openssl::x509::X509Name {
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        n.build()
    }

    /// A throwaway CA with `ca_key` and one leaf it issued, serial `serial`.
    fn pki_with(ca_key: PKey<Private>, ca_cn: &str, serial: u32) -> Pki {
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let sn = Asn1Integer::from_bn(&BigNum::from_u32(1).unwrap()).unwrap();
        b.set_serial_number(&sn).unwrap();
        b.set_subject_name(&name(ca_cn)).unwrap();
        b.set_issuer_name(&name(ca_cn)).unwrap();
        b.set_pubkey(&ca_key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(NOW - 86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .digital_signature()
                .build()
                .unwrap(),
        )
        .unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = b.build();

        let leaf_key = ec_key();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let sn = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
        b.set_serial_number(&sn).unwrap();
        b.set_subject_name(&name("1155000001")).unwrap();
        b.set_issuer_name(ca.subject_name()).unwrap();
        b.set_pubkey(&leaf_key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(NOW - 3600).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        b.sign(&ca_key, MessageDigest::sha256()).unwrap();
        Pki {
            ca,
            ca_key,
            leaf: b.build(),
        }
    }

    fn pki() -> Pki {
        pki_with(ec_key(), "certboard test CA", 0x4242)
    }

    fn responder(p: &Pki) -> Responder {
        Responder::new(&p.ca, &p.ca_key, ResponderConfig::default()).unwrap()
    }

    fn cert_id(p: &Pki, digest: MessageDigest) -> OcspCertId {
        OcspCertId::from_cert(digest, &p.leaf, &p.ca).unwrap()
    }

    fn request_for(p: &Pki, digest: MessageDigest) -> Vec<u8> {
        let mut req = OpensslRequest::new().unwrap();
        req.add_id(cert_id(p, digest)).unwrap();
        req.to_der().unwrap()
    }

    /// The lookup of a store holding the leaf (serial 0x4242) as `status`.
    fn only_leaf(status: CertStatus) -> impl Fn(&[u8]) -> CertStatus {
        move |serial: &[u8]| {
            if serial == [0x42, 0x42] {
                status
            } else {
                CertStatus::Unknown
            }
        }
    }

    /// Parses `der` with OpenSSL, checks it is successful and its signature
    /// verifies against a store holding only the CA, and returns the basic
    /// response.
    fn verified(p: &Pki, der: &[u8]) -> openssl::ocsp::OcspBasicResponse {
        let resp = OcspResponse::from_der(der).unwrap();
        assert_eq!(resp.status(), OcspResponseStatus::SUCCESSFUL);
        let basic = resp.basic().unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(p.ca.clone()).unwrap();
        let store = store.build();
        let mut certs = Stack::new().unwrap();
        certs.push(p.ca.clone()).unwrap();
        basic
            .verify(&certs, &store, OcspFlag::empty())
            .expect("OpenSSL verifies the response");
        basic
    }

    fn status_of(p: &Pki, answer: &OcspAnswer, digest: MessageDigest) -> (OcspCertStatus, i32) {
        let basic = verified(p, &answer.der);
        let id = cert_id(p, digest);
        let st = basic
            .find_status(&id)
            .expect("a SingleResponse for the CertID");
        // thisUpdate and nextUpdate are relative to NOW, not the real
        // clock (the CLI test checks them against it).
        let this = st.this_update.to_string();
        assert_eq!(this, Asn1Time::from_unix(NOW - 60).unwrap().to_string());
        let next = st.next_update().expect("nextUpdate").to_string();
        assert_eq!(next, Asn1Time::from_unix(NOW + 3600).unwrap().to_string());
        (st.status, st.reason.as_raw())
    }

    #[test]
    fn answers_good() {
        let p = pki();
        let a = responder(&p).respond(
            &request_for(&p, MessageDigest::sha1()),
            NOW,
            only_leaf(CertStatus::Good),
        );
        assert_eq!(a.status, ResponseStatus::Successful);
        assert_eq!(a.label(), "good");
        let (status, _) = status_of(&p, &a, MessageDigest::sha1());
        assert_eq!(status, OcspCertStatus::GOOD);
        assert_eq!(a.max_age(NOW), 3600);
    }

    #[test]
    fn answers_revoked_with_time_and_reason() {
        let p = pki();
        let revoked = CertStatus::Revoked {
            at_unix: REVOKED_AT,
            reason: Some(RevocationReason::KeyCompromise),
        };
        let a = responder(&p).respond(
            &request_for(&p, MessageDigest::sha1()),
            NOW,
            only_leaf(revoked),
        );
        let basic = verified(&p, &a.der);
        let st = basic
            .find_status(&cert_id(&p, MessageDigest::sha1()))
            .unwrap();
        assert_eq!(st.status, OcspCertStatus::REVOKED);
        assert_eq!(st.reason, OcspRevokedStatus::KEY_COMPROMISE);
        let at = st.revocation_time.unwrap().to_string();
        assert_eq!(at, Asn1Time::from_unix(REVOKED_AT).unwrap().to_string());
        assert_eq!(a.label(), "revoked");
    }

    #[test]
    fn unspecified_reason_is_left_out() {
        let p = pki();
        let revoked = CertStatus::Revoked {
            at_unix: REVOKED_AT,
            reason: Some(RevocationReason::Unspecified),
        };
        let a = responder(&p).respond(
            &request_for(&p, MessageDigest::sha1()),
            NOW,
            only_leaf(revoked),
        );
        let (status, reason) = status_of(&p, &a, MessageDigest::sha1());
        assert_eq!(status, OcspCertStatus::REVOKED);
        assert_eq!(reason, OcspRevokedStatus::NO_STATUS.as_raw());
    }

    #[test]
    fn answers_unknown_serial() {
        let p = pki_with(ec_key(), "certboard test CA", 0x77);
        let a = responder(&p).respond(
            &request_for(&p, MessageDigest::sha1()),
            NOW,
            only_leaf(CertStatus::Good),
        );
        let (status, _) = status_of(&p, &a, MessageDigest::sha1());
        assert_eq!(status, OcspCertStatus::UNKNOWN);
        assert_eq!(a.label(), "unknown");
    }

    #[test]
    fn answers_sha256_cert_ids_and_rsa_issuers() {
        let p = pki_with(rsa_key(), "certboard RSA CA", 0x4242);
        let a = responder(&p).respond(
            &request_for(&p, MessageDigest::sha256()),
            NOW,
            only_leaf(CertStatus::Good),
        );
        let (status, _) = status_of(&p, &a, MessageDigest::sha256());
        assert_eq!(status, OcspCertStatus::GOOD);
    }

    #[test]
    fn refuses_other_issuers_as_unauthorized() {
        let ours = pki();
        let theirs = pki_with(ec_key(), "another CA", 0x4242);
        let a = responder(&ours).respond(
            &request_for(&theirs, MessageDigest::sha1()),
            NOW,
            only_leaf(CertStatus::Good),
        );
        assert_eq!(a.status, ResponseStatus::Unauthorized);
        assert_eq!(a.label(), "unauthorized");
        let resp = OcspResponse::from_der(&a.der).unwrap();
        assert_eq!(resp.status(), OcspResponseStatus::UNAUTHORIZED);
        // Same name, other key: still not ours.
        let same_name = pki_with(ec_key(), "certboard test CA", 0x4242);
        let a = responder(&ours).respond(
            &request_for(&same_name, MessageDigest::sha1()),
            NOW,
            only_leaf(CertStatus::Good),
        );
        assert_eq!(a.status, ResponseStatus::Unauthorized);
    }

    #[test]
    fn refuses_foreign_cert_ids_beside_ours() {
        let ours = pki();
        let theirs = pki_with(ec_key(), "another CA", 0x4242);
        let mut req = OpensslRequest::new().unwrap();
        req.add_id(cert_id(&ours, MessageDigest::sha1())).unwrap();
        req.add_id(cert_id(&theirs, MessageDigest::sha1())).unwrap();
        let a = responder(&ours).respond(&req.to_der().unwrap(), NOW, only_leaf(CertStatus::Good));
        assert_eq!(a.status, ResponseStatus::Unauthorized);
    }

    #[test]
    fn answers_several_cert_ids_in_order() {
        let p = pki();
        let other_leaf = pki_with(ec_key(), "unrelated", 0x99).leaf;
        let mut req = OpensslRequest::new().unwrap();
        req.add_id(cert_id(&p, MessageDigest::sha1())).unwrap();
        // Same issuer, serial 0x99: not in the store.
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_serial_number(other_leaf.serial_number()).unwrap();
        b.set_subject_name(other_leaf.subject_name()).unwrap();
        b.set_issuer_name(p.ca.subject_name()).unwrap();
        b.set_pubkey(&other_leaf.public_key().unwrap()).unwrap();
        b.sign(&p.ca_key, MessageDigest::sha256()).unwrap();
        let second = b.build();
        let second_id = OcspCertId::from_cert(MessageDigest::sha1(), &second, &p.ca).unwrap();
        req.add_id(OcspCertId::from_cert(MessageDigest::sha1(), &second, &p.ca).unwrap())
            .unwrap();
        let a = responder(&p).respond(&req.to_der().unwrap(), NOW, only_leaf(CertStatus::Good));
        assert_eq!(a.cert_statuses, [CertStatus::Good, CertStatus::Unknown]);
        assert_eq!(a.label(), "mixed");
        let basic = verified(&p, &a.der);
        assert_eq!(
            basic.find_status(&second_id).unwrap().status,
            OcspCertStatus::UNKNOWN
        );
    }

    #[test]
    fn refuses_malformed_requests() {
        let p = pki();
        let r = responder(&p);
        let good = request_for(&p, MessageDigest::sha1());
        let mut trailing = good.clone();
        trailing.push(0);
        for bad in [
            &b""[..],
            b"\x30\x00",
            b"garbage",
            &good[..good.len() - 1],
            &trailing,
            b"\x30\x06\x30\x04\x30\x00\x30\x00", // empty request list, then junk
            b"\x30\x04\x30\x02\x30\x00",         // empty request list
        ] {
            let a = r.respond(bad, NOW, only_leaf(CertStatus::Good));
            assert_eq!(a.status, ResponseStatus::MalformedRequest, "{bad:02x?}");
            assert_eq!(a.der, [0x30, 0x03, 0x0a, 0x01, 0x01]);
            assert_eq!(
                OcspResponse::from_der(&a.der).unwrap().status(),
                OcspResponseStatus::MALFORMED_REQUEST
            );
            assert_eq!(a.label(), "malformed");
        }
    }

    #[test]
    fn refuses_unsupported_hash_as_malformed() {
        let p = pki();
        let der = request_for(&p, MessageDigest::sha384());
        assert!(matches!(
            parse_request(&der),
            Err(OcspError::UnsupportedHash(_))
        ));
        let a = responder(&p).respond(&der, NOW, only_leaf(CertStatus::Good));
        assert_eq!(a.status, ResponseStatus::MalformedRequest);
    }

    /// An OCSPRequest for `id` with a nonce extension, built by hand as
    /// OpenSSL's `OCSP_request_add1_nonce` does (extnValue = OCTET STRING
    /// of the nonce), optionally marked critical, plus any extra extension.
    fn request_with_nonce(id_der: &[u8], nonce: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        der::write_nested(&mut out, tag::SEQUENCE, |req| {
            der::write_nested(req, tag::SEQUENCE, |tbs| {
                der::write_nested(tbs, tag::SEQUENCE, |list| {
                    der::write_nested(list, tag::SEQUENCE, |one| {
                        one.extend_from_slice(id_der);
                    });
                });
                der::write_nested(tbs, ocsp_tag::CONTEXT_2, |explicit| {
                    der::write_nested(explicit, tag::SEQUENCE, |exts| {
                        der::write_nested(exts, tag::SEQUENCE, |ext| {
                            der::write_tlv(ext, tag::OID, der::oid::OCSP_NONCE);
                            der::write_nested(ext, tag::OCTET_STRING, |v| {
                                der::write_tlv(v, tag::OCTET_STRING, nonce);
                            });
                        });
                        exts.extend_from_slice(extra);
                    });
                });
            });
        });
        out
    }

    fn our_cert_id_der(p: &Pki) -> Vec<u8> {
        parse_request(&request_for(p, MessageDigest::sha1()))
            .unwrap()
            .cert_ids
            .remove(0)
            .der
    }

    /// The responseExtensions of a successful response, read back by hand
    /// (rust-openssl has no nonce accessor): (OID, extnValue) pairs.
    fn response_extensions(der: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut r = Reader::new(der);
        let mut resp = r.nested(tag::SEQUENCE).unwrap();
        resp.expect_tag(tag::ENUMERATED).unwrap();
        let mut bytes = resp.nested(tag::CONTEXT_0).unwrap();
        let mut bytes = bytes.nested(tag::SEQUENCE).unwrap();
        bytes.expect_tag(tag::OID).unwrap();
        let basic = bytes.expect_tag(tag::OCTET_STRING).unwrap().content;
        let mut basic = Reader::new(basic);
        let mut basic = basic.nested(tag::SEQUENCE).unwrap();
        let mut rd = basic.nested(tag::SEQUENCE).unwrap();
        rd.expect_tag(ocsp_tag::CONTEXT_2).unwrap();
        rd.expect_tag(tag::GENERALIZED_TIME).unwrap();
        rd.expect_tag(tag::SEQUENCE).unwrap();
        let mut found = Vec::new();
        if rd.peek_tag() == Some(ocsp_tag::CONTEXT_1) {
            let mut exts = rd.nested(ocsp_tag::CONTEXT_1).unwrap();
            let mut exts = exts.nested(tag::SEQUENCE).unwrap();
            while !exts.is_empty() {
                let mut ext = exts.nested(tag::SEQUENCE).unwrap();
                let oid = ext.expect_tag(tag::OID).unwrap().content.to_vec();
                let value = ext.expect_tag(tag::OCTET_STRING).unwrap().content.to_vec();
                found.push((oid, value));
            }
        }
        rd.finish().unwrap();
        found
    }

    #[test]
    fn echoes_the_nonce() {
        let p = pki();
        let nonce = [0x5a; 16];
        let der = request_with_nonce(&our_cert_id_der(&p), &nonce, &[]);
        let req = parse_request(&der).unwrap();
        let mut wrapped = vec![tag::OCTET_STRING, 16];
        wrapped.extend_from_slice(&nonce);
        assert_eq!(req.nonce.as_deref(), Some(&wrapped[..]));
        let a = responder(&p).respond(&der, NOW, only_leaf(CertStatus::Good));
        let (status, _) = status_of(&p, &a, MessageDigest::sha1());
        assert_eq!(status, OcspCertStatus::GOOD);
        assert_eq!(
            response_extensions(&a.der),
            [(der::oid::OCSP_NONCE.to_vec(), wrapped)]
        );
        // No nonce asked, none given.
        let a = responder(&p).respond(
            &request_for(&p, MessageDigest::sha1()),
            NOW,
            only_leaf(CertStatus::Good),
        );
        assert!(response_extensions(&a.der).is_empty());
        // An over-long nonce is left out (RFC 8954 §2.1), the answer given.
        let der = request_with_nonce(&our_cert_id_der(&p), &[1; 64], &[]);
        let a = responder(&p).respond(&der, NOW, only_leaf(CertStatus::Good));
        assert_eq!(a.status, ResponseStatus::Successful);
        assert!(response_extensions(&a.der).is_empty());
    }

    #[test]
    fn unknown_critical_extensions_are_refused_others_ignored() {
        let p = pki();
        let id = our_cert_id_der(&p);
        // 1.2.3.4, critical TRUE, value 05 00.
        let critical = [
            0x30, 0x0c, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x01, 0x01, 0xff, 0x04, 0x02, 0x05, 0x00,
        ];
        let der = request_with_nonce(&id, &[1; 16], &critical);
        assert!(matches!(
            parse_request(&der),
            Err(OcspError::UnknownCriticalExtension(_))
        ));
        let plain = [
            0x30, 0x09, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x02, 0x05, 0x00,
        ];
        let der = request_with_nonce(&id, &[1; 16], &plain);
        assert!(parse_request(&der).unwrap().nonce.is_some());
    }

    #[test]
    fn refuses_too_many_cert_ids() {
        let p = pki();
        let mut req = OpensslRequest::new().unwrap();
        for _ in 0..=MAX_CERT_IDS {
            req.add_id(cert_id(&p, MessageDigest::sha1())).unwrap();
        }
        assert!(matches!(
            parse_request(&req.to_der().unwrap()),
            Err(OcspError::TooManyCertIds(n)) if n == MAX_CERT_IDS + 1
        ));
    }

    #[test]
    fn parses_cert_id_fields() {
        let p = pki();
        let req = parse_request(&request_for(&p, MessageDigest::sha1())).unwrap();
        let id = &req.cert_ids[0];
        assert_eq!(id.hash, HashAlgorithm::Sha1);
        assert_eq!(id.serial, [0x42, 0x42]);
        assert_eq!(id.serial_hex(), "4242");
        // A sign byte is not part of the serial the store knows.
        let high = CertId {
            serial: vec![0x00, 0xC1],
            ..id.clone()
        };
        assert_eq!(high.serial_hex(), "C1");
        let name = p.ca.subject_name().to_der().unwrap();
        assert_eq!(id.issuer_name_hash, openssl::sha::sha1(&name));
        assert_eq!(id.issuer_key_hash.len(), 20);
        assert_eq!(req.nonce, None);
    }

    #[test]
    fn decodes_the_get_form() {
        let p = pki();
        let der = request_for(&p, MessageDigest::sha1());
        let b64 = openssl::base64::encode_block(&der);
        let url: String = b64
            .chars()
            .map(|c| match c {
                '+' => "%2B".to_owned(),
                '/' => "%2F".to_owned(),
                '=' => "%3D".to_owned(),
                c => c.to_string(),
            })
            .collect();
        assert_eq!(decode_get_path(&url).unwrap(), der);
        assert_eq!(decode_get_path(&b64).unwrap(), der, "unescaped works too");
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(decode_get_path(unpadded).unwrap(), der);
        let lower_escapes = url.replace("%2B", "%2b").replace("%2F", "%2f");
        assert_eq!(decode_get_path(&lower_escapes).unwrap(), der);
        for bad in ["", "%", "%4", "%zz", "MEow IA", "ME%0Aow", "é", "%FF%FF"] {
            assert!(
                matches!(decode_get_path(bad), Err(OcspError::BadGetEncoding)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generalized_time_is_used_for_every_year() {
        let mut out = Vec::new();
        write_generalized_time(&mut out, NOW);
        assert_eq!(out[0], tag::GENERALIZED_TIME);
        assert_eq!(&out[2..], b"20231114221320Z");
    }

    #[test]
    fn openssl_cli_accepts_the_response() {
        use std::process::Command;
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("skipped: no openssl on PATH");
            return;
        }
        let p = pki();
        let dir = tempfile::tempdir().unwrap();
        let path = |f: &str| dir.path().join(f);
        std::fs::write(path("ca.pem"), p.ca.to_pem().unwrap()).unwrap();
        std::fs::write(path("leaf.pem"), p.leaf.to_pem().unwrap()).unwrap();
        let now = openssl_now();
        let revoked = CertStatus::Revoked {
            at_unix: now - 100,
            reason: Some(RevocationReason::KeyCompromise),
        };
        let nonce = [0x11; 16];
        let der = request_with_nonce(&our_cert_id_der(&p), &nonce, &[]);
        std::fs::write(path("req.der"), &der).unwrap();
        let a = responder(&p).respond(&der, now, only_leaf(revoked));
        std::fs::write(path("resp.der"), &a.der).unwrap();
        let ocsp = |args: &[&str]| {
            let out = Command::new("openssl")
                .arg("ocsp")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            let all = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{all}");
            assert!(all.contains("Response verify OK"), "{all}");
            assert!(!all.contains("error"), "{all}");
            assert!(!all.contains("WARNING"), "{all}");
            all
        };
        // With the request that carried the nonce: the nonce is checked.
        let text = ocsp(&[
            "-respin",
            "resp.der",
            "-reqin",
            "req.der",
            "-CAfile",
            "ca.pem",
            "-issuer",
            "ca.pem",
            "-resp_text",
        ]);
        assert!(text.contains("Cert Status: revoked"), "{text}");
        assert!(text.contains("Revocation Reason: keyCompromise"), "{text}");
        assert!(text.contains("OCSP Nonce"), "{text}");
        // As a client checking one certificate: the status line.
        let text = ocsp(&[
            "-respin",
            "resp.der",
            "-no_nonce",
            "-CAfile",
            "ca.pem",
            "-issuer",
            "ca.pem",
            "-cert",
            "leaf.pem",
        ]);
        assert!(text.contains("leaf.pem: revoked"), "{text}");
        assert!(text.contains("Reason: keyCompromise"), "{text}");
    }

    /// The real clock, for the CLI check, which compares thisUpdate and
    /// nextUpdate with it.
    fn openssl_now() -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        i64::try_from(d.as_secs()).unwrap()
    }
}
