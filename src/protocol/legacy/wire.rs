//! The original lab client's wire, as docs/legacy.md describes it: its
//! commands and texts, the SID and certificate-text frames, the
//! `<msg>_<mac>` report frame, and its crypto (the session key, RC4-wrapped
//! under the SID, and the HMAC-SHA1 over the SID). Pure functions of bytes;
//! the session that uses them is the parent, `legacy`.

use std::fmt;

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::x509::X509;

use crate::crypto;
use crate::rc4::{BadKeyLength, Rc4};
use crate::sid::{self, SidError};

/// The CA's prompt after command `1` (the original's text; the client
/// reads and discards it).
pub const PROMPT: &str = "please input your student_id";
/// Blackboard's answer to a report whose MAC verifies (sic: the original
/// client expects this spelling).
pub const REPORT_ACCEPTED: &str = "massage sent!";
/// Blackboard's answer to a report whose MAC does not verify.
pub const MAC_FAILED: &str = "mac verification failed!";
/// Length of the session key handed to a legacy client, in characters.
pub const SESSION_KEY_CHARS: usize = 32;
/// Length of the hex HMAC-SHA1 at the end of a `<msg>_<mac>` frame.
pub const MAC_HEX_LEN: usize = 40;
/// Largest certificate text accepted from a legacy client, in bytes,
/// checked before it is parsed (ours are about 1.2 KB): room for the PEM of
/// a certificate of `MAX_CERT_DER` (8 KiB), the most Blackboard parses.
pub const MAX_CERT_TEXT: usize = 12 * 1024;

/// The alphabet of session keys: letters and digits, so that the key is
/// printable ASCII and survives every layer of the original client as is.
const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Whether a first frame is one of the original client's commands.
pub fn is_command(payload: &[u8]) -> bool {
    matches!(payload, b"1" | b"2" | b"q" | b"Q")
}

/// An error frame as the original client reads it: one UTF-8 text line.
pub fn error_text(reason: &str) -> Vec<u8> {
    format!("error: {reason}").into_bytes()
}

/// Why a SID frame is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SidFrameError {
    /// The frame is not UTF-8.
    NotUtf8,
    /// The text is not a valid SID.
    BadSid(SidError),
}

impl fmt::Display for SidFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SidFrameError::NotUtf8 => write!(f, "the student id is not UTF-8 text"),
            SidFrameError::BadSid(e) => write!(f, "bad student id: {e}"),
        }
    }
}

impl std::error::Error for SidFrameError {}

/// A SID frame: UTF-8 text that is a valid SID.
pub(super) fn parse_sid(payload: &[u8]) -> Result<String, SidFrameError> {
    let text = std::str::from_utf8(payload).map_err(|_| SidFrameError::NotUtf8)?;
    sid::validate(text)
        .map(str::to_string)
        .map_err(SidFrameError::BadSid)
}

/// Why a frame is not one PEM certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertTextError {
    /// Over [`MAX_CERT_TEXT`] bytes (how many).
    TooLong(usize),
    /// Not UTF-8.
    NotUtf8,
    /// Not exactly one PEM certificate block.
    NotOnePem,
    /// The PEM block does not decode to a certificate.
    NotACertificate,
}

impl fmt::Display for CertTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertTextError::TooLong(n) => write!(
                f,
                "the certificate text is {n} bytes; at most {MAX_CERT_TEXT} are accepted"
            ),
            CertTextError::NotUtf8 => write!(f, "the certificate text is not UTF-8"),
            CertTextError::NotOnePem => {
                write!(f, "the certificate text is not exactly one PEM certificate")
            }
            CertTextError::NotACertificate => {
                write!(f, "the certificate PEM does not decode to a certificate")
            }
        }
    }
}

impl std::error::Error for CertTextError {}

/// The DER of the one PEM certificate in `payload`, which must hold nothing
/// else but surrounding whitespace.
pub fn parse_cert_text(payload: &[u8]) -> Result<Vec<u8>, CertTextError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if payload.len() > MAX_CERT_TEXT {
        return Err(CertTextError::TooLong(payload.len()));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| CertTextError::NotUtf8)?
        .trim();
    if !text.starts_with(BEGIN) || !text.ends_with(END) || text.matches("-----BEGIN").count() != 1 {
        return Err(CertTextError::NotOnePem);
    }
    // OpenSSL's PEM reader wants LF line ends; a copy saved with CRLF is
    // the same certificate.
    X509::from_pem(text.replace("\r\n", "\n").as_bytes())
        .and_then(|c| c.to_der())
        .map_err(|_| CertTextError::NotACertificate)
}

