//! Checkpoints signed with the log key, and the proofs that carry them:
//! what the server hands out (the tiles API's `/log/checkpoint`, a
//! receipt's `log_proof`). One note is signed per tree size and kept, so a
//! commit batch of many records costs one Ed25519 signature (and any host
//! signs the same bytes: Ed25519 is deterministic).
//!
//! Witnesses' cosignatures ([`super::cosignature`]) are kept here too, per
//! tree size: a checkpoint handed out for a size some witnesses have
//! cosigned carries their lines after the log's (verifiers that do not
//! know a witness skip its line). They come from the threads that ask the
//! witnesses (`crate::server::witnessing`), which this wakes whenever it
//! signs a new size; nothing here waits for a witness.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::checkpoint::{Checkpoint, TlogProof};
use super::merkle::{self, Hash, NodeId, TreeError};
use super::note::{NoteError, NoteSigner};

/// Cosigned sizes kept (older ones are of no use to a receipt or a
/// client any more: the newest cosigned tree extends them).
const COSIGNED_KEPT: usize = 16;

/// The cosignature lines of one tree, by witness name.
type Cosignatures = (Hash, BTreeMap<String, String>);

/// The log key, the last checkpoint it signed, and witnesses'
/// cosignatures.
#[derive(Debug)]
pub struct CheckpointSigner {
    signer: NoteSigner,
    /// The last note signed, by size and root: a root other than the
    /// cached one (a store restored from another history) is signed as
    /// it is, never answered with the other root's note.
    last: Mutex<Option<(u64, Hash, String)>>,
    cosigned: Mutex<BTreeMap<u64, Cosignatures>>,
    /// How many new sizes were signed (the witness threads wait on it).
    signed: Mutex<u64>,
    wake: Condvar,
}

/// Why a proof could not be made.
#[derive(Debug)]
pub enum ProofError<E> {
    /// Reading stored hashes failed.
    Read(E),
    /// The tree does not hold what was asked.
    Tree(TreeError),
    /// Signing the checkpoint failed.
    Sign(NoteError),
}

impl<E: std::fmt::Display> std::fmt::Display for ProofError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::Read(e) => write!(f, "reading the log: {e}"),
            ProofError::Tree(e) => write!(f, "{e}"),
            ProofError::Sign(e) => write!(f, "signing the checkpoint: {e}"),
        }
    }
}

impl<E> From<TreeError> for ProofError<E> {
    fn from(e: TreeError) -> Self {
        ProofError::Tree(e)
    }
}

impl CheckpointSigner {
    /// Signs with `signer` (its name is the log's origin).
    pub fn new(signer: NoteSigner) -> CheckpointSigner {
        CheckpointSigner {
            signer,
            last: Mutex::new(None),
            cosigned: Mutex::new(BTreeMap::new()),
            signed: Mutex::new(0),
            wake: Condvar::new(),
        }
    }

    /// Keeps witness `name`'s cosignature `line` (verified by the caller)
    /// of the tree of `size` leaves with `root`: checkpoints of that tree
    /// carry it from now on.
    pub fn add_cosignature(&self, size: u64, root: Hash, name: &str, line: String) {
        let Ok(mut all) = self.cosigned.lock() else {
            return;
        };
        let entry = all.entry(size).or_insert_with(|| (root, BTreeMap::new()));
        if entry.0 != root {
            // Two roots of one size can only come from a forked store;
            // the witness refuses the second anyway. Keep the first.
            log::error!("a cosignature of another root for tree size {size}; ignored");
            return;
        }
        entry.1.insert(name.to_string(), line);
        while all.len() > COSIGNED_KEPT {
            all.pop_first();
        }
    }

    /// The cosignature lines kept for the tree of `size` with `root`.
    pub fn cosignatures(&self, size: u64, root: &Hash) -> String {
        let Ok(all) = self.cosigned.lock() else {
            return String::new();
        };
        match all.get(&size) {
            Some((r, lines)) if r == root => lines.values().map(String::as_str).collect(),
            _ => String::new(),
        }
    }

    /// The count of new sizes signed so far.
    pub fn signed_count(&self) -> u64 {
        self.signed.lock().map_or(0, |n| *n)
    }

    /// Waits until a size newer than the `seen`-th is signed, or `timeout`;
    /// returns the count then.
    pub fn wait_signed(&self, seen: u64, timeout: Duration) -> u64 {
        let Ok(n) = self.signed.lock() else {
            return seen;
        };
        match self.wake.wait_timeout_while(n, timeout, |n| *n == seen) {
            Ok((n, _)) => *n,
            Err(_) => seen,
        }
    }

