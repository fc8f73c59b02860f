//! The signed receipt of protocol version 2: what Blackboard signs once a
//! report is durable (a CMS SignedData whose content is a small JSON
//! object), and the student's check of one, in the session or later
//! (`client verify-receipt`). Anyone can check one with stock tools, as
//! [`openssl_verify_command`] writes it: `-purpose sslserver` and
//! `-verify_hostname` refuse a receipt a student signed with her own
//! certificate (same root, but clientAuth only and her SID as its name),
//! and `-attime` checks Blackboard's certificate when it signed, so a
//! receipt still verifies after that 7-day certificate has expired.

use std::fmt;

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509PurposeId, X509};
use serde::{Deserialize, Serialize};

use crate::der::{tag, DerError, Reader};
use crate::verify::{verify_blackboard, BlackboardCertError};

/// The `version` every receipt of this protocol carries.
pub const RECEIPT_VERSION: u32 = 2;

/// The receipt's content, as JSON (PROTOCOL.md §4.6): every field a
/// string but `version`.
///
/// Keys a later Blackboard adds are ignored: they are signed with the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptContent {
    /// The student's SID.
    pub sid: String,
    /// Her certificate's serial, upper-case hex.
    pub serial: String,
    /// The receipt id, in decimal.
    pub receipt: String,
    /// When Blackboard accepted the report, RFC 3339 UTC.
    pub received_at: String,
    /// Lower-case hex SHA-256 of the exact report text bytes.
    pub report_sha256: String,
    /// Lower-case hex SHA-256 of the exchange's transcript `T`: binds the
    /// receipt to the session she verified, so an old receipt for the same
    /// text cannot be replayed as the answer to a new submission.
    pub transcript_sha256: String,
    /// [`RECEIPT_VERSION`], or [`RECEIPT_VERSION_3`] for a file.
    pub version: u32,
    /// The assignment the report was handed in for (issue 20; absent from
    /// receipts made before assignments existed). A version 2 client that
    /// predates it ignores it: unknown keys are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// Whether it came after her due time (absent: made before
    /// assignments existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<bool>,
    /// How many seconds after her due time, when late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_seconds: Option<i64>,
    /// The index of the report's entry in the transparency log (PROTOCOL.md
    /// §11), when Blackboard's host holds the log key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// The C2SP tlog-proof of that entry against a signed checkpoint that
    /// already holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_proof: Option<String>,
    /// A version 3 receipt's file fields (absent in version 2's), flattened
    /// beside the others; the assignment and lateness are the top-level
    /// keys above, shared with version 2's receipts.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileReceipt>,
}

/// The `version` of a receipt for a file handed in by protocol version 3.
pub const RECEIPT_VERSION_3: u32 = 3;

/// What a version 3 receipt adds: the file handed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReceipt {
    /// The file's (sanitised) name.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of its bytes.
    pub file_sha256: String,
}

impl ReceiptContent {
    /// The JSON bytes that are signed.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and an integer always serialises.
        serde_json::to_vec(self).unwrap_or_default() // ok: cannot fail for this type
    }
}

/// Why a signed receipt is refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a CMS SignedData in DER, or no certificate in it.
    Malformed(String),
    /// No certificate in it is a Blackboard certificate from the root.
    Signer(BlackboardCertError),
    /// The CMS signature does not verify (altered content or signature, or
    /// signed by another key).
    Signature(ErrorStack),
    /// The content is not the receipt JSON.
    Content(String),
    /// A field differs from what was expected.
    Mismatch {
        /// The field.
        field: &'static str,
        /// What was expected.
        expected: String,
        /// What the receipt says.
        found: String,
    },
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptError::Malformed(why) => write!(f, "not a signed receipt: {why}"),
            ReceiptError::Signer(e) => write!(f, "receipt signer refused: {e}"),
            ReceiptError::Signature(e) => {
                write!(f, "the receipt's signature does not verify (altered?): {e}")
            }
            ReceiptError::Content(why) => write!(f, "the receipt's content is not valid: {why}"),
            ReceiptError::Mismatch {
                field,
                expected,
                found,
            } => write!(
                f,
                "the receipt's {field} is {found:?}, expected {expected:?}"
            ),
        }
    }
}