/// A fresh session key: [`SESSION_KEY_CHARS`] letters and digits from
/// OpenSSL's CSPRNG, drawn without modulo bias.
pub fn new_session_key() -> Result<String, ErrorStack> {
    // 248 = 4 × 62: bytes below it map uniformly onto the alphabet.
    const LIMIT: u8 = 248;
    let mut key = String::with_capacity(SESSION_KEY_CHARS);
    while key.len() < SESSION_KEY_CHARS {
        let bytes = crypto::random::<64>()?;
        for b in bytes.into_iter().filter(|b| *b < LIMIT) {
            if key.len() == SESSION_KEY_CHARS {
                break;
            }
            if let Some(c) = KEY_ALPHABET.get(usize::from(b) % KEY_ALPHABET.len()) {
                key.push(char::from(*c));
            }
        }
    }
    Ok(key)
}

/// The session key as the original client expects it: RC4 keyed with the
/// SID twice, each output byte taken as a Latin-1 character, that string
/// UTF-8 encoded, then standard base64.
///
/// The original RC4 works on Python characters, keyed by code points mod
/// 256; for the ASCII SIDs and keys used here that is byte-wise RC4.
pub fn wrap_session_key(sid: &str, session_key: &str) -> Result<String, BadKeyLength> {
    let rc4_key = format!("{sid}{sid}");
    let mut bytes = session_key.as_bytes().to_vec();
    Rc4::new(rc4_key.as_bytes())?.apply(&mut bytes);
    // Latin-1 decode: byte b becomes U+00b, which UTF-8 writes as one byte
    // below 0x80 and two (C2/C3 xx) above.
    let latin1: String = bytes.into_iter().map(char::from).collect();
    Ok(openssl::base64::encode_block(latin1.as_bytes()))
}