    /// Wakes every waiter of [`CheckpointSigner::wait_signed`] (e.g. to
    /// stop).
    pub fn wake_all(&self) {
        if let Ok(mut n) = self.signed.lock() {
            *n += 1;
        }
        self.wake.notify_all();
    }

    /// The key.
    pub fn key(&self) -> &NoteSigner {
        &self.signer
    }

    /// The signed checkpoint of the tree of `size` leaves with `root`,
    /// with the witnesses' cosignatures of it kept so far.
    pub fn checkpoint(&self, size: u64, root: Hash) -> Result<String, NoteError> {
        let mut note = self.log_signed(size, root)?;
        note.push_str(&self.cosignatures(size, &root));
        Ok(note)
    }

    /// The checkpoint of `size` and `root` signed by the log key alone.
    pub fn log_signed(&self, size: u64, root: Hash) -> Result<String, NoteError> {
        if let Ok(last) = self.last.lock() {
            if let Some((s, r, note)) = last.as_ref() {
                if *s == size && *r == root {
                    return Ok(note.clone());
                }
            }
        }
        let cp = Checkpoint {
            origin: self.signer.name().to_string(),
            size,
            root,
        };
        let note = self.signer.sign(&cp.text())?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((size, root, note.clone()));
        }
        self.wake_all();
        Ok(note)
    }

    /// The C2SP tlog-proof of entry `index` in the tree of `size` leaves
    /// with `root` whose inclusion `path` is already known (the commit that
    /// appended the entry made it).
    pub fn prove_path(
        &self,
        index: u64,
        size: u64,
        root: Hash,
        path: Vec<Hash>,
    ) -> Result<TlogProof, NoteError> {
        let checkpoint = self.checkpoint(size, root)?;
        Ok(TlogProof {
            index,
            path,
            checkpoint,
        })
    }

    /// The C2SP tlog-proof of entry `index` in the tree of `size` leaves
    /// with `root`, reading stored hashes with `fetch`.
    pub fn prove<E>(
        &self,
        index: u64,
        size: u64,
        root: Hash,
        fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
    ) -> Result<TlogProof, ProofError<E>> {
        let path = merkle::inclusion_proof(index, size, |ids: &[NodeId]| {
            fetch(ids).map_err(ProofError::Read)
        })?;
        let checkpoint = self.checkpoint(size, root).map_err(ProofError::Sign)?;
        Ok(TlogProof {
            index,
            path,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::cosignature::Cosigner;
    use crate::tlog::Checkpoint;
    use openssl::pkey::PKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_note_always_says_the_root_it_was_asked_for() -> TestResult {
        let signer = CheckpointSigner::new(NoteSigner::new("t/log", PKey::generate_ed25519()?)?);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let first = signer.log_signed(3, a)?;
        // Same size, another root (a store restored from another history):
        // not the cached note of the first.
        let second = signer.log_signed(3, b)?;
        let root_of = |note: &str| -> Result<Hash, Box<dyn std::error::Error>> {
            let text = crate::tlog::note::SignedNote::parse(note)?.text;
            Ok(Checkpoint::parse_text(text)?.root)
        };
        assert_eq!(root_of(&first)?, a);
        assert_eq!(root_of(&second)?, b);
        Ok(())
    }

    #[test]
    fn checkpoints_carry_the_cosignatures_of_their_own_tree_only() -> TestResult {
        let signer = CheckpointSigner::new(NoteSigner::new("t/log", PKey::generate_ed25519()?)?);
        let w = Cosigner::new("w.example", PKey::generate_ed25519()?)?;
        let (root3, root4) = ([3u8; 32], [4u8; 32]);
        let before = signer.signed_count();
        let plain = signer.checkpoint(3, root3)?;
        assert!(
            signer.signed_count() > before,
            "signing a new size wakes the witnesses"
        );
        let text = Checkpoint {
            origin: "t/log".into(),
            size: 3,
            root: root3,
        }
        .text();
        let line = w.cosign(&text, 5)?;
        signer.add_cosignature(3, root3, w.name(), line.clone());
        let cosigned = signer.checkpoint(3, root3)?;
        assert_eq!(cosigned, format!("{plain}{line}"));
        assert_eq!(w.verifier()?.verify(&cosigned)?, 5);
        signer.key().verifier()?.open(&cosigned)?;
        // Another tree of another size has none; another root of size 3
        // (a fork) gets none either.
        assert!(!signer.checkpoint(4, root4)?.contains("w.example"));
        assert_eq!(signer.cosignatures(3, &root4), "");
        signer.add_cosignature(3, root4, w.name(), line);
        assert_eq!(signer.cosignatures(3, &root4), "");
        Ok(())
    }
}
