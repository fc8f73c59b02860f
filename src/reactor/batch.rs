//! Which of the records waiting go into the next commit batch.
//!
//! Every 64 KiB chunk of an upload is a record, and a record waits for the
//! batch in flight and then for its own. With every record admitted, 20
//! uploads make each batch about 20 chunks (1.3 MB written and synced), and
//! an enrollment's certificate waits behind two of them. So a batch admits
//! at most [`CHUNK_BYTES_PER_BATCH`] of chunks; any other record (a
//! certificate, a receipt, a file's closing record) is always admitted: it
//! is never behind more than that. A batch that carries such a record
//! carries at most one chunk ([`CHUNK_BYTES_BESIDE_ANSWERS`]): someone waits
//! for its answer, so it is kept short. Chunks are admitted oldest first
//! and at least one per batch, so uploads keep their turn: a bounded share
//! for each, not a priority for either.

use std::collections::HashSet;

use crate::crypto::CHUNK_MAX;
use crate::store::Record;

/// Most chunk bytes in one batch: four full chunks. A batch then writes
/// and syncs at most 256 KiB of chunks (a few ms on a disk), and the
/// record of an enrollment that arrives meanwhile waits for that at most
/// twice (the batch in flight, then its own).
pub(super) const CHUNK_BYTES_PER_BATCH: usize = 4 * CHUNK_MAX;

/// Most chunk bytes in a batch that also carries a record someone awaits
/// an answer for (a certificate, a receipt): one chunk.
pub(super) const CHUNK_BYTES_BESIDE_ANSWERS: usize = CHUNK_MAX;

/// Whether someone waits for `record`'s answer (a certificate, a receipt):
/// anything but an upload's chunk or discard.
pub(super) fn awaits_answer(record: &Record) -> bool {
    !matches!(record, Record::Chunk(_) | Record::DiscardUpload { .. })
}

/// The cap for the next batch out of `pending`: [`CHUNK_BYTES_PER_BATCH`],
/// or [`CHUNK_BYTES_BESIDE_ANSWERS`] when a record other than a chunk or
/// a discard waits (one is always admitted, see [`take_batch`]).
pub(super) fn cap_for<T>(pending: &[(T, Record)]) -> usize {
    let answers = pending.iter().any(|(_, r)| awaits_answer(r));
    if answers {
        CHUNK_BYTES_BESIDE_ANSWERS
    } else {
        CHUNK_BYTES_PER_BATCH
    }
}

/// Whether the records waiting should wait for more: chunks only, fewer
/// bytes than a batch takes, while uploads have turns left to make more
/// (`more_to_come`). A batch's hand-over to the writer and back (a
/// wake-up and a switch each way) is then shared by a batch's worth of
/// chunks instead of paid per chunk (BENCHMARKS.md, "Chunks streamed to
/// the writer"). Anything else waiting, or no upload able to go on, and
/// the batch goes at once.
pub(super) fn gathering<T>(pending: &[(T, Record)], more_to_come: bool) -> bool {
    if !more_to_come || pending.is_empty() {
        return false;
    }
    let mut bytes = 0usize;
    for (_, r) in pending {
        match r {
            Record::Chunk(c) => bytes = bytes.saturating_add(c.data.len()),
            _ => return false,
        }
    }
    bytes < CHUNK_BYTES_PER_BATCH
}

/// The upload a record belongs to, if it is one's.
fn upload_of(record: &Record) -> Option<i64> {
    match record {
        Record::Chunk(c) => Some(c.upload_id),
        Record::Upload(u) => Some(u.upload_id),
        Record::DiscardUpload { upload_id } => Some(*upload_id),
        Record::Cert(_) | Record::Report(_) | Record::Guess(_) => None,
    }
}