/// HMAC-SHA1(key = session key, data = SID), as 40 lower-case hex digits:
/// the original client's MAC (it covers only the SID).
pub fn mac_hex(session_key: &str, sid: &str) -> Result<String, ErrorStack> {
    let key = PKey::hmac(session_key.as_bytes())?;
    let mut s = Signer::new(MessageDigest::sha1(), &key)?;
    s.update(sid.as_bytes())?;
    let mac = s.sign_to_vec()?;
    Ok(mac.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a report frame is not `<msg>_<mac>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsgMacError {
    /// There is no `_` at all.
    NoSeparator,
    /// The text after the last `_` is not 40 lower-case hex digits.
    BadMac {
        /// How long that text is, in bytes.
        len: usize,
    },
}

impl fmt::Display for MsgMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgMacError::NoSeparator => write!(
                f,
                "expected <message>_<mac> but the frame has no '_' separator"
            ),
            MsgMacError::BadMac { len } => write!(
                f,
                "expected <message>_<mac> with the MAC as {MAC_HEX_LEN} lower-case hex digits \
                 after the last '_', found {len} bytes that are not"
            ),
        }
    }
}

impl std::error::Error for MsgMacError {}

/// Splits a report frame into the message and the MAC. The MAC is the text
/// after the LAST `_` and must be exactly 40 lower-case hex digits; the
/// message may itself contain `_` (a SID may).
pub fn split_msg_mac(text: &str) -> Result<(&str, &str), MsgMacError> {
    let (msg, mac) = text.rsplit_once('_').ok_or(MsgMacError::NoSeparator)?;
    let is_hex = mac.len() == MAC_HEX_LEN
        && mac
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hex {
        return Err(MsgMacError::BadMac { len: mac.len() });
    }
    Ok((msg, mac))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testing::CertParams;
    use openssl::rsa::Rsa;

    // ../shared/legacy-protocol.md §6, worked example (the session's tests
    // use it too).
    pub(crate) const SID: &str = "1155000001";
    pub(crate) const MAC: &str = "10481f4194100e769fa8dc221baadea4a86a1a06";

    /// The original client's decryption, from the spec: base64, strict
    /// UTF-8, then RC4 over characters (code point XOR key-stream byte).
    pub(crate) fn client_unwrap(sid: &str, wire: &str) -> String {
        let bytes = openssl::base64::decode_block(wire).unwrap();
        let chars: Vec<u32> = String::from_utf8(bytes)
            .unwrap()
            .chars()
            .map(u32::from)
            .collect();
        let mut stream = vec![0u8; chars.len()];
        Rc4::new(format!("{sid}{sid}").as_bytes())
            .unwrap()
            .apply(&mut stream);
        chars
            .iter()
            .zip(stream)
            .map(|(c, k)| char::from_u32(c ^ u32::from(k)).unwrap())
            .collect()
    }

    #[test]
    fn wrap_reproduces_the_worked_example() {
        assert_eq!(wrap_session_key(SID, "regina").unwrap(), "w7XCmcKOO8O4wog=");
        // The bytes under the base64, as listed in the spec.
        let raw = openssl::base64::decode_block("w7XCmcKOO8O4wog=").unwrap();
        assert_eq!(
            raw,
            [0xc3, 0xb5, 0xc2, 0x99, 0xc2, 0x8e, 0x3b, 0xc3, 0xb8, 0xc2, 0x88]
        );
        assert_eq!(client_unwrap(SID, "w7XCmcKOO8O4wog="), "regina");
    }

    #[test]
    fn hmac_reproduces_the_worked_example() {
        assert_eq!(mac_hex("regina", SID).unwrap(), MAC);
    }

    #[test]
    fn fresh_session_keys_are_printable_distinct_and_round_trip() {
        let a = new_session_key().unwrap();
        let b = new_session_key().unwrap();
        assert_ne!(a, b);
        for key in [&a, &b] {
            assert_eq!(key.len(), SESSION_KEY_CHARS);
            assert!(key.bytes().all(|c| c.is_ascii_alphanumeric()), "{key}");
            for sid in [SID, "a", "x_y-Z", &"9".repeat(32)] {
                let wire = wrap_session_key(sid, key).unwrap();
                assert!(wire.is_ascii());
                assert_eq!(&client_unwrap(sid, &wire), key);
            }
        }
    }

    #[test]
    fn msg_mac_splits_at_the_last_underscore() {
        let text = format!(
            "{}_{MAC}",
            "This is submission from SID1155000001\n".repeat(10)
        );
        let (msg, mac) = split_msg_mac(&text).unwrap();
        assert_eq!(mac, MAC);
        assert_eq!(msg.len(), 380);
        // A message (or SID) containing '_' is fine.
        assert_eq!(
            split_msg_mac(&format!("SID a_b_{MAC}")),
            Ok(("SID a_b", MAC))
        );
        // An empty message is still well-formed.
        assert_eq!(split_msg_mac(&format!("_{MAC}")), Ok(("", MAC)));
    }

    #[test]
    fn msg_mac_refuses_malformed_frames() {
        assert_eq!(split_msg_mac(""), Err(MsgMacError::NoSeparator));
        assert_eq!(split_msg_mac("no separator"), Err(MsgMacError::NoSeparator));
        assert_eq!(split_msg_mac(MAC), Err(MsgMacError::NoSeparator));
        // '_' in the wrong place: what follows the last one is not a MAC.
        assert_eq!(
            split_msg_mac(&format!("msg_{MAC}_tail")),
            Err(MsgMacError::BadMac { len: 4 })
        );
        assert_eq!(split_msg_mac("msg_"), Err(MsgMacError::BadMac { len: 0 }));
        assert_eq!(
            split_msg_mac(&format!("msg_{}", &MAC[..39])),
            Err(MsgMacError::BadMac { len: 39 })
        );
        assert_eq!(
            split_msg_mac(&format!("msg_{MAC}0")),
            Err(MsgMacError::BadMac { len: 41 })
        );
        assert_eq!(
            split_msg_mac(&format!("msg_{}", MAC.to_uppercase())),
            Err(MsgMacError::BadMac { len: 40 })
        );
        // Multi-byte characters in the MAC position do not split a char.
        assert!(split_msg_mac(&format!("msg_{}é", &MAC[..38])).is_err());
        let msg = MsgMacError::NoSeparator.to_string();
        assert!(msg.contains("'_'"), "{msg}");
    }

    #[test]
    fn cert_text_must_be_one_pem_certificate() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let cert = CertParams::student("x").self_signed(&key).unwrap();
        let pem = cert.to_pem().unwrap();
        let der = cert.to_der().unwrap();
        assert_eq!(parse_cert_text(&pem).unwrap(), der);
        // CRLF (a copy saved on Windows) and surrounding blank lines are fine.
        let crlf = String::from_utf8(pem.clone())
            .unwrap()
            .replace('\n', "\r\n");
        assert_eq!(parse_cert_text(crlf.as_bytes()).unwrap(), der);
        let twice = [pem.clone(), pem.clone()].concat();
        assert!(parse_cert_text(&twice).is_err());
        let trailing = [pem.clone(), b"x".to_vec()].concat();
        assert!(parse_cert_text(&trailing).is_err());
        assert!(parse_cert_text(b"").is_err());
        assert!(parse_cert_text(b"\xff\xfe").is_err());
        assert!(parse_cert_text(
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"
        )
        .is_err());
        assert!(parse_cert_text(&vec![b' '; MAX_CERT_TEXT + 1]).is_err());
    }

    #[test]
    fn commands_are_recognised_exactly() {
        for c in ["1", "2", "q", "Q"] {
            assert!(is_command(c.as_bytes()));
        }
        for c in ["", "1 ", "12", "x", "\u{1}"] {
            assert!(!is_command(c.as_bytes()));
        }
    }
}
