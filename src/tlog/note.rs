//! C2SP `signed-note` with Ed25519 keys (signature type 0x01): text ending
//! in a newline, a blank line, then lines `— <name> base64(key id || sig)`.
//! Keys are written in Go's `sumdb/note` verifier-key form,
//! `<name>+<key id hex>+base64(0x01 || public key)`, which the Go tooling
//! and C2SP witnesses accept.

use std::fmt;

use openssl::base64;
use openssl::error::ErrorStack;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sha::Sha256;
use openssl::sign::{Signer, Verifier};

/// The signed-note signature type of Ed25519.
const ED25519: u8 = 0x01;
/// Signed notes accept at least 16 signatures; more are refused as abuse.
const MAX_SIGNATURES: usize = 64;
/// The em dash (U+2014) and space that begin a signature line.
pub(crate) const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note or key was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum NoteError {
    /// The text breaks the signed-note format; says where.
    Malformed(&'static str),
    /// A key name with a space or `+`, or empty.
    BadKeyName,
    /// A verifier key that is not `<name>+<hex id>+<base64>` of an
    /// Ed25519 key whose id matches.
    BadVerifierKey(&'static str),
    /// No signature by the trusted key, or one by it that does not verify.
    NotSigned {
        /// The trusted key's name.
        name: String,
    },
    /// OpenSSL failed (signing, key parsing).
    Crypto(ErrorStack),
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "malformed signed note: {why}"),
            NoteError::BadKeyName => {
                write!(
                    f,
                    "a note key name must be non-empty, without spaces or '+'"
                )
            }
            NoteError::BadVerifierKey(why) => write!(f, "bad verifier key: {why}"),
            NoteError::NotSigned { name } => {
                write!(f, "the note carries no valid signature by {name}")
            }
            NoteError::Crypto(e) => write!(f, "note signature: {e}"),
        }
    }
}

impl std::error::Error for NoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NoteError::Crypto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorStack> for NoteError {
    fn from(e: ErrorStack) -> Self {
        NoteError::Crypto(e)
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKeyName);
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, big-endian.
fn key_id(name: &str, public: &[u8]) -> u32 {
    typed_key_id(name, ED25519, public)
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian: the key
/// id of a signature type (0x01 a log's Ed25519 key, 0x04 a witness's
/// `cosignature/v1` key).
pub(crate) fn typed_key_id(name: &str, sig_type: u8, public: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(&[sig_type]);
    h.update(public);
    let d = h.finish();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A log's (or witness's) signing key and the name it signs under.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: PKey<Private>,
    public: Vec<u8>,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer for `name` with an Ed25519 key.
    pub fn new(name: &str, key: PKey<Private>) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        if key.id() != Id::ED25519 {
            return Err(NoteError::BadVerifierKey("the log key is not Ed25519"));
        }
        let public = key.raw_public_key()?;
        Ok(NoteSigner {
            name: name.to_string(),
            id: key_id(name, &public),
            key,
            public,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `<name>+<id>+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(&self.public);
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            base64::encode_block(&raw)
        )
    }

    /// The verifier for this signer's key.
    pub fn verifier(&self) -> Result<NoteVerifier, NoteError> {
        NoteVerifier::from_key(&self.verifier_key())
    }

    /// The signature line for `text` (which ends in a newline), ending in
    /// its own newline.
    pub fn signature_line(&self, text: &str) -> Result<String, NoteError> {
        let mut signer = Signer::new_without_digest(&self.key)?;
        let sig = signer.sign_oneshot_to_vec(text.as_bytes())?;
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&sig);
        Ok(format!(
            "{SIG_PREFIX}{} {}\n",
            self.name,
            base64::encode_block(&blob)
        ))
    }

    /// `text` signed: the text, a blank line, the signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.signature_line(text)?))
    }
}

/// A trusted key, parsed from its verifier-key text.
#[derive(Clone)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: PKey<Public>,
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteVerifier")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl NoteVerifier {
    /// Parses `<name>+<hex id>+base64(0x01 || 32-byte key)`.
    pub fn from_key(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadVerifierKey("expected <name>+<key id>+<key>"));
        };
        check_name(name)?;
        if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey("the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(hex, 16)
            .map_err(|_| NoteError::BadVerifierKey("the key id is not 8 hex digits"))?;
        let raw = decode_b64(b64).ok_or(NoteError::BadVerifierKey("the key is not base64"))?;
        let Some((&ED25519, public)) = raw.split_first() else {
            return Err(NoteError::BadVerifierKey("not an Ed25519 (type 0x01) key"));
        };
        if public.len() != 32 {
            return Err(NoteError::BadVerifierKey("an Ed25519 key is 32 bytes"));
        }
        if key_id(name, public) != id {
            return Err(NoteError::BadVerifierKey(
                "the key id does not match the name and key",
            ));
        }
        let key = PKey::public_key_from_raw_bytes(public, Id::ED25519)?;
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` is this key's signature of `text`.
    fn verifies(&self, text: &str, sig: &[u8]) -> bool {
        Verifier::new_without_digest(&self.key)
            .and_then(|mut v| v.verify_oneshot(sig, text.as_bytes()))
            .unwrap_or(false)
    }

    /// Opens a signed note: its text, once a signature by this key
    /// verifies. Signatures by other keys are ignored (they may be
    /// witnesses' cosignatures); one by this key that fails refuses the note.
    pub fn open<'n>(&self, note: &'n str) -> Result<SignedNote<'n>, NoteError> {
        let parsed = SignedNote::parse(note)?;
        let mut good = false;
        for sig in &parsed.signatures {
            if sig.name != self.name || sig.id != self.id {
                continue;
            }
            if !self.verifies(parsed.text, &sig.signature) {
                return Err(NoteError::NotSigned {
                    name: self.name.clone(),
                });
            }
            good = true;
        }
        if good {
            Ok(parsed)
        } else {
            Err(NoteError::NotSigned {
                name: self.name.clone(),
            })
        }
    }
}

/// Standard base64 (RFC 4648 §4), strict: the alphabet and padding only
/// (OpenSSL's decoder would skip whitespace).
pub(crate) fn decode_b64(s: &str) -> Option<Vec<u8>> {
    if s.is_empty()
        || !s.len().is_multiple_of(4)
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return None;
    }
    let decoded = base64::decode_block(s).ok()?;
    // Canonical only: re-encoding gives the same text.
    (base64::encode_block(&decoded) == s).then_some(decoded)
}