/// Takes the next batch out of `pending` (in arrival order), leaving the
/// rest in order for a later one:
///
/// - chunks, oldest first, while their bytes fit in `cap`; always the
///   first, however big, so that uploads progress; once one chunk waits,
///   every later chunk waits too (no younger upload overtakes an older);
/// - every other record, except one of an upload whose chunk waits (a
///   discard of an upload cut off must come after its chunks, as batches
///   commit in order).
pub(super) fn take_batch<T>(pending: &mut Vec<(T, Record)>, cap: usize) -> Vec<(T, Record)> {
    let mut batch = Vec::with_capacity(pending.len());
    let mut left = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut deferring = false;
    // Uploads with a record left behind: their later records wait too.
    let mut held: HashSet<i64> = HashSet::new();
    for (token, record) in pending.drain(..) {
        let upload = upload_of(&record);
        let admit = match &record {
            _ if upload.is_some_and(|u| held.contains(&u)) => false,
            Record::Chunk(c) => {
                let fits = chunk_bytes == 0 || chunk_bytes + c.data.len() <= cap;
                if !deferring && fits {
                    chunk_bytes += c.data.len();
                    true
                } else {
                    deferring = true;
                    false
                }
            }
            _ => true,
        };
        if admit {
            batch.push((token, record));
        } else {
            if let Some(u) = upload {
                held.insert(u);
            }
            left.push((token, record));
        }
    }
    *pending = left;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChunkRecord;

    fn chunk(upload_id: i64, seq: u64, len: usize) -> Record {
        Record::Chunk(ChunkRecord {
            upload_id,
            seq,
            data: vec![0; len],
        })
    }

    fn report(id: u64) -> Record {
        crate::testing::report_record(id)
    }

    fn chunk_bytes(batch: &[(u32, Record)]) -> usize {
        batch
            .iter()
            .map(|(_, r)| match r {
                Record::Chunk(c) => c.data.len(),
                _ => 0,
            })
            .sum()
    }

    fn tokens(batch: &[(u32, Record)]) -> Vec<u32> {
        batch.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn a_batch_never_holds_more_than_the_cap_of_chunk_bytes() {
        // 20 uploads, one chunk each, as 20 concurrent uploads make them.
        let mut pending: Vec<(u32, Record)> = (0..20)
            .map(|i| (i, chunk(i64::from(i), 0, CHUNK_MAX)))
            .collect();
        let mut batches = Vec::new();
        // Bounded: each batch takes at least one record.
        for _ in 0..20 {
            if pending.is_empty() {
                break;
            }
            let batch = take_batch(&mut pending, CHUNK_BYTES_PER_BATCH);
            assert!(chunk_bytes(&batch) <= CHUNK_BYTES_PER_BATCH);
            batches.push(tokens(&batch));
        }
        assert!(pending.is_empty());
        assert_eq!(batches.len(), 5);
        // Oldest first, nothing lost or repeated.
        assert_eq!(batches.concat(), (0..20).collect::<Vec<u32>>());
    }

    #[test]
    fn a_record_that_is_not_a_chunk_is_admitted_though_chunks_wait() {
        let mut pending: Vec<(u32, Record)> = (0..10)
            .map(|i| (i, chunk(i64::from(i), 0, CHUNK_MAX)))
            .collect();
        pending.push((10, report(7)));
        pending.push((11, chunk(11, 0, CHUNK_MAX)));
        let batch = take_batch(&mut pending, CHUNK_BYTES_PER_BATCH);
        assert_eq!(tokens(&batch), vec![0, 1, 2, 3, 10]);
        // The rest waits in its order.
        assert_eq!(tokens(&pending), vec![4, 5, 6, 7, 8, 9, 11]);
    }

    #[test]
    fn uploads_progress_whatever_the_cap_and_the_other_records() {
        // A cap below one chunk still admits one chunk per batch, even
        // with other records arriving before every batch.
        let mut pending: Vec<(u32, Record)> =
            vec![(0, chunk(1, 0, CHUNK_MAX)), (1, chunk(2, 0, 10))];
        let mut order = Vec::new();
        for i in 0..3 {
            pending.push((100 + i, report(u64::from(i))));
            let batch = take_batch(&mut pending, 1);
            assert_eq!(
                batch
                    .iter()
                    .filter(|(_, r)| matches!(r, Record::Chunk(_)))
                    .count(),
                usize::from(i < 2)
            );
            order.extend(tokens(&batch));
        }
        assert_eq!(order, vec![0, 100, 1, 101, 102]);
    }

    #[test]
    fn a_batch_with_a_record_awaited_carries_one_chunk() {
        let mut pending: Vec<(u32, Record)> = (0..6)
            .map(|i| (i, chunk(i64::from(i), 0, CHUNK_MAX)))
            .collect();
        assert_eq!(cap_for(&pending), CHUNK_BYTES_PER_BATCH);
        pending.push((6, Record::DiscardUpload { upload_id: 9 }));
        assert_eq!(cap_for(&pending), CHUNK_BYTES_PER_BATCH);
        pending.push((7, report(1)));
        let cap = cap_for(&pending);
        let batch = take_batch(&mut pending, cap);
        assert_eq!(tokens(&batch), vec![0, 6, 7]);
        // Then the chunks have full batches again.
        let cap = cap_for(&pending);
        assert_eq!(tokens(&take_batch(&mut pending, cap)), vec![1, 2, 3, 4]);
    }

    #[test]
    fn chunks_wait_for_a_batchs_worth_only_while_uploads_can_make_more() {
        let mut pending = vec![(1, chunk(1, 0, CHUNK_MAX)), (2, chunk(2, 0, CHUNK_MAX))];
        assert!(gathering(&pending, true), "two chunks: more may come");
        assert!(!gathering(&pending, false), "no upload can go on: now");
        pending.push((1, chunk(1, 1, CHUNK_MAX)));
        pending.push((2, chunk(2, 1, CHUNK_MAX)));
        assert!(!gathering(&pending, true), "a batch's worth: now");
        pending.truncate(1);
        pending.push((3, report(7)));
        assert!(!gathering(&pending, true), "someone awaits a record: now");
        let discard = vec![(1, Record::DiscardUpload { upload_id: 1 })];
        assert!(!gathering(&discard, true), "a discard goes at once");
        let none: Vec<(u32, Record)> = Vec::new();
        assert!(!gathering(&none, true));
    }

    #[test]
    fn a_files_record_waits_for_its_streamed_chunks_left_behind() {
        // Streamed, an upload's chunks and then its record are all waiting
        // at once: the record never commits before the last of them.
        let records = crate::testing::upload_file_records(9, 1, &vec![7; 5 * CHUNK_MAX]);
        let mut pending: Vec<(u32, Record)> = records.into_iter().map(|r| (1, r)).collect();
        let cap = cap_for(&pending);
        let first = take_batch(&mut pending, cap);
        assert!(first.iter().all(|(_, r)| matches!(r, Record::Chunk(_))));
        assert_eq!(
            chunk_bytes(&first),
            CHUNK_MAX,
            "one chunk beside an awaited record"
        );
        let mut seqs = Vec::new();
        while !pending.is_empty() {
            let cap = cap_for(&pending);
            for (_, r) in take_batch(&mut pending, cap) {
                seqs.push(match r {
                    Record::Chunk(c) => c.seq as i64,
                    _ => -1,
                });
            }
        }
        assert_eq!(seqs, vec![1, 2, 3, 4, -1], "in order, the record last");
    }

    #[test]
    fn a_discard_waits_for_its_uploads_chunk_left_behind() {
        let mut pending: Vec<(u32, Record)> = vec![
            (0, chunk(1, 0, CHUNK_MAX)),
            (1, chunk(2, 5, CHUNK_MAX)),
            (1, Record::DiscardUpload { upload_id: 2 }),
            (2, Record::DiscardUpload { upload_id: 3 }),
        ];
        let batch = take_batch(&mut pending, CHUNK_MAX);
        // Upload 3 has nothing waiting: its discard goes now.
        assert_eq!(tokens(&batch), vec![0, 2]);
        let batch = take_batch(&mut pending, CHUNK_MAX);
        assert!(matches!(
            batch[0].1,
            Record::Chunk(ChunkRecord { upload_id: 2, .. })
        ));
        assert!(matches!(batch[1].1, Record::DiscardUpload { upload_id: 2 }));
        assert!(pending.is_empty());
    }
}
