//! The student's side of the transparency log (issue 21): a receipt that
//! carries a log proof is checked to include the entry she can rebuild
//! from what she sent, and the checkpoint it proves against is compared
//! with the latest one she has seen for her CA (`<out-dir>/log-checkpoint`).
//! Both come inside the receipt Blackboard signed, so two checkpoints of
//! one size with different roots, or a smaller tree than one already seen,
//! are signed evidence of a forked or rewound log: the client refuses,
//! keeps both notes, and says so.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::receipt::ReceiptContent;
use crate::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use crate::tlog::note::SignedNote;
use crate::tlog::{
    Authorisation, Checkpoint, CheckpointError, Leaf, LeafError, NoteError, NoteVerifier, TlogProof,
};

/// Why a receipt's log proof does not hold.
#[derive(Debug)]
pub enum ProofCheckError {
    /// The proof's text is not a tlog-proof.
    Proof(CheckpointError),
    /// Its checkpoint is not a signed note.
    Note(NoteError),
    /// `log_index` and the proof disagree.
    IndexMismatch {
        /// The receipt's `log_index`.
        receipt: u64,
        /// The proof's.
        proof: u64,
    },
    /// A receipt field the entry is rebuilt from does not parse.
    Field(&'static str),
    /// The certificate's entry is not an entry, or not of her certificate
    /// (says which field differs).
    Entry(Result<&'static str, LeafError>),
    /// The checkpoint is not signed by the log key the CA proved.
    Signature(CheckpointError),
    /// A proof came with no log key to check its checkpoint with.
    NoLogKey,
    /// The path does not lead from her entry to the checkpoint's root.
    NotIncluded {
        /// The index claimed.
        index: u64,
        /// The tree's size.
        size: u64,
    },
}

impl fmt::Display for ProofCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofCheckError::Proof(e) => write!(f, "log proof: {e}"),
            ProofCheckError::Note(e) => write!(f, "log proof's checkpoint: {e}"),
            ProofCheckError::IndexMismatch { receipt, proof } => write!(
                f,
                "log_index {receipt} differs from the log proof's index {proof}"
            ),
            ProofCheckError::Field(what) => write!(f, "the receipt's {what} does not parse"),
            ProofCheckError::Entry(Ok(field)) => write!(
                f,
                "the log entry sent is not her certificate's: its {field} differs"
            ),
            ProofCheckError::Entry(Err(e)) => write!(f, "the log entry sent: {e}"),
            ProofCheckError::Signature(e) => write!(f, "the log proof's checkpoint: {e}"),
            ProofCheckError::NoLogKey => write!(
                f,
                "a log proof came without the log's key to check its checkpoint with"
            ),
            ProofCheckError::NotIncluded { index, size } => write!(
                f,
                "the log proof does not show her submission as entry {index} of the tree of \
                 {size} entries"
            ),
        }
    }
}

impl std::error::Error for ProofCheckError {}

/// The file of the latest checkpoint seen, in the client's out-dir.
pub(crate) const CHECKPOINT_FILE: &str = "log-checkpoint";

/// The checkpoint inside a note (its signature is not checked here: the
/// receipt around it is Blackboard's signature).
fn checkpoint_of(note: &str) -> Result<Checkpoint, ProofCheckError> {
    let opened = SignedNote::parse(note).map_err(ProofCheckError::Note)?;
    Checkpoint::parse_text(opened.text).map_err(ProofCheckError::Proof)
}

/// Checks a receipt's log proof, if it has one, against the entry rebuilt
/// from her own values; returns the checkpoint note it proves against.
pub(crate) fn check_inclusion(
    c: &ReceiptContent,
    report: &[u8],
) -> Result<Option<String>, ProofCheckError> {
    check_entry(c, &openssl::sha::sha256(report), report.len() as u64)
}

/// [`check_inclusion`] for a version 3 file: the entry holds the file's
/// SHA-256 and size, which she computed before sending it.
pub(crate) fn check_file_inclusion(
    c: &ReceiptContent,
    sha256: &[u8; 32],
    size: u64,
) -> Result<Option<String>, ProofCheckError> {
    check_entry(c, sha256, size)
}