/// A signature line of a note, not yet checked.
#[derive(Debug, Clone)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub id: u32,
    /// The signature bytes after the id.
    pub signature: Vec<u8>,
}

/// A note split into its text and signature lines (not yet verified).
#[derive(Debug, Clone)]
pub struct SignedNote<'n> {
    /// The signed text, with its final newline.
    pub text: &'n str,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text does not end in a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("a control character"));
    }
    Ok(())
}

impl<'n> SignedNote<'n> {
    /// Splits a note at its last blank line.
    pub fn parse(note: &'n str) -> Result<SignedNote<'n>, NoteError> {
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("a control character"));
        }
        let Some(cut) = note.rfind("\n\n") else {
            return Err(NoteError::Malformed("no blank line before the signatures"));
        };
        let text = &note[..cut + 1];
        let sigs = &note[cut + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the signatures do not end in a newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::Malformed("a signature line without the em dash"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("a signature line without a key name"))?;
            check_name(name).map_err(|_| NoteError::Malformed("a bad key name"))?;
            let blob = decode_b64(b64).ok_or(NoteError::Malformed("a signature not in base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                id: u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]),
                signature: blob[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signature"));
        }
        Ok(SignedNote { text, signatures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn signer(name: &str) -> Result<NoteSigner, NoteError> {
        NoteSigner::new(name, PKey::generate_ed25519()?)
    }

    #[test]
    fn go_sumdb_note_vectors_verify() -> TestResult {
        // The example key and note from golang.org/x/mod/sumdb/note's
        // documentation.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let v = NoteVerifier::from_key(vkey)?;
        let opened = v.open(note)?;
        assert!(opened.text.starts_with("If you think"));
        // One changed byte of the text is refused.
        let forged = note.replace("answer", "ANSWER");
        assert!(matches!(v.open(&forged), Err(NoteError::NotSigned { .. })));
        Ok(())
    }

    #[test]
    fn sign_then_open_round_trips_and_ignores_unknown_signers() -> TestResult {
        let log = signer("example.edu/certboard")?;
        let witness = signer("witness.example")?;
        let text = "example.edu/certboard\n3\nAAAA\n";
        let note = log.sign(text)?;
        let cosigned = format!("{note}{}", witness.signature_line(text)?);
        let v = log.verifier()?;
        assert_eq!(v.open(&cosigned)?.text, text);
        // The witness's key does not make the log's note valid.
        let only_witness = witness.sign(text)?;
        assert!(v.open(&only_witness).is_err());
        // The vkey round-trips and names the key.
        let again = NoteVerifier::from_key(&log.verifier_key())?;
        assert_eq!(again.name(), "example.edu/certboard");
        Ok(())
    }

    #[test]
    fn malformed_notes_and_keys_are_refused() -> TestResult {
        let log = signer("log")?;
        let note = log.sign("a\n")?;
        for bad in [
            note.replace('\u{2014}', "-"),
            note.replacen("\n\n", "\n", 1),
            note.trim_end().to_string(),
            format!("a\u{7}{}", &note[1..]),
        ] {
            assert!(log.verifier()?.open(&bad).is_err(), "{bad:?}");
        }
        assert!(log.sign("no newline").is_err());
        assert!(NoteSigner::new("two words", PKey::generate_ed25519()?).is_err());
        let vkey = log.verifier_key();
        let wrong_id = format!("log+00000000+{}", vkey.rsplit('+').next().unwrap_or(""));
        assert!(NoteVerifier::from_key(&wrong_id).is_err());
        assert!(NoteVerifier::from_key("log+zz+AA==").is_err());
        Ok(())
    }
}
