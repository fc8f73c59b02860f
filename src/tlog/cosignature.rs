//! C2SP `tlog-cosignature` (Ed25519, `cosignature/v1`): a witness's
//! signature line on a checkpoint, saying that, as of its timestamp, this
//! is the largest consistent tree the witness has seen of that log. The
//! line is a signed-note signature (`— <name> base64(key id || sig)`) whose
//! key id is `SHA-256(name || 0x0A || 0x04 || key)[:4]` and whose signature
//! is `timestamp (u64, big-endian) || Ed25519 signature` over
//! `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's text.
//! Verifiers that do not know the witness's key skip the line, so a
//! cosigned checkpoint still opens with the log's key alone.

use std::fmt;

use openssl::base64;
use openssl::error::ErrorStack;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};

use super::note::{check_name, decode_b64, typed_key_id, NoteError, SignedNote, SIG_PREFIX};

/// The signature type of an Ed25519 `cosignature/v1` key.
pub const COSIGNATURE_V1: u8 = 0x04;
/// The timestamp is a u64 that must not exceed 2^63 − 1.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;
/// `timestamp(8) || Ed25519 signature(64)`.
const SIGNATURE_LEN: usize = 8 + 64;

/// Why a cosignature or a witness key was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum CosignatureError {
    /// A witness vkey that is not `<name>+<hex id>+base64(0x04 || key)`.
    BadKey(&'static str),
    /// A key name with a space or `+`, or empty.
    BadName,
    /// The note around the cosignature does not parse.
    Note(NoteError),
    /// The note carries no signature line by this witness.
    Missing {
        /// The witness's name.
        name: String,
    },
    /// A line by this witness (its name and key id) that does not verify.
    Invalid {
        /// The witness's name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// OpenSSL failed.
    Crypto(ErrorStack),
}

impl fmt::Display for CosignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CosignatureError::BadKey(why) => write!(f, "bad witness key: {why}"),
            CosignatureError::BadName => {
                write!(f, "a witness name must be non-empty, without spaces or '+'")
            }
            CosignatureError::Note(e) => write!(f, "{e}"),
            CosignatureError::Missing { name } => {
                write!(f, "the checkpoint carries no cosignature by witness {name}")
            }
            CosignatureError::Invalid { name, why } => {
                write!(f, "the cosignature by witness {name} does not hold: {why}")
            }
            CosignatureError::Crypto(e) => write!(f, "cosignature: {e}"),
        }
    }
}

impl std::error::Error for CosignatureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CosignatureError::Note(e) => Some(e),
            CosignatureError::Crypto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorStack> for CosignatureError {
    fn from(e: ErrorStack) -> Self {
        CosignatureError::Crypto(e)
    }
}

/// What a `cosignature/v1` signs: the two header lines, then the
/// checkpoint's note text (which ends in a newline).
fn signed_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

fn vkey_of(name: &str, id: u32, public: &[u8]) -> String {
    let mut raw = vec![COSIGNATURE_V1];
    raw.extend_from_slice(public);
    format!("{name}+{id:08x}+{}", base64::encode_block(&raw))
}

/// A witness's key and the name it cosigns under.
pub struct Cosigner {
    name: String,
    id: u32,
    key: PKey<Private>,
    public: Vec<u8>,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// A cosigner named `name` with an Ed25519 key.
    pub fn new(name: &str, key: PKey<Private>) -> Result<Cosigner, CosignatureError> {
        check_name(name).map_err(|_| CosignatureError::BadName)?;
        if key.id() != Id::ED25519 {
            return Err(CosignatureError::BadKey("the witness key is not Ed25519"));
        }
        let public = key.raw_public_key()?;
        Ok(Cosigner {
            name: name.to_string(),
            id: typed_key_id(name, COSIGNATURE_V1, &public),
            key,
            public,
        })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `<name>+<id>+base64(0x04 || public key)`.
    pub fn verifier_key(&self) -> String {
        vkey_of(&self.name, self.id, &self.public)
    }

    /// The verifier of this key.
    pub fn verifier(&self) -> Result<CosignatureVerifier, CosignatureError> {
        CosignatureVerifier::from_key(&self.verifier_key())
    }

    /// The cosignature line (ending in a newline) of the checkpoint whose
    /// note text is `text`, made at `timestamp` (POSIX seconds).
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::Invalid {
                name: self.name.clone(),
                why: "a timestamp above 2^63 - 1",
            });
        }
        let mut signer = Signer::new_without_digest(&self.key)?;
        let sig = signer.sign_oneshot_to_vec(signed_message(text, timestamp).as_bytes())?;
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&sig);
        Ok(format!(
            "{SIG_PREFIX}{} {}\n",
            self.name,
            base64::encode_block(&blob)
        ))
    }
}

