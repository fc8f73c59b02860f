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
use crate::tlog::merkle::{leaf_hash, verify_inclusion};
use crate::tlog::note::SignedNote;
use crate::tlog::{Checkpoint, CheckpointError, Leaf, NoteError, TlogProof};

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

/// A log that does not extend what she saw before.
#[derive(Debug)]
pub struct LogFork {
    /// The checkpoint she had kept.
    pub kept: PathBuf,
    /// The conflicting one, now saved beside it.
    pub evidence: PathBuf,
    /// What conflicts.
    pub why: String,
}

/// Compares `note` with the latest checkpoint kept in `out_dir` and keeps
/// the newer. Same size and another root, or a smaller tree: a fork.
pub(crate) fn remember(out_dir: &Path, note: &str) -> Result<(), LogFork> {
    let kept = out_dir.join(CHECKPOINT_FILE);
    let new = match checkpoint_of(note) {
        Ok(c) => c,
        // Checked already by check_inclusion.
        Err(_) => return Ok(()),
    };
    let old_note = fs::read_to_string(&kept).ok();
    if let Some(old) = old_note.as_deref().and_then(|n| checkpoint_of(n).ok()) {
        let why = if old.origin != new.origin {
            None
        } else if new.size == old.size && new.root != old.root {
            Some(format!(
                "two different trees of {} entries (roots differ)",
                new.size
            ))
        } else if new.size < old.size {
            Some(format!(
                "the log shrank from {} to {} entries",
                old.size, new.size
            ))
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
            });
        }
        if new.size == old.size {
            return Ok(());
        }
    }
    let _ = crate::fsutil::write_atomic(&kept, note.as_bytes(), 0o644);
    Ok(())
}
