//! The log proofs the CA hands out in protocol version 3: a certificate's
//! inclusion proof (with the signed checkpoint it leads to) and the
//! consistency proof from the tree the student last saw to that one, read
//! from the store after the certificate's record (and its entry) commit.

use crate::store::{Storage, StoreError};
use crate::tlog::merkle::{self, Hash, NodeId};
use crate::tlog::signer::ProofError;
use crate::tlog::CheckpointSigner;

use super::error::ProtocolError;

/// A record's entry and its proofs.
#[derive(Debug)]
pub(super) struct Proven {
    /// The entry's bytes.
    pub entry: Vec<u8>,
    /// The C2SP tlog-proof text.
    pub proof: String,
    /// The tree size the proof's checkpoint has.
    pub size: u64,
    /// The consistency proof from the size she announced, concatenated.
    pub consistency: Vec<u8>,
}

fn concat(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.iter().copied()).collect()
}

/// The entry logging `record` (e.g. `cert:<serial>`), proved against the
/// current tree, and the consistency proof from `known` entries to it
/// (empty when `known` is 0, the same size, or larger than the tree: the
/// client then sees for itself that the log did not grow from hers).
/// `None` when the record has no entry.
pub(super) fn prove_record(
    store: &mut (dyn Storage + Send),
    signer: &CheckpointSigner,
    record: &str,
    known: u64,
) -> Result<Option<Proven>, ProofError<StoreError>> {
    let Some(index) = store.log_index_of(record).map_err(ProofError::Read)? else {
        return Ok(None);
    };
    let head = store.log_head().map_err(ProofError::Read)?;
    let entry = store
        .log_entries(index, index + 1)
        .map_err(ProofError::Read)?
        .pop()
        .ok_or(ProofError::Tree(merkle::TreeError::OutOfRange {
            what: format!("entry {index}"),
            size: head.size,
        }))?;
    let proof = signer.prove(index, head.size, head.root, |ids: &[NodeId]| {
        store.log_nodes(ids)
    })?;
    let consistency = if known > 0 && known < head.size {
        merkle::consistency_proof(known, head.size, |ids: &[NodeId]| {
            store.log_nodes(ids).map_err(ProofError::Read)
        })?
    } else {
        Vec::new()
    };
    Ok(Some(Proven {
        entry,
        proof: proof.encode(),
        size: head.size,
        consistency: concat(&consistency),
    }))
}

/// The consistency proof from `old` to `new` entries, for anyone who asks
/// (it proves nothing by itself: the asker checks it against two signed
/// checkpoints it holds).
pub(super) fn consistency(
    store: &mut (dyn Storage + Send),
    old: u64,
    new: u64,
) -> Result<Vec<u8>, ProtocolError> {
    let head = store
        .log_head()
        .map_err(|e| ProtocolError::store("reading the log", e))?;
    if old > new || new > head.size {
        return Err(ProtocolError::LogRange {
            old,
            new,
            size: head.size,
        });
    }
    let proof = merkle::consistency_proof(old, new, |ids: &[NodeId]| store.log_nodes(ids))
        .map_err(|e| ProtocolError::store("reading the log", e))?;
    Ok(concat(&proof))
}
