//! Checkpoints signed with the log key, and the proofs that carry them:
//! what the server hands out (the tiles API's `/log/checkpoint`, a
//! receipt's `log_proof`). One note is signed per tree size and kept, so a
//! commit batch of many records costs one Ed25519 signature (and any host
//! signs the same bytes: Ed25519 is deterministic).

use std::sync::Mutex;

use super::checkpoint::{Checkpoint, TlogProof};
use super::merkle::{self, Hash, NodeId, TreeError};
use super::note::{NoteError, NoteSigner};

/// The log key and the last checkpoint it signed.
#[derive(Debug)]
pub struct CheckpointSigner {
    signer: NoteSigner,
    last: Mutex<Option<(u64, String)>>,
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
        }
    }

    /// The key.
    pub fn key(&self) -> &NoteSigner {
        &self.signer
    }

    /// The signed checkpoint of the tree of `size` leaves with `root`.
    pub fn checkpoint(&self, size: u64, root: Hash) -> Result<String, NoteError> {
        if let Ok(last) = self.last.lock() {
            if let Some((s, note)) = last.as_ref() {
                if *s == size {
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
            *last = Some((size, note.clone()));
        }
        Ok(note)
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
