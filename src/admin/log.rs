//! `server log verify`: the transparency log checked against itself and
//! against the records, from the store alone. Every stored hash is
//! recomputed from the entries, the head's root from the hashes, and each
//! certificate, report and uploaded file matched to its one leaf (and each leaf to its
//! record). The first thing that does not match is named: a row deleted or
//! edited behind certboard's back.

use std::collections::HashMap;
use std::fmt;

use crate::store::{Storage, StoreError};
use crate::tlog::merkle::{self, Hash, NodeId};
use crate::tlog::Leaf;

/// Entries read per query while verifying.
const BATCH: u64 = 4096;

/// What `server log verify` found wrong (the first problem only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogProblem {
    /// An entry that does not decode.
    BadEntry {
        /// Its index.
        index: u64,
        /// Why.
        why: String,
    },
    /// A stored hash differs from the one the entries give.
    StoredHash {
        /// Its level.
        level: u8,
        /// Its index.
        index: u64,
    },
    /// The head's root is not the root of the entries.
    HeadRoot {
        /// The head's size.
        size: u64,
    },
    /// A record with no leaf.
    RecordWithoutLeaf(String),
    /// A leaf with no record, or whose record says something else.
    LeafWithoutRecord {
        /// Its index.
        index: u64,
        /// What it claims.
        what: String,
    },
    /// Two leaves for one record.
    DuplicateLeaf {
        /// The second's index.
        index: u64,
        /// The record.
        what: String,
    },
}

impl fmt::Display for LogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogProblem::BadEntry { index, why } => write!(f, "entry {index} is malformed: {why}"),
            LogProblem::StoredHash { level, index } => write!(
                f,
                "the stored hash at level {level}, index {index} is not the hash of the entries"
            ),
            LogProblem::HeadRoot { size } => write!(
                f,
                "the stored tree head (size {size}) is not the root of the entries"
            ),
            LogProblem::RecordWithoutLeaf(what) => {
                write!(f, "{what} is recorded but not in the log (added behind certboard's back?)")
            }
            LogProblem::LeafWithoutRecord { index, what } => write!(
                f,
                "log entry {index} ({what}) has no matching record (deleted or edited behind certboard's back?)"
            ),
            LogProblem::DuplicateLeaf { index, what } => {
                write!(f, "log entry {index} logs {what} a second time")
            }
        }
    }
}

/// What a clean verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerified {
    /// Entries checked.
    pub size: u64,
    /// Their root.
    pub root: Hash,
    /// Certificates matched.
    pub certs: usize,
    /// Reports matched.
    pub reports: usize,
    /// Uploaded files (protocol version 3) matched.
    pub uploads: usize,
}

/// A record's identity in the log and what its leaf must say.
fn cert_key(serial: &str) -> String {
    format!("certificate {serial}")
}

fn report_key(receipt: u64) -> String {
    format!("report with receipt {receipt}")
}

fn upload_key(receipt: u64) -> String {
    format!("file with receipt {receipt}")
}

/// The part of a leaf its record fixes: a certificate's hash; a report's
/// or a file's hash, size, assignment and late flag (so a submission moved
/// to another assignment, or its lateness edited, no longer matches its
/// leaf).
#[derive(Debug, PartialEq, Eq)]
enum Content {
    Cert([u8; 32]),
    Submission {
        sha256: [u8; 32],
        size: u64,
        assignment: String,
        late: bool,
    },
}