/// A trusted witness, parsed from its verifier key.
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: PKey<Public>,
}

impl fmt::Debug for CosignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureVerifier")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl CosignatureVerifier {
    /// Parses `<name>+<hex id>+base64(0x04 || 32-byte key)`.
    pub fn from_key(vkey: &str) -> Result<CosignatureVerifier, CosignatureError> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CosignatureError::BadKey("expected <name>+<key id>+<key>"));
        };
        check_name(name).map_err(|_| CosignatureError::BadName)?;
        if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CosignatureError::BadKey("the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(hex, 16)
            .map_err(|_| CosignatureError::BadKey("the key id is not 8 hex digits"))?;
        let raw = decode_b64(b64).ok_or(CosignatureError::BadKey("the key is not base64"))?;
        let Some((&COSIGNATURE_V1, public)) = raw.split_first() else {
            return Err(CosignatureError::BadKey(
                "not a cosignature/v1 (type 0x04) key; a log's own key (type 0x01) cannot \
                 witness",
            ));
        };
        if public.len() != 32 {
            return Err(CosignatureError::BadKey("an Ed25519 key is 32 bytes"));
        }
        if typed_key_id(name, COSIGNATURE_V1, public) != id {
            return Err(CosignatureError::BadKey(
                "the key id does not match the name and key",
            ));
        }
        let key = PKey::public_key_from_raw_bytes(public, Id::ED25519)?;
        Ok(CosignatureVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key text.
    pub fn verifier_key(&self) -> Result<String, CosignatureError> {
        Ok(vkey_of(&self.name, self.id, &self.key.raw_public_key()?))
    }

    /// Checks one signature's bytes (after the key id) over `text`;
    /// returns its timestamp.
    fn check(&self, text: &str, blob: &[u8]) -> Result<u64, CosignatureError> {
        let invalid = |why| CosignatureError::Invalid {
            name: self.name.clone(),
            why,
        };
        if blob.len() != SIGNATURE_LEN {
            return Err(invalid("not a timestamp and an Ed25519 signature"));
        }
        let (ts, sig) = blob.split_at(8);
        let mut ts_bytes = [0u8; 8];
        ts_bytes.copy_from_slice(ts);
        let timestamp = u64::from_be_bytes(ts_bytes);
        if timestamp > MAX_TIMESTAMP {
            return Err(invalid("a timestamp above 2^63 - 1"));
        }
        let good = Verifier::new_without_digest(&self.key)
            .and_then(|mut v| v.verify_oneshot(sig, signed_message(text, timestamp).as_bytes()))
            .unwrap_or(false);
        if good {
            Ok(timestamp)
        } else {
            Err(invalid("the signature does not verify"))
        }
    }

    /// Whether the signed `note` carries this witness's valid cosignature;
    /// its timestamp when it does. Lines by other keys are ignored; a line
    /// with this witness's name and key id that does not verify is an
    /// error (not merely missing: someone forged or mangled it).
    pub fn verify(&self, note: &str) -> Result<u64, CosignatureError> {
        let parsed = SignedNote::parse(note).map_err(CosignatureError::Note)?;
        let mut found = None;
        for sig in &parsed.signatures {
            if sig.name != self.name || sig.id != self.id {
                continue;
            }
            found = Some(self.check(parsed.text, &sig.signature)?);
        }
        found.ok_or_else(|| CosignatureError::Missing {
            name: self.name.clone(),
        })
    }
}

/// Checks that `note` carries a valid cosignature by each of `witnesses`;
/// the first one missing or invalid is the error.
pub fn require_all(note: &str, witnesses: &[CosignatureVerifier]) -> Result<(), CosignatureError> {
    for w in witnesses {
        w.verify(note)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::NoteSigner;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const TEXT: &str = "example.edu/certboard\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn a_cosignature_is_built_as_the_spec_says() -> TestResult {
        let key = PKey::generate_ed25519()?;
        let public = key.raw_public_key()?;
        let w = Cosigner::new("witness.example/w1", key)?;
        let line = w.cosign(TEXT, 1_679_315_147)?;
        let b64 = line
            .strip_prefix("\u{2014} witness.example/w1 ")
            .and_then(|l| l.strip_suffix('\n'))
            .ok_or("not a signature line")?;
        let blob = decode_b64(b64).ok_or("not base64")?;
        assert_eq!(blob.len(), 4 + 8 + 64);
        // Key id computed here from the spec's formula, not the module's.
        let mut h = openssl::sha::Sha256::new();
        h.update(b"witness.example/w1\n\x04");
        h.update(&public);
        assert_eq!(&blob[..4], &h.finish()[..4]);
        assert_eq!(&blob[4..12], &1_679_315_147u64.to_be_bytes());
        let msg = format!("cosignature/v1\ntime 1679315147\n{TEXT}");
        let pk = PKey::public_key_from_raw_bytes(&public, Id::ED25519)?;
        assert!(Verifier::new_without_digest(&pk)?.verify_oneshot(&blob[12..], msg.as_bytes())?);
        // The vkey is type 0x04.
        let vkey = w.verifier_key();
        let raw = decode_b64(vkey.splitn(3, '+').nth(2).unwrap_or("")).ok_or("vkey not base64")?;
        assert_eq!(raw[0], 0x04);
        assert_eq!(&raw[1..], &public[..]);
        Ok(())
    }

    #[test]
    fn the_specs_example_line_is_framed_as_ours() -> TestResult {
        // c2sp.org/tlog-cosignature's example (its key is not published,
        // so the framing is what can be checked): key id, then the
        // timestamp its signed-message example shows, then 64 bytes.
        let note = "example.com/behind-the-sofa\n20852163\n\
            CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
            \u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let parsed = SignedNote::parse(note)?;
        let w = &parsed.signatures[1];
        assert_eq!(
            (w.name.as_str(), w.id),
            ("witness.example.com/w1", 0x8d66_cf3f)
        );
        assert_eq!(w.signature.len(), SIGNATURE_LEN);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&w.signature[..8]);
        assert_eq!(u64::from_be_bytes(ts), 1_679_315_147);
        assert_eq!(
            signed_message(parsed.text, 1_679_315_147),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n\
             CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        Ok(())
    }

    #[test]
    fn a_cosigned_note_verifies_for_both_keys_and_ignores_strangers() -> TestResult {
        let log = NoteSigner::new("example.edu/certboard", PKey::generate_ed25519()?)?;
        let w1 = Cosigner::new("w1.example", PKey::generate_ed25519()?)?;
        let w2 = Cosigner::new("w2.example", PKey::generate_ed25519()?)?;
        let note = format!("{}{}", log.sign(TEXT)?, w1.cosign(TEXT, 42)?);
        // The log's key still opens it: the witness line is a stranger to it.
        assert_eq!(log.verifier()?.open(&note)?.text, TEXT);
        assert_eq!(w1.verifier()?.verify(&note)?, 42);
        assert!(matches!(
            w2.verifier()?.verify(&note),
            Err(CosignatureError::Missing { name }) if name == "w2.example"
        ));
        assert!(require_all(&note, &[w1.verifier()?]).is_ok());
        assert!(require_all(&note, &[w1.verifier()?, w2.verifier()?]).is_err());
        // A cosignature of another checkpoint, pasted on, is invalid.
        let other = "example.edu/certboard\n4\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let pasted = format!("{}{}", log.sign(other)?, w1.cosign(TEXT, 42)?);
        assert!(matches!(
            w1.verifier()?.verify(&pasted),
            Err(CosignatureError::Invalid { .. })
        ));
        Ok(())
    }

    #[test]
    fn keys_of_the_wrong_type_or_shape_are_refused() -> TestResult {
        let log = NoteSigner::new("log.example", PKey::generate_ed25519()?)?;
        // A log (type 0x01) vkey is not a witness key.
        assert!(matches!(
            CosignatureVerifier::from_key(&log.verifier_key()),
            Err(CosignatureError::BadKey(_))
        ));
        let w = Cosigner::new("w.example", PKey::generate_ed25519()?)?;
        let vkey = w.verifier_key();
        assert_eq!(CosignatureVerifier::from_key(&vkey)?.verifier_key()?, vkey);
        let renamed = vkey.replacen("w.example", "x.example", 1);
        assert!(CosignatureVerifier::from_key(&renamed).is_err());
        assert!(CosignatureVerifier::from_key("w.example").is_err());
        assert!(Cosigner::new("two words", PKey::generate_ed25519()?).is_err());
        assert!(w.cosign(TEXT, u64::MAX).is_err());
        Ok(())
    }
}
