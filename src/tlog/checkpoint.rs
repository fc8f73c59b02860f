//! C2SP `tlog-checkpoint`: the note text `<origin>\n<size>\n<base64 root>\n`
//! (then optional extension lines), signed as a `signed-note`; and C2SP
//! `tlog-proof`, an inclusion proof carried with the checkpoint it proves
//! against.

use std::fmt;

use openssl::base64;

use super::merkle::{verify_inclusion, Hash};
use super::note::{decode_b64, NoteError, NoteVerifier};

/// A tree head: which log, how many leaves, and their root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (e.g. `cuhk.example/certboard`).
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// RFC 6962 root hash of those leaves.
    pub root: Hash,
}

/// Why a checkpoint or proof was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note around it.
    Note(NoteError),
    /// The checkpoint's text is not origin, size, root.
    Malformed(&'static str),
    /// A checkpoint of another log.
    WrongOrigin {
        /// The origin expected.
        expected: String,
        /// The origin found.
        found: String,
    },
    /// The tlog-proof's lines are not in its format.
    MalformedProof(&'static str),
    /// The inclusion proof does not lead to the checkpoint's root.
    NotIncluded {
        /// The leaf index claimed.
        index: u64,
        /// The tree size.
        size: u64,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Note(e) => write!(f, "{e}"),
            CheckpointError::Malformed(why) => write!(f, "malformed checkpoint: {why}"),
            CheckpointError::WrongOrigin { expected, found } => {
                write!(f, "checkpoint of log {found:?}, expected {expected:?}")
            }
            CheckpointError::MalformedProof(why) => write!(f, "malformed tlog-proof: {why}"),
            CheckpointError::NotIncluded { index, size } => write!(
                f,
                "the inclusion proof of entry {index} does not match the checkpoint of size {size}"
            ),
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Note(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NoteError> for CheckpointError {
    fn from(e: NoteError) -> Self {
        CheckpointError::Note(e)
    }
}

/// A decimal with no sign and no leading zero (but `0`).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn parse_hash(s: &str) -> Option<Hash> {
    decode_b64(s)?.try_into().ok()
}

impl Checkpoint {
    /// The note text (unsigned), without extension lines.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            base64::encode_block(&self.root)
        )
    }

    /// Parses a checkpoint's note text; extension lines are allowed and
    /// ignored.
    pub fn parse_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("no final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("an empty origin line"));
        }
        let size = lines
            .next()
            .and_then(parse_decimal)
            .ok_or(CheckpointError::Malformed("the size is not a decimal"))?;
        let root = lines
            .next()
            .and_then(parse_hash)
            .ok_or(CheckpointError::Malformed(
                "the root is not a base64 SHA-256",
            ))?;
        if lines.any(str::is_empty) {
            return Err(CheckpointError::Malformed("an empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Verifies a signed checkpoint with the log's key and checks its
    /// origin.
    pub fn open(
        note: &str,
        log: &NoteVerifier,
        origin: &str,
    ) -> Result<Checkpoint, CheckpointError> {
        let opened = log.open(note)?;
        let cp = Checkpoint::parse_text(opened.text)?;
        if cp.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                expected: origin.to_string(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }
}

/// The first line of a C2SP tlog-proof.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A C2SP `tlog-proof`: entry `index`, its inclusion path, and the signed
/// checkpoint (verbatim) it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The entry's index.
    pub index: u64,
    /// The inclusion path, leaf side first.
    pub path: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof's text.
    pub fn encode(&self) -> String {
        let mut s = format!("{PROOF_HEADER}\nindex {}\n", self.index);
        for h in &self.path {
            s.push_str(&base64::encode_block(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a proof's text (the checkpoint is not yet verified).
    pub fn parse(text: &str) -> Result<TlogProof, CheckpointError> {
        let rest = text
            .strip_prefix(PROOF_HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(CheckpointError::MalformedProof(
                "no c2sp.org/tlog-proof@v1 line",
            ))?;
        // An `extra` line is allowed by the format; certboard sends none
        // and never trusts one.
        let rest = match rest.strip_prefix("extra ") {
            Some(r) => {
                r.split_once('\n')
                    .map(|(_, r)| r)
                    .ok_or(CheckpointError::MalformedProof(
                        "an unterminated extra line",
                    ))?
            }
            None => rest,
        };
        let (index_line, mut rest) = rest
            .split_once('\n')
            .ok_or(CheckpointError::MalformedProof("no index line"))?;
        let index = index_line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or(CheckpointError::MalformedProof(
                "the index line is not `index N`",
            ))?;
        let mut path = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or(CheckpointError::MalformedProof(
                    "no blank line before the checkpoint",
                ))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if path.len() == 64 {
                return Err(CheckpointError::MalformedProof("more than 64 hashes"));
            }
            path.push(parse_hash(line).ok_or(CheckpointError::MalformedProof(
                "a hash line is not base64 SHA-256",
            ))?);
        }
        Ok(TlogProof {
            index,
            path,
            checkpoint: rest.to_string(),
        })
    }

    /// Verifies the proof for the leaf hashed to `leaf`: the checkpoint's
    /// signature and origin, then the path to its root. Returns the
    /// checkpoint.
    pub fn verify(
        &self,
        leaf: &Hash,
        log: &NoteVerifier,
        origin: &str,
    ) -> Result<Checkpoint, CheckpointError> {
        let cp = Checkpoint::open(&self.checkpoint, log, origin)?;
        if !verify_inclusion(leaf, self.index, cp.size, &self.path, &cp.root) {
            return Err(CheckpointError::NotIncluded {
                index: self.index,
                size: cp.size,
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{inclusion_proof, leaf_hash, node_hash};
    use crate::tlog::note::NoteSigner;
    use openssl::pkey::PKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn checkpoint_text_round_trips_and_is_strict() -> TestResult {
        let cp = Checkpoint {
            origin: "example.edu/certboard".into(),
            size: 3,
            root: [0xab; 32],
        };
        assert_eq!(Checkpoint::parse_text(&cp.text())?, cp);
        let with_ext = format!("{}extension line\n", cp.text());
        assert_eq!(Checkpoint::parse_text(&with_ext)?, cp);
        for bad in [
            "o\n03\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
            "o\n3\nq6urq6s=\n",
            "\n3\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
            "o\n3\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
            "o\n-3\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        ] {
            assert!(Checkpoint::parse_text(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn a_proof_round_trips_and_verifies_only_for_its_leaf() -> TestResult {
        let signer = NoteSigner::new("example.edu/certboard", PKey::generate_ed25519()?)?;
        let leaves: Vec<_> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
        // A tree of 5 by hand: ((01)(23))4.
        let root = node_hash(
            &node_hash(
                &node_hash(&leaves[0], &leaves[1]),
                &node_hash(&leaves[2], &leaves[3]),
            ),
            &leaves[4],
        );
        let cp = Checkpoint {
            origin: "example.edu/certboard".into(),
            size: 5,
            root,
        };
        let note = signer.sign(&cp.text())?;
        let path = inclusion_proof(2, 5, |ids: &[crate::tlog::merkle::NodeId]| {
            Ok::<_, crate::tlog::merkle::TreeError>(
                ids.iter()
                    .map(|id| match (id.level, id.index) {
                        (0, i) => leaves[i as usize],
                        (1, i) => node_hash(&leaves[2 * i as usize], &leaves[2 * i as usize + 1]),
                        _ => [0; 32],
                    })
                    .collect(),
            )
        })?;
        let proof = TlogProof {
            index: 2,
            path,
            checkpoint: note,
        };
        let text = proof.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 2\n"));
        let parsed = TlogProof::parse(&text)?;
        assert_eq!(parsed, proof);
        let v = signer.verifier()?;
        assert_eq!(parsed.verify(&leaves[2], &v, "example.edu/certboard")?, cp);
        assert!(matches!(
            parsed.verify(&leaves[3], &v, "example.edu/certboard"),
            Err(CheckpointError::NotIncluded { .. })
        ));
        assert!(matches!(
            parsed.verify(&leaves[2], &v, "other.example/log"),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        Ok(())
    }
}