/// Checks the proof of the submission entry holding `sha256` and `size`
/// with the receipt's other values.
fn check_entry(
    c: &ReceiptContent,
    sha256: &[u8; 32],
    size: u64,
) -> Result<Option<String>, ProofCheckError> {
    let (Some(text), Some(index)) = (&c.log_proof, c.log_index) else {
        return Ok(None);
    };
    let proof = TlogProof::parse(text).map_err(ProofCheckError::Proof)?;
    if proof.index != index {
        return Err(ProofCheckError::IndexMismatch {
            receipt: index,
            proof: proof.index,
        });
    }
    let receipt_id: u64 = c
        .receipt
        .parse()
        .map_err(|_| ProofCheckError::Field("receipt id"))?;
    let received_at = crate::time::parse_rfc3339(&c.received_at)
        .map_err(|_| ProofCheckError::Field("received_at"))?;
    let leaf = Leaf::Submission {
        sid: c.sid.clone(),
        // Receipts from before assignments existed went to the lab.
        assignment: c.assignment.clone().unwrap_or_else(|| "lab".to_string()),
        receipt_id,
        sha256: *sha256,
        size,
        received_at: received_at.max(0) as u64,
        late: c.late.unwrap_or(false),
        serial: c.serial.clone(),
    };
    let cp = checkpoint_of(&proof.checkpoint)?;
    if !verify_inclusion(
        &leaf_hash(&leaf.encode()),
        proof.index,
        cp.size,
        &proof.path,
        &cp.root,
    ) {
        return Err(ProofCheckError::NotIncluded {
            index,
            size: cp.size,
        });
    }
    Ok(Some(proof.checkpoint))
}

/// Checks a version 3 certificate's log proof (`CertIssued3`): `entry`
/// must be the entry of her certificate (her SID, its serial and SHA-256,
/// the authorisation she used), `proof_text` must lead from it to a
/// checkpoint signed by `log_key` (which the CA's root key signed in its
/// challenge). Returns the checkpoint note and the entry's index.
pub(crate) fn check_cert_inclusion(
    entry: &[u8],
    proof_text: &str,
    log_key: Option<&NoteVerifier>,
    sid: &str,
    cert_der: &[u8],
    serial: &str,
    authorisation: Authorisation,
) -> Result<(String, u64), ProofCheckError> {
    let log_key = log_key.ok_or(ProofCheckError::NoLogKey)?;
    let proof = TlogProof::parse(proof_text).map_err(ProofCheckError::Proof)?;
    let cp = Checkpoint::open(&proof.checkpoint, log_key, log_key.name())
        .map_err(ProofCheckError::Signature)?;
    match Leaf::decode(entry).map_err(|e| ProofCheckError::Entry(Err(e)))? {
        Leaf::Cert {
            sid: s,
            serial: n,
            cert_sha256,
            authorisation: a,
            ..
        } => {
            let differs = if s != sid {
                Some("SID")
            } else if !n.eq_ignore_ascii_case(serial) {
                Some("serial")
            } else if cert_sha256 != openssl::sha::sha256(cert_der) {
                Some("certificate SHA-256")
            } else if a != authorisation {
                Some("authorisation")
            } else {
                None
            };
            if let Some(field) = differs {
                return Err(ProofCheckError::Entry(Ok(field)));
            }
        }
        Leaf::Submission { .. } => return Err(ProofCheckError::Entry(Ok("kind"))),
    }
    if !verify_inclusion(
        &leaf_hash(entry),
        proof.index,
        cp.size,
        &proof.path,
        &cp.root,
    ) {
        return Err(ProofCheckError::NotIncluded {
            index: proof.index,
            size: cp.size,
        });
    }
    Ok((proof.checkpoint, proof.index))
}

/// A log that does not extend what she saw before.
#[derive(Debug)]
pub struct LogFork {
    /// The checkpoint she had kept.
    pub kept: PathBuf,
    /// The conflicting one, now saved beside it.
    pub evidence: PathBuf,
    /// What conflicts.
    pub why: String,
    /// The kept checkpoint's note, verbatim.
    pub kept_note: String,
    /// The conflicting note, verbatim.
    pub new_note: String,
}

/// The size of the latest checkpoint kept in `out_dir` (0: none), which
/// a version 3 hello announces so that the CA proves consistency from it.
pub(crate) fn kept_size(out_dir: &Path) -> u64 {
    fs::read_to_string(out_dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|n| checkpoint_of(&n).ok())
        .map_or(0, |c| c.size)
}

/// Splits a consistency proof sent as concatenated 32-byte hashes.
pub(crate) fn split_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    bytes.chunks(32).map(|c| <Hash>::try_from(c).ok()).collect()
}

/// What [`remember`] did with a new checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remembered {
    /// Kept: the first, one of another log, or one proved to extend the
    /// kept one.
    Kept,
    /// The same tree as the one kept, or an older one it extends.
    Same,
    /// Larger, but no consistency proof could be had: the kept one stays,
    /// so the next check asks again from it.
    Unproven(String),
}