impl std::error::Error for ReceiptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReceiptError::Signer(e) => Some(e),
            ReceiptError::Signature(e) => Some(e),
            _ => None,
        }
    }
}

/// The certificates a CMS SignedData carries (`certificates [0] IMPLICIT
/// SET OF Certificate`), raw DER. rust-openssl has no accessor for them;
/// the candidates are checked by [`verify_blackboard`] before
/// `CMS_verify` is allowed to use any of them as the signer.
fn cms_certificates(der: &[u8]) -> Result<Vec<Vec<u8>>, DerError> {
    let mut ci = Reader::new(der).nested(tag::SEQUENCE)?;
    ci.expect_tag(tag::OID)?; // id-signedData
    let mut sd = ci.nested(tag::CONTEXT_0)?.nested(tag::SEQUENCE)?;
    sd.expect_tag(tag::INTEGER)?; // version
    sd.expect_tag(tag::SET)?; // digestAlgorithms
    sd.expect_tag(tag::SEQUENCE)?; // encapContentInfo
    let mut out = Vec::new();
    if sd.peek_tag() == Some(tag::CONTEXT_0) {
        let mut certs = sd.nested(tag::CONTEXT_0)?;
        while !certs.is_empty() {
            out.push(certs.any()?.raw.to_vec());
        }
    }
    Ok(out)
}

/// What a verified receipt says, and who signed it.
#[derive(Debug)]
pub struct VerifiedReceipt {
    /// The content, whose signature verified.
    pub content: ReceiptContent,
    /// The Blackboard certificate that signed it.
    pub signer: X509,
}