/// Verifies the log in `store` (see the module's header).
pub fn verify(store: &mut dyn Storage) -> Result<Result<LogVerified, LogProblem>, StoreError> {
    let head = store.log_head()?;
    // What the records say each leaf must hold, by record.
    let mut expected: HashMap<String, Content> = HashMap::new();
    let certs = store.certs()?;
    for c in &certs {
        expected.insert(
            cert_key(&c.serial.to_string()),
            Content::Cert(openssl::sha::sha256(&c.der)),
        );
    }
    let reports = store.reports()?;
    for r in &reports {
        expected.insert(
            report_key(r.receipt_id),
            Content::Submission {
                sha256: openssl::sha::sha256(r.text.as_bytes()),
                size: r.text.len() as u64,
                assignment: r.assignment.clone(),
                late: r.late_by.is_some(),
            },
        );
    }
    let uploads = store.uploads()?;
    for u in &uploads {
        expected.insert(
            upload_key(u.receipt_id),
            Content::Submission {
                sha256: u.sha256,
                size: u.size,
                assignment: u.assignment.clone(),
                late: u.late_seconds > 0,
            },
        );
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut made: HashMap<NodeId, Hash> = HashMap::new();
    let mut size = 0u64;
    while size < head.size {
        let to = (size + BATCH).min(head.size);
        let entries = store.log_entries(size, to)?;
        let hashes: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        for (offset, entry) in entries.iter().enumerate() {
            let index = size + offset as u64;
            let leaf = match Leaf::decode(entry) {
                Ok(l) => l,
                Err(e) => {
                    return Ok(Err(LogProblem::BadEntry {
                        index,
                        why: e.to_string(),
                    }))
                }
            };
            let (key, content) = match leaf {
                Leaf::Cert {
                    serial,
                    cert_sha256,
                    ..
                } => (cert_key(&serial), Content::Cert(cert_sha256)),
                Leaf::Submission {
                    receipt_id,
                    sha256,
                    size,
                    assignment,
                    late,
                    ..
                } => {
                    let content = Content::Submission {
                        sha256,
                        size,
                        assignment,
                        late,
                    };
                    // One leaf kind for both: a file's leaf is the one its
                    // upload record matches (their receipt ids are drawn
                    // apart, so a report's is tried first).
                    let (report, upload) = (report_key(receipt_id), upload_key(receipt_id));
                    let key = match (expected.get(&report), expected.get(&upload)) {
                        (Some(r), _) if *r == content => report,
                        (_, Some(u)) if *u == content => upload,
                        (None, Some(_)) => upload,
                        _ => report,
                    };
                    (key, content)
                }
            };
            if expected.get(&key) != Some(&content) {
                return Ok(Err(LogProblem::LeafWithoutRecord { index, what: key }));
            }
            if seen.insert(key.clone(), index).is_some() {
                return Ok(Err(LogProblem::DuplicateLeaf { index, what: key }));
            }
        }
        let new = merkle::append(size, &hashes, |ids: &[NodeId]| {
            ids.iter()
                .map(|id| {
                    made.get(id)
                        .copied()
                        .ok_or(merkle::TreeError::MissingNode(*id))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(StoreError::Log)?;
        made.extend(new.iter().copied());
        size = to;
    }
    // Every stored hash, compared with the one the entries give.
    let mut ids: Vec<NodeId> = made.keys().copied().collect();
    ids.sort_unstable();
    for chunk in ids.chunks(BATCH as usize) {
        let stored = store.log_nodes(chunk)?;
        for (id, h) in chunk.iter().zip(stored) {
            if made.get(id) != Some(&h) {
                return Ok(Err(LogProblem::StoredHash {
                    level: id.level,
                    index: id.index,
                }));
            }
        }
    }
    let root = merkle::root(head.size, |ids: &[NodeId]| {
        ids.iter()
            .map(|id| {
                made.get(id)
                    .copied()
                    .ok_or(merkle::TreeError::MissingNode(*id))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(StoreError::Log)?;
    if root != head.root {
        return Ok(Err(LogProblem::HeadRoot { size: head.size }));
    }
    // Records without a leaf, in a stable order (certificates first).
    for c in &certs {
        let key = cert_key(&c.serial.to_string());
        if !seen.contains_key(&key) {
            return Ok(Err(LogProblem::RecordWithoutLeaf(key)));
        }
    }
    for r in &reports {
        let key = report_key(r.receipt_id);
        if !seen.contains_key(&key) {
            return Ok(Err(LogProblem::RecordWithoutLeaf(key)));
        }
    }
    for u in &uploads {
        let key = upload_key(u.receipt_id);
        if !seen.contains_key(&key) {
            return Ok(Err(LogProblem::RecordWithoutLeaf(key)));
        }
    }
    Ok(Ok(LogVerified {
        size: head.size,
        root,
        certs: certs.len(),
        reports: reports.len(),
        uploads: uploads.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::Serial;
    use crate::store::{Origin, Record, ReportRecord, SqliteStore};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn report(id: u64, text: &str) -> Result<Record, crate::ca::SerialError> {
        Ok(Record::Report(ReportRecord {
            receipt_id: id,
            sid: "1155000001".into(),
            serial: Serial::parse_hex("0A")?,
            received_at: 100,
            text: text.into(),
            origin: Origin::Certboard,
            assignment: crate::store::DEFAULT_ASSIGNMENT.into(),
            late_by: None,
        }))
    }

    fn with_reports(
        n: u64,
    ) -> Result<(tempfile::TempDir, SqliteStore), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        for id in 1..=n {
            s.commit(&[report(id, &format!("report {id}"))?])?;
        }
        Ok((dir, s))
    }

    fn raw(dir: &tempfile::TempDir) -> rusqlite::Result<rusqlite::Connection> {
        rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE))
    }

    #[test]
    fn a_clean_log_verifies() -> TestResult {
        let (_d, mut s) = with_reports(20)?;
        let v = verify(&mut s)?.map_err(|p| p.to_string())?;
        assert_eq!((v.size, v.reports), (20, 20));
        Ok(())
    }

    /// An uploaded file (protocol version 3) is matched to its own leaf;
    /// its size or lateness edited, or its row deleted, is named.
    #[test]
    fn an_uploaded_file_is_matched_to_its_leaf() -> TestResult {
        use crate::store::{ChunkRecord, UploadRecord};
        let (d, mut s) = with_reports(2)?;
        let data = b"the file".to_vec();
        s.commit(&[
            Record::Chunk(ChunkRecord {
                upload_id: 77,
                seq: 0,
                data: data.clone(),
            }),
            Record::Upload(UploadRecord {
                receipt_id: 9,
                upload_id: 77,
                sid: "1155000001".into(),
                serial: Serial::parse_hex("0A")?,
                received_at: 200,
                assignment: "hw1".into(),
                file_name: "a.pdf".into(),
                size: data.len() as u64,
                sha256: openssl::sha::sha256(&data),
                chunks: 1,
                late_seconds: 30,
            }),
        ])?;
        let v = verify(&mut s)?.map_err(|p| p.to_string())?;
        assert_eq!((v.size, v.reports, v.uploads), (3, 2, 1));
        raw(&d)?.execute("UPDATE uploads SET size = 9 WHERE receipt_id = 9", [])?;
        assert_eq!(
            verify(&mut s)?,
            Err(LogProblem::LeafWithoutRecord {
                index: 2,
                what: "file with receipt 9".into()
            })
        );
        raw(&d)?.execute("UPDATE uploads SET size = 8, late_seconds = 0", [])?;
        assert!(verify(&mut s)?.is_err(), "lateness edited");
        raw(&d)?.execute("UPDATE uploads SET late_seconds = 30", [])?;
        assert_eq!(verify(&mut s)?.map(|v| v.uploads), Ok(1));
        raw(&d)?.execute("DELETE FROM uploads", [])?;
        assert!(verify(&mut s)?.is_err(), "row deleted");
        Ok(())
    }

    #[test]
    fn a_record_edited_or_deleted_behind_its_back_is_named() -> TestResult {
        let (d, mut s) = with_reports(5)?;
        raw(&d)?.execute(
            "UPDATE reports SET text = 'forged' WHERE receipt_id = 3",
            [],
        )?;
        assert_eq!(
            verify(&mut s)?,
            Err(LogProblem::LeafWithoutRecord {
                index: 2,
                what: "report with receipt 3".into()
            })
        );
        let (d, mut s) = with_reports(5)?;
        raw(&d)?.execute("DELETE FROM reports WHERE receipt_id = 4", [])?;
        assert!(matches!(
            verify(&mut s)?,
            Err(LogProblem::LeafWithoutRecord { index: 3, .. })
        ));
        let (d, mut s) = with_reports(5)?;
        raw(&d)?.execute(
            "INSERT INTO reports (receipt_id, sid, serial, received_at, text, origin)
             VALUES (99, '1155000001', '0A', 1, 'sneaked in', 'certboard')",
            [],
        )?;
        assert_eq!(
            verify(&mut s)?,
            Err(LogProblem::RecordWithoutLeaf(
                "report with receipt 99".into()
            ))
        );
        Ok(())
    }

    /// A report's leaf carries its assignment and lateness: a late report
    /// verifies as late, and one moved to another assignment or made on
    /// time behind certboard's back no longer matches its leaf.
    #[test]
    fn a_reports_assignment_and_lateness_are_checked_against_its_leaf() -> TestResult {
        let (d, mut s) = with_reports(2)?;
        let Record::Report(mut late) = report(3, "late one")? else {
            return Err("not a report".into());
        };
        late.assignment = "hw1".into();
        late.late_by = Some(90);
        s.commit(&[Record::Report(late)])?;
        let leaf = Leaf::decode(&s.log_entries(2, 3)?[0])?;
        assert!(
            matches!(&leaf, Leaf::Submission { assignment, late: true, .. } if assignment == "hw1"),
            "{leaf:?}"
        );
        assert_eq!(verify(&mut s)?.map(|v| v.reports), Ok(3));
        raw(&d)?.execute("UPDATE reports SET late_by = NULL WHERE receipt_id = 3", [])?;
        assert_eq!(
            verify(&mut s)?,
            Err(LogProblem::LeafWithoutRecord {
                index: 2,
                what: "report with receipt 3".into()
            })
        );
        raw(&d)?.execute(
            "UPDATE reports SET late_by = 90, assignment = 'lab' WHERE receipt_id = 3",
            [],
        )?;
        assert!(matches!(
            verify(&mut s)?,
            Err(LogProblem::LeafWithoutRecord { index: 2, .. })
        ));
        raw(&d)?.execute(
            "UPDATE reports SET assignment = 'hw1' WHERE receipt_id = 3",
            [],
        )?;
        assert_eq!(verify(&mut s)?.map(|v| v.reports), Ok(3));
        Ok(())
    }

    #[test]
    fn a_rewritten_entry_or_hash_is_named() -> TestResult {
        let (d, mut s) = with_reports(5)?;
        raw(&d)?.execute(
            "UPDATE tlog_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 0",
            [],
        )?;
        assert_eq!(
            verify(&mut s)?,
            Err(LogProblem::StoredHash { level: 1, index: 0 })
        );
        let (d, mut s) = with_reports(5)?;
        raw(&d)?.execute("DELETE FROM tlog_entries WHERE idx = 4", [])?;
        assert!(verify(&mut s).is_err() || verify(&mut s)?.is_err());
        Ok(())
    }
}
