//! The log proofs the CA hands out in protocol version 3: a certificate's
//! inclusion proof (with the signed checkpoint it leads to) and the
//! consistency proof from the tree the student last saw to that one, read
//! from the store after the certificate's record (and its entry) commit.

use std::collections::HashMap;

use crate::store::tlog::Logged;
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
/// tree its commit left (`logged`, from the commit thread; looked up when
/// `None`: then against the current tree), and the consistency proof from
/// `known` entries to it (empty when `known` is 0, the same size, or
/// larger than the tree: the client then sees for itself that the log did
/// not grow from hers). `None` when the record has no entry. The entry and
/// every hash both proofs need are read together
/// ([`Storage::log_entry_and_nodes`]: one read transaction).
pub(super) fn prove_record(
    store: &mut (dyn Storage + Send),
    signer: &CheckpointSigner,
    record: &str,
    logged: Option<Logged>,
    known: u64,
) -> Result<Option<Proven>, ProofError<StoreError>> {
    // A version 3 enrollment reads its entry, and its consistency proof's
    // hashes, whatever: the inclusion path is read with them.
    let Logged { index, head, .. } = match logged {
        Some(l) => l,
        None => {
            let Some(index) = store.log_index_of(record).map_err(ProofError::Read)? else {
                return Ok(None);
            };
            Logged {
                index,
                head: store.log_head().map_err(ProofError::Read)?,
                path: None,
            }
        }
    };
    if index >= head.size {
        return Err(ProofError::Tree(merkle::TreeError::OutOfRange {
            what: format!("entry {index}"),
            size: head.size,
        }));
    }
    let mut entry = None;
    // The inclusion proof asks for its hashes inside the consistency
    // proof's request for its own, so that one read serves both:
    // `include(for_consistency)` makes the inclusion proof and hands back
    // the consistency proof's hashes read with it.
    let mut include = |for_consistency: &[NodeId]| {
        let mut consistency_hashes = None;
        let read = |for_inclusion: &[NodeId]| -> Result<Vec<Hash>, StoreError> {
            let mut all: Vec<NodeId> = for_inclusion
                .iter()
                .chain(for_consistency)
                .copied()
                .collect();
            all.sort_unstable();
            all.dedup();
            let (e, hashes) = store.log_entry_and_nodes(index, &all)?;
            entry = Some(e);
            let found: HashMap<NodeId, Hash> = all.into_iter().zip(hashes).collect();
            let pick = |ids: &[NodeId]| -> Result<Vec<Hash>, StoreError> {
                ids.iter()
                    .map(|id| {
                        found
                            .get(id)
                            .copied()
                            .ok_or(StoreError::Log(merkle::TreeError::MissingNode(*id)))
                    })
                    .collect()
            };
            consistency_hashes = Some(pick(for_consistency)?);
            pick(for_inclusion)
        };
        let made = signer.prove(index, head.size, head.root, read);
        (made, consistency_hashes)
    };
    let not_read = || -> ProofError<StoreError> {
        ProofError::Tree(merkle::TreeError::MissingNode(NodeId::new(0, index)))
    };
    let (proof, consistency) = if known > 0 && known < head.size {
        let mut inclusion = None;
        let consistency = merkle::consistency_proof(known, head.size, |ids: &[NodeId]| {
            let (made, hashes) = include(ids);
            inclusion = Some(made?);
            hashes.ok_or_else(not_read)
        })?;
        (inclusion.ok_or_else(not_read)?, consistency)
    } else {
        (include(&[]).0?, Vec::new())
    };
    let entry = entry.ok_or_else(not_read)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, SqliteStore};
    use crate::tlog::merkle::{leaf_hash, verify_consistency};
    use crate::tlog::{Checkpoint, NoteSigner, TlogProof};
    use openssl::pkey::PKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn report(id: u64) -> Result<Record, Box<dyn std::error::Error>> {
        Ok(crate::testing::report_record(id))
    }

    /// The entry, its inclusion proof and the consistency proof from the
    /// size she knew, read together, verify; the same whether the commit
    /// said where the entry went or it was looked up; and against the head
    /// the commit left, not a later one.
    #[test]
    fn an_entry_is_proved_from_one_read_with_its_consistency() -> TestResult {
        let mut store = SqliteStore::in_memory()?;
        let mut appended = Vec::new();
        for id in 1..=13u64 {
            appended.push(store.commit_logged(&[report(id)?])?.ok_or("no append")?);
        }
        let key = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let verifier = key.verifier()?;
        let signer = CheckpointSigner::new(key);
        let entries = store.log_entries(0, 13)?;
        let heads: Vec<Hash> = {
            let mut roots = Vec::new();
            for size in 1..=13u64 {
                roots.push(merkle::root(size, |ids: &[NodeId]| store.log_nodes(ids))?);
            }
            roots
        };
        for (index, known) in [(6u64, 3u64), (6, 0), (6, 7), (0, 1), (12, 5)] {
            let a = &appended[index as usize];
            let logged = Logged {
                index,
                head: crate::store::tlog::Head {
                    size: a.size,
                    root: a.root,
                },
                path: None,
            };
            let key = crate::store::tlog::report_record_key(index + 1);
            for given in [Some(logged), None] {
                let p = prove_record(&mut store, &signer, &key, given.clone(), known)
                    .map_err(|e| e.to_string())?
                    .ok_or("no entry")?;
                assert_eq!(p.entry, entries[index as usize]);
                let proof = TlogProof::parse(&p.proof)?;
                let cp: Checkpoint = proof.verify(&leaf_hash(&p.entry), &verifier, "test/log")?;
                // Handed: the head its commit left; looked up: the latest.
                let size = if given.is_some() { index + 1 } else { 13 };
                assert_eq!((p.size, cp.size), (size, size));
                let hashes: Vec<Hash> = p
                    .consistency
                    .chunks(32)
                    .map(|c| c.try_into())
                    .collect::<Result<_, _>>()?;
                if known > 0 && known < size {
                    assert!(verify_consistency(
                        known,
                        &heads[known as usize - 1],
                        size,
                        &cp.root,
                        &hashes
                    ));
                } else {
                    assert!(hashes.is_empty());
                }
            }
        }
        let none = prove_record(&mut store, &signer, "report:99", None, 0);
        assert!(matches!(none, Ok(None)), "{none:?}");
        Ok(())
    }
}