/// Verifies a signed receipt: its signer is a Blackboard certificate
/// (serverAuth) from `root`, with `name` in its subjectAltName when given,
/// valid when the receipt was made (its `received_at`); the CMS signature
/// over the content holds; the content is the receipt JSON of this
/// version. The caller compares the fields with what it expects.
pub fn verify_receipt(
    der: &[u8],
    root: &X509,
    name: Option<&str>,
) -> Result<VerifiedReceipt, ReceiptError> {
    let mut cms = CmsContentInfo::from_der(der)
        .map_err(|_| ReceiptError::Malformed("not CMS in DER".into()))?;
    let candidates = cms_certificates(der)
        .map_err(|e| ReceiptError::Malformed(format!("its certificates do not read: {e}")))?;
    if candidates.is_empty() {
        return Err(ReceiptError::Malformed(
            "no signer certificate in it".into(),
        ));
    }
    // The time the receipt claims: a signature by a real Blackboard
    // certificate makes the claim true; anything else fails below.
    let unverified = unverified_content(der)?;
    let at = crate::time::parse_rfc3339(&unverified.received_at)
        .ok()
        .ok_or_else(|| {
            ReceiptError::Content(format!(
                "received_at {:?} is not RFC 3339 UTC",
                unverified.received_at
            ))
        })?;
    let mut signers = Stack::new().map_err(ReceiptError::Signature)?;
    let mut signer = None;
    let mut last_err = None;
    for c in &candidates {
        match verify_blackboard(root, std::slice::from_ref(c), name, Some(at)) {
            Ok(cert) => {
                signers
                    .push(cert.clone())
                    .map_err(ReceiptError::Signature)?;
                signer.get_or_insert(cert);
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some(signer) = signer else {
        return Err(ReceiptError::Signer(
            last_err.unwrap_or(BlackboardCertError::Malformed),
        ));
    };
    // The signer's chain was checked above; CMS_verify checks it again
    // against the same root at the same time (any purpose: the EKU check
    // is ours), and that the signer is one of `signers` (NOINTERN).
    let mut store = X509StoreBuilder::new().map_err(ReceiptError::Signature)?;
    store
        .add_cert(root.clone())
        .map_err(ReceiptError::Signature)?;
    let mut param =
        openssl::x509::verify::X509VerifyParam::new().map_err(ReceiptError::Signature)?;
    param
        .set_purpose(X509PurposeId::ANY)
        .map_err(ReceiptError::Signature)?;
    param
        .set_flags(X509VerifyFlags::X509_STRICT)
        .map_err(ReceiptError::Signature)?;
    // time_t is i64 on this platform, not on every one.
    #[allow(clippy::useless_conversion)]
    let t = at
        .try_into()
        .map_err(|_| ReceiptError::Content(format!("received_at {at} is out of range")))?;
    param.set_time(t);
    store.set_param(&param).map_err(ReceiptError::Signature)?;
    let store = store.build();
    let mut content = Vec::new();
    cms.verify(
        Some(&signers),
        Some(&store),
        None,
        Some(&mut content),
        CMSOptions::NOINTERN | CMSOptions::BINARY,
    )
    .map_err(ReceiptError::Signature)?;
    let content = parse_content(&content)?;
    Ok(VerifiedReceipt { content, signer })
}

/// The content before its signature is checked, only to learn the time
/// to check the signer's validity at.
fn unverified_content(der: &[u8]) -> Result<ReceiptContent, ReceiptError> {
    let mut cms = CmsContentInfo::from_der(der)
        .map_err(|_| ReceiptError::Malformed("not CMS in DER".into()))?;
    let mut content = Vec::new();
    cms.verify(
        None,
        None,
        None,
        Some(&mut content),
        CMSOptions::NOVERIFY | CMSOptions::NOSIGS | CMSOptions::BINARY,
    )
    .map_err(|e| ReceiptError::Malformed(format!("no content: {e}")))?;
    parse_content(&content)
}

fn parse_content(json: &[u8]) -> Result<ReceiptContent, ReceiptError> {
    let c: ReceiptContent =
        serde_json::from_slice(json).map_err(|e| ReceiptError::Content(e.to_string()))?;
    let file_ok = match c.version {
        RECEIPT_VERSION => c.file.is_none(),
        RECEIPT_VERSION_3 => c.file.is_some(),
        _ => false,
    };
    if !file_ok {
        return Err(ReceiptError::Mismatch {
            field: "version",
            expected: RECEIPT_VERSION.to_string(),
            found: c.version.to_string(),
        });
    }
    Ok(c)
}

/// The stock OpenSSL command that checks the receipt in `file` for what it
/// is: a CMS signature by a certificate from the root in `ca_file` that is
/// a TLS server certificate (serverAuth; a student's is clientAuth only)
/// for `name` (Blackboard's; a student's carries her SID), valid at
/// `signed_at` (the receipt's `received_at` as Unix seconds: Blackboard's
/// certificate lives 7 days, a receipt much longer). The paths are quoted
/// for a POSIX shell.
pub fn openssl_verify_command(file: &str, ca_file: &str, name: &str, signed_at: i64) -> String {
    format!(
        "openssl cms -verify -inform DER -in {} -CAfile {} -purpose sslserver \
         -verify_hostname {} -x509_strict -attime {signed_at}",
        shell_quoted(file),
        shell_quoted(ca_file),
        shell_quoted(name)
    )
}

/// `s` as one POSIX shell word: as it is when it is plainly safe, else in
/// single quotes.
fn shell_quoted(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Compares one field.
pub fn expect_field(field: &'static str, found: &str, expected: &str) -> Result<(), ReceiptError> {
    if found == expected {
        Ok(())
    } else {
        Err(ReceiptError::Mismatch {
            field,
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openssl_command_pins_purpose_name_and_time() {
        let cmd = openssl_verify_command(
            "students/1/receipts/7.p7m",
            "keys/ca-cert.pem",
            "blackboard.invalid",
            1_796_047_200,
        );
        assert_eq!(
            cmd,
            "openssl cms -verify -inform DER -in students/1/receipts/7.p7m -CAfile \
             keys/ca-cert.pem -purpose sslserver -verify_hostname blackboard.invalid \
             -x509_strict -attime 1796047200"
        );
        let odd = openssl_verify_command("a b's.p7m", "ca.pem", "bb", 1);
        assert!(odd.contains("-in 'a b'\\''s.p7m' "), "{odd}");
    }
}