/// Compares `note` with the latest checkpoint kept in `out_dir` and keeps
/// the newer. Same size and another root, or a smaller tree: a fork. A
/// larger tree is kept only once an RFC 6962 consistency proof from the
/// kept one (asked of `prove(old, new)`; `Err`: none could be had, why)
/// verifies against both signed roots; a proof that fails is a fork.
pub(crate) fn remember(
    out_dir: &Path,
    note: &str,
    prove: &mut dyn FnMut(u64, u64) -> Result<Vec<Hash>, super::ClientError>,
) -> Result<Remembered, LogFork> {
    let kept = out_dir.join(CHECKPOINT_FILE);
    let new = match checkpoint_of(note) {
        Ok(c) => c,
        // Checked already by check_inclusion.
        Err(_) => return Ok(Remembered::Same),
    };
    let old_note = fs::read_to_string(&kept).ok();
    if let Some((old, old_note)) = old_note
        .as_deref()
        .and_then(|n| Some((checkpoint_of(n).ok()?, n)))
    {
        let why = if old.origin != new.origin {
            None
        } else if new.size == old.size && new.root != old.root {
            Some(format!(
                "two different trees of {} entries (roots differ)",
                new.size
            ))
        } else if new.size < old.size {
            // An older checkpoint than the one kept: another client run in
            // the same folder kept a newer one meanwhile. Fine if the kept
            // tree extends it; a log that cannot show that has shrunk.
            match prove(new.size, old.size) {
                Ok(proof)
                    if verify_consistency(new.size, &new.root, old.size, &old.root, &proof) =>
                {
                    return Ok(Remembered::Same);
                }
                _ => Some(format!(
                    "the log shrank from {} to {} entries",
                    old.size, new.size
                )),
            }
        } else if new.size > old.size {
            match prove(old.size, new.size) {
                Ok(proof) => (!verify_consistency(
                    old.size, &old.root, new.size, &new.root, &proof,
                ))
                .then(|| {
                    format!(
                        "the tree of {} entries does not extend the tree of {} she saw \
                         (its consistency proof fails)",
                        new.size, old.size
                    )
                }),
                Err(why) => return Ok(Remembered::Unproven(why.to_string())),
            }
        } else {
            None
        };
        if let Some(why) = why {
            let evidence = out_dir.join(format!(
                "{CHECKPOINT_FILE}.conflict-{}",
                crate::time::now_unix()
            ));
            let _ = crate::fsutil::write_atomic(&evidence, note.as_bytes(), 0o644);
            return Err(LogFork {
                kept,
                evidence,
                why,
                kept_note: old_note.to_string(),
                new_note: note.to_string(),
            });
        }
        if new.size == old.size && old.origin == new.origin {
            // The same tree: a note of it with more signature lines (the
            // witnesses' cosignatures) replaces the one kept.
            let lines = |n: &str| SignedNote::parse(n).map_or(0, |p| p.signatures.len());
            if lines(note) > lines(old_note) {
                let _ = crate::fsutil::write_atomic(&kept, note.as_bytes(), 0o644);
            }
            return Ok(Remembered::Same);
        }
    }
    let _ = crate::fsutil::write_atomic(&kept, note.as_bytes(), 0o644);
    Ok(Remembered::Kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::{Checkpoint, NoteSigner};

    fn node(l: &Hash, r: &Hash) -> Hash {
        let mut b = vec![1u8];
        b.extend_from_slice(l);
        b.extend_from_slice(r);
        openssl::sha::sha256(&b)
    }

    /// Two clients in one folder: the one with the older receipt finds the
    /// newer checkpoint kept. An older tree the kept one extends is no
    /// fork; one it cannot be shown to extend is.
    #[test]
    fn an_older_checkpoint_the_kept_one_extends_is_no_fork(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let signer = NoteSigner::new("test/log", openssl::pkey::PKey::generate_ed25519()?)?;
        let note = |size: u64, root: Hash| -> Result<String, Box<dyn std::error::Error>> {
            let text = Checkpoint {
                origin: "test/log".into(),
                size,
                root,
            }
            .text();
            Ok(signer.sign(&text)?)
        };
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let (one, two) = (note(1, a)?, note(2, node(&a, &b))?);
        let dir = tempfile::tempdir()?;
        let kept = dir.path().join(CHECKPOINT_FILE);
        std::fs::write(&kept, &two)?;
        let mut good = |old: u64, new: u64| -> Result<Vec<Hash>, super::super::ClientError> {
            assert_eq!((old, new), (1, 2));
            Ok(vec![b])
        };
        assert_eq!(
            remember(dir.path(), &one, &mut good).ok(),
            Some(Remembered::Same)
        );
        assert_eq!(std::fs::read_to_string(&kept)?, two, "the newer stays kept");
        let mut none = |_: u64, _: u64| -> Result<Vec<Hash>, super::super::ClientError> {
            Err(super::super::ClientError::Protocol("no proof".into()))
        };
        let fork = remember(dir.path(), &one, &mut none)
            .err()
            .ok_or("no fork")?;
        assert!(fork.why.contains("shrank from 2 to 1"), "{}", fork.why);
        let mut bad =
            |_: u64, _: u64| -> Result<Vec<Hash>, super::super::ClientError> { Ok(vec![a]) };
        assert!(remember(dir.path(), &one, &mut bad).is_err());
        Ok(())
    }
}
