//! The transparency log's tables, in both engines, written inside the
//! transaction that writes the records the leaves describe: a record is
//! never committed without its leaf, nor a leaf without its record.
//!
//! - `tlog_entries (idx, data)`: the leaves, in order, from 0 with no gap.
//! - `tlog_nodes (level, idx, hash)`: every complete subtree's hash
//!   ([`crate::tlog::merkle`]); tiles are ranges of one level.
//! - `tlog_head (size, root)`: the tree now. In PostgreSQL the append locks
//!   this one row (`FOR UPDATE`) first, so hosts append one batch at a
//!   time: one sequence of indexes, and never two trees of one size.

use std::collections::HashMap;

use postgres::Transaction as PgTransaction;
use rusqlite::{params, OptionalExtension, Transaction as SqlTransaction};

use super::{Origin, Record, StoreError};
use crate::tlog::merkle::{self, Hash, NodeId, TreeError};
use crate::tlog::{Authorisation, Leaf};

/// The log's name of a certificate's record.
pub fn cert_record_key(serial: &str) -> String {
    format!("cert:{serial}")
}

/// The log's name of a report's record.
pub fn report_record_key(receipt_id: u64) -> String {
    format!("report:{receipt_id}")
}

/// The log's name of an uploaded file's record (protocol version 3). Its
/// own prefix: upload receipt ids are drawn apart from reports', so a
/// shared `report:` name could collide.
pub fn upload_record_key(receipt_id: u64) -> String {
    format!("upload:{receipt_id}")
}

/// Whether a record has a leaf of its own ([`leaves_of`] makes one for
/// exactly these).
pub fn has_leaf(record: &Record) -> bool {
    match record {
        Record::Cert(_) | Record::Report(_) | Record::Upload(_) => true,
        Record::Guess(_) | Record::Chunk(_) | Record::DiscardUpload { .. } => false,
    }
}

/// Where a record's entry is, and the tree head its commit left: all a
/// proof of it needs besides stored hashes, and for a submission the
/// proof's hashes too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The entry's index.
    pub index: u64,
    /// The tree right after the commit that appended it.
    pub head: Head,
    /// The entry's inclusion path in `head`'s tree, made by the commit
    /// ([`Appended::paths`]): a receipt then reads nothing back from the
    /// store. `None`: read the hashes.
    pub path: Option<Vec<Hash>>,
}

/// Each record's [`Logged`] (`None` for one without a leaf), given where
/// its batch's entries went. All `None` when the store did not say, or
/// when the count of entries appended is not the count of records with a
/// leaf (then the positions would be guesses: the reader looks them up).
pub fn logged_each(batch: &[Record], appended: Option<Appended>) -> Vec<Option<Logged>> {
    let with_leaf = batch.iter().filter(|r| has_leaf(r)).count() as u64;
    let Some(a) = appended.filter(|a| a.size.checked_sub(a.first) == Some(with_leaf)) else {
        return vec![None; batch.len()];
    };
    let head = Head {
        size: a.size,
        root: a.root,
    };
    let mut next = a.first;
    let mut paths = a.paths.into_iter();
    batch
        .iter()
        .map(|r| {
            has_leaf(r).then(|| {
                next += 1;
                Logged {
                    index: next - 1,
                    head,
                    path: paths.next().flatten(),
                }
            })
        })
        .collect()
}

/// The leaves a batch appends, in batch order, each with the name of its
/// record: one per certificate, one per report and one per uploaded file
/// (its staged chunks have none: only the file's record is a submission). `now` is the time the
/// certificates' rows are stamped with.
// Never inlined into the commit, so that a profile attributes its hashing
// to the log (bench/log-share.sh); one call per commit batch.
#[inline(never)]
pub(super) fn leaves_of(batch: &[Record], now: i64) -> Vec<(String, Vec<u8>)> {
    batch
        .iter()
        .filter_map(|record| match record {
            Record::Cert(c) => Some((
                cert_record_key(&c.serial.to_string()),
                Leaf::Cert {
                    sid: c.sid.clone(),
                    serial: c.serial.to_string(),
                    cert_sha256: openssl::sha::sha256(&c.der),
                    issued_at: now.max(0) as u64,
                    authorisation: match (&c.authorised, c.origin) {
                        (super::Authorisation::Code(_), _) => Authorisation::Code,
                        (super::Authorisation::Renewal { .. }, _) => Authorisation::Renewal,
                        (super::Authorisation::Open, Origin::Legacy) => Authorisation::Other,
                        (super::Authorisation::Open, Origin::Certboard) => Authorisation::Open,
                    },
                },
            )),
            Record::Report(r) => Some((
                report_record_key(r.receipt_id),
                Leaf::Submission {
                    sid: r.sid.clone(),
                    assignment: r.assignment.clone(),
                    receipt_id: r.receipt_id,
                    sha256: openssl::sha::sha256(r.text.as_bytes()),
                    size: r.text.len() as u64,
                    received_at: r.received_at.max(0) as u64,
                    late: r.late_by.is_some(),
                    serial: r.serial.to_string(),
                },
            )),
            Record::Upload(u) => Some((
                upload_record_key(u.receipt_id),
                Leaf::Submission {
                    sid: u.sid.clone(),
                    assignment: u.assignment.clone(),
                    receipt_id: u.receipt_id,
                    sha256: u.sha256,
                    size: u.size,
                    received_at: u.received_at.max(0) as u64,
                    late: u.late_seconds > 0,
                    serial: u.serial.to_string(),
                },
            )),
            Record::Guess(_) | Record::Chunk(_) | Record::DiscardUpload { .. } => None,
        })
        .map(|(key, leaf)| (key, leaf.encode()))
        .collect()
}

impl From<TreeError> for StoreError {
    fn from(e: TreeError) -> Self {
        StoreError::Log(e)
    }
}

impl From<AppendError<rusqlite::Error>> for StoreError {
    fn from(e: AppendError<rusqlite::Error>) -> Self {
        match e {
            AppendError::Engine(e) => StoreError::Sqlite(e),
            AppendError::Tree(e) => StoreError::Log(e),
        }
    }
}

/// The schema step of both engines (SQLite types; PostgreSQL's differ
/// only in `BYTEA` and `BIGINT`, see [`PG_SCHEMA`]).
pub(super) const SQLITE_SCHEMA: &str = "
CREATE TABLE tlog_entries (
    idx    INTEGER PRIMARY KEY,
    data   BLOB NOT NULL,
    record TEXT NOT NULL UNIQUE
);
CREATE TABLE tlog_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE tlog_head (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    size  INTEGER NOT NULL,
    root  BLOB NOT NULL
);
INSERT INTO tlog_head VALUES (1, 0, x'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
";

/// [`SQLITE_SCHEMA`] for PostgreSQL.
pub(super) const PG_SCHEMA: &str = "
CREATE TABLE tlog_entries (
    idx    BIGINT PRIMARY KEY,
    data   BYTEA NOT NULL,
    -- The record the entry logs (`cert:<serial>`, `report:<receipt id>`):
    -- how a receipt finds its entry's index for its proof.
    record TEXT NOT NULL UNIQUE
);
CREATE TABLE tlog_nodes (
    level SMALLINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE tlog_head (
    one   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    size  BIGINT NOT NULL,
    root  BYTEA NOT NULL
);
INSERT INTO tlog_head (size, root) VALUES (0, '\\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
";

/// The schema step (both engines) that keeps each entry's index in its
/// record's own row (`certs`, `reports`, `uploads`: `log_index`), filled
/// for the rows already logged, and drops the unique index on
/// `tlog_entries.record`. Its keys are random (serials, receipt ids), so
/// that index cost every commit one more random B-tree page per record
/// (issue 21); a record's own row is written anyway, and is where a lookup
/// by record starts. `record` stays, unindexed, naming what each entry
/// logs. A receipt id is a 64-bit number stored reinterpreted as signed:
/// its key is the unsigned decimal (SQLite's `%llu`).
pub(super) const SQLITE_OWN_INDEX: &str = "
ALTER TABLE certs ADD COLUMN log_index INTEGER;
ALTER TABLE reports ADD COLUMN log_index INTEGER;
ALTER TABLE uploads ADD COLUMN log_index INTEGER;
UPDATE certs SET log_index =
    (SELECT idx FROM tlog_entries WHERE record = 'cert:' || certs.serial);
UPDATE reports SET log_index =
    (SELECT idx FROM tlog_entries WHERE record = 'report:' || printf('%llu', reports.receipt_id));
UPDATE uploads SET log_index =
    (SELECT idx FROM tlog_entries WHERE record = 'upload:' || printf('%llu', uploads.receipt_id));
CREATE TABLE tlog_entries_v9 (
    idx    INTEGER PRIMARY KEY,
    data   BLOB NOT NULL,
    record TEXT NOT NULL
);
INSERT INTO tlog_entries_v9 (idx, data, record) SELECT idx, data, record FROM tlog_entries;
DROP TABLE tlog_entries;
ALTER TABLE tlog_entries_v9 RENAME TO tlog_entries;
";

/// [`SQLITE_OWN_INDEX`] for PostgreSQL.
pub(super) const PG_OWN_INDEX: &str = "
ALTER TABLE certs ADD COLUMN log_index BIGINT;
ALTER TABLE reports ADD COLUMN log_index BIGINT;
ALTER TABLE uploads ADD COLUMN log_index BIGINT;
UPDATE certs c SET log_index = e.idx FROM tlog_entries e WHERE e.record = 'cert:' || c.serial;
UPDATE reports r SET log_index = e.idx FROM tlog_entries e
    WHERE e.record = 'report:' || (CASE WHEN r.receipt_id < 0
        THEN r.receipt_id::numeric + 18446744073709551616 ELSE r.receipt_id END)::text;
UPDATE uploads u SET log_index = e.idx FROM tlog_entries e
    WHERE e.record = 'upload:' || (CASE WHEN u.receipt_id < 0
        THEN u.receipt_id::numeric + 18446744073709551616 ELSE u.receipt_id END)::text;
ALTER TABLE tlog_entries DROP CONSTRAINT tlog_entries_record_key;
";

/// The row a record key ([`cert_record_key`], [`report_record_key`],
/// [`upload_record_key`]) names, and where that row keeps its entry's
/// index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner<'a> {
    /// `certs`, by serial.
    Cert(&'a str),
    /// `reports`, by receipt id as stored.
    Report(i64),
    /// `uploads`, by receipt id as stored.
    Upload(i64),
}

impl<'a> Owner<'a> {
    /// `None`: not a key any record is logged under.
    pub(super) fn of(record: &'a str) -> Option<Owner<'a>> {
        let receipt = |id: &str| id.parse::<u64>().ok().map(|id| id as i64);
        if let Some(serial) = record.strip_prefix("cert:") {
            Some(Owner::Cert(serial))
        } else if let Some(id) = record.strip_prefix("report:") {
            receipt(id).map(Owner::Report)
        } else {
            record
                .strip_prefix("upload:")
                .and_then(receipt)
                .map(Owner::Upload)
        }
    }
}

/// What one append did: the first new leaf's index and the tree after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Index of the first leaf appended (the others follow in order).
    pub first: u64,
    /// The tree's size after.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// Each new leaf's inclusion path in the tree after, in order, for
    /// the leaves whose record's answer carries one (a report's or a
    /// file's receipt; `None` for a certificate, whose version 3 answer
    /// reads its entry and a consistency proof anyway). The append holds
    /// the tree's right edge in hand, so they cost a few hashes and no
    /// more reads than the root did, and the receipt none at all.
    pub paths: Vec<Option<Vec<Hash>>>,
}

/// Whether the leaf of the record named `key` gets its inclusion path
/// from the append: a receipt's (report or file), not a certificate's.
fn wants_path(key: &str) -> bool {
    !key.starts_with("cert:")
}

/// The tree head as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Leaves.
    pub size: u64,
    /// Root.
    pub root: Hash,
}

fn to_hash(v: Vec<u8>, id: NodeId) -> Result<Hash, TreeError> {
    v.try_into().map_err(|_| TreeError::MissingNode(id))
}

/// Stored nodes by id, from the overlay first (nodes this append made).
fn lookup<E>(
    ids: &[NodeId],
    overlay: &HashMap<NodeId, Hash>,
    mut read: impl FnMut(NodeId) -> Result<Option<Vec<u8>>, E>,
) -> Result<Result<Vec<Hash>, TreeError>, E> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        if let Some(h) = overlay.get(&id) {
            out.push(*h);
            continue;
        }
        match read(id)? {
            Some(v) => match to_hash(v, id) {
                Ok(h) => out.push(h),
                Err(e) => return Ok(Err(e)),
            },
            None => return Ok(Err(TreeError::MissingNode(id))),
        }
    }
    Ok(Ok(out))
}

/// Why an append could not be computed (the store's own data is
/// inconsistent) or written.
#[derive(Debug)]
pub enum AppendError<E> {
    /// The engine failed.
    Engine(E),
    /// A stored node the tree needs is missing or malformed.
    Tree(TreeError),
}

impl<E> From<TreeError> for AppendError<E> {
    fn from(e: TreeError) -> Self {
        AppendError::Tree(e)
    }
}

/// The hashes an append stores, the new root and the new leaves' paths.
type Made = (Vec<(NodeId, Hash)>, Hash, Vec<Option<Vec<Hash>>>);

/// One append over an engine's reads and writes: the same steps for both.
fn append_with<E>(
    size: u64,
    leaves: &[(String, Vec<u8>)],
    mut read: impl FnMut(NodeId) -> Result<Option<Vec<u8>>, E>,
) -> Result<Made, AppendError<E>> {
    let hashes: Vec<Hash> = leaves.iter().map(|(_, l)| merkle::leaf_hash(l)).collect();
    let none = HashMap::new();
    let made = merkle::append(size, &hashes, |ids: &[NodeId]| {
        lookup(ids, &none, &mut read)
            .map_err(AppendError::Engine)?
            .map_err(AppendError::Tree)
    })?;
    let mut overlay: HashMap<NodeId, Hash> = made.iter().copied().collect();
    let new_size = size + leaves.len() as u64;
    // What the root reads (the full subtrees left of the new leaves) is
    // kept in the overlay: the paths below need the same hashes.
    let mut read_for_root = Vec::new();
    let root = merkle::root(new_size, |ids: &[NodeId]| {
        let hashes = lookup(ids, &overlay, &mut read)
            .map_err(AppendError::Engine)?
            .map_err(AppendError::Tree)?;
        read_for_root = ids.iter().copied().zip(hashes.iter().copied()).collect();
        Ok::<_, AppendError<E>>(hashes)
    })?;
    overlay.extend(read_for_root);
    let mut paths = Vec::with_capacity(leaves.len());
    for (i, (key, _)) in leaves.iter().enumerate() {
        if !wants_path(key) {
            paths.push(None);
            continue;
        }
        let path = merkle::inclusion_proof(size + i as u64, new_size, |ids: &[NodeId]| {
            lookup(ids, &overlay, &mut read)
                .map_err(AppendError::Engine)?
                .map_err(AppendError::Tree)
        })?;
        paths.push(Some(path));
    }
    Ok((made, root, paths))
}

/// Appends `leaves` in a SQLite transaction (which already holds the
/// write lock: `BEGIN IMMEDIATE`).
pub(super) fn sqlite_append(
    tx: &SqlTransaction<'_>,
    leaves: &[(String, Vec<u8>)],
) -> Result<Appended, AppendError<rusqlite::Error>> {
    // Cached statements, as every other on this path: preparing one costs
    // ~7k instructions, on every commit (issue 19's profile).
    let size: i64 = tx
        .prepare_cached("SELECT size FROM tlog_head")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(AppendError::Engine)?;
    let size = size as u64;
    let (made, root, paths) = {
        let mut stmt = tx
            .prepare_cached("SELECT hash FROM tlog_nodes WHERE level = ?1 AND idx = ?2")
            .map_err(AppendError::Engine)?;
        append_with(size, leaves, |id| {
            stmt.query_row(params![id.level, id.index as i64], |r| r.get(0))
                .optional()
        })?
    };
    let engine = AppendError::Engine;
    let mut entry = tx
        .prepare_cached("INSERT INTO tlog_entries (idx, data, record) VALUES (?1, ?2, ?3)")
        .map_err(engine)?;
    for (i, (key, leaf)) in leaves.iter().enumerate() {
        entry
            .execute(params![(size + i as u64) as i64, leaf, key])
            .map_err(engine)?;
    }
    let mut node = tx
        .prepare_cached("INSERT INTO tlog_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")
        .map_err(engine)?;
    for (id, h) in &made {
        node.execute(params![id.level, id.index as i64, &h[..]])
            .map_err(engine)?;
    }
    let new_size = size + leaves.len() as u64;
    tx.prepare_cached("UPDATE tlog_head SET size = ?1, root = ?2")
        .and_then(|mut s| s.execute(params![new_size as i64, &root[..]]))
        .map_err(engine)?;
    Ok(Appended {
        first: size,
        size: new_size,
        root,
        paths,
    })
}

/// Appends `leaves` in a PostgreSQL transaction, after locking the head
/// row so concurrent hosts append one after another.
pub(super) fn pg_append(
    tx: &mut PgTransaction<'_>,
    leaves: &[(String, Vec<u8>)],
) -> Result<Appended, AppendError<postgres::Error>> {
    let engine = AppendError::Engine;
    let size: i64 = tx
        .query_one("SELECT size FROM tlog_head FOR UPDATE", &[])
        .and_then(|r| r.try_get(0))
        .map_err(engine)?;
    let size = size as u64;
    let read_stmt = tx
        .prepare("SELECT hash FROM tlog_nodes WHERE level = $1 AND idx = $2")
        .map_err(engine)?;
    let (made, root, paths) = append_with(size, leaves, |id| {
        let level = i16::from(id.level);
        let idx = id.index as i64;
        tx.query_opt(&read_stmt, &[&level, &idx])?
            .map(|r| r.try_get::<_, Vec<u8>>(0))
            .transpose()
    })?;
    let idx: Vec<i64> = (0..leaves.len() as u64)
        .map(|i| (size + i) as i64)
        .collect();
    let data: Vec<&[u8]> = leaves.iter().map(|(_, l)| l.as_slice()).collect();
    let keys: Vec<&str> = leaves.iter().map(|(k, _)| k.as_str()).collect();
    tx.execute(
        "INSERT INTO tlog_entries (idx, data, record)
         SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[])",
        &[&idx, &data, &keys],
    )
    .map_err(engine)?;
    let levels: Vec<i16> = made.iter().map(|(id, _)| i16::from(id.level)).collect();
    let nidx: Vec<i64> = made.iter().map(|(id, _)| id.index as i64).collect();
    let hashes: Vec<&[u8]> = made.iter().map(|(_, h)| &h[..]).collect();
    tx.execute(
        "INSERT INTO tlog_nodes (level, idx, hash)
         SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
        &[&levels, &nidx, &hashes],
    )
    .map_err(engine)?;
    let new_size = size + leaves.len() as u64;
    tx.execute(
        "UPDATE tlog_head SET size = $1, root = $2",
        &[&(new_size as i64), &&root[..]],
    )
    .map_err(engine)?;
    Ok(Appended {
        first: size,
        size: new_size,
        root,
        paths,
    })
}

/// The tree head, in PostgreSQL.
pub(super) fn pg_head(
    client: &mut impl postgres::GenericClient,
) -> Result<Result<Head, TreeError>, postgres::Error> {
    let row = client.query_one("SELECT size, root FROM tlog_head", &[])?;
    let size: i64 = row.try_get(0)?;
    let root: Vec<u8> = row.try_get(1)?;
    Ok(to_hash(root, NodeId::new(u8::MAX, 0)).map(|root| Head {
        size: size as u64,
        root,
    }))
}

/// Stored nodes, in PostgreSQL, in one query.
pub(super) fn pg_nodes(
    client: &mut impl postgres::GenericClient,
    ids: &[NodeId],
) -> Result<Result<Vec<Hash>, TreeError>, postgres::Error> {
    let levels: Vec<i16> = ids.iter().map(|id| i16::from(id.level)).collect();
    let idx: Vec<i64> = ids.iter().map(|id| id.index as i64).collect();
    let rows = client.query(
        "SELECT n.level, n.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS q(level, idx)
         JOIN tlog_nodes n ON n.level = q.level AND n.idx = q.idx",
        &[&levels, &idx],
    )?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let level: i16 = row.try_get(0)?;
        let index: i64 = row.try_get(1)?;
        found.insert(
            NodeId::new(level as u8, index as u64),
            row.try_get::<_, Vec<u8>>(2)?,
        );
    }
    lookup(ids, &HashMap::new(), |id| {
        Ok::<_, postgres::Error>(found.remove(&id))
    })
}

/// Entries `[from, to)`, in PostgreSQL.
pub(super) fn pg_entries(
    client: &mut impl postgres::GenericClient,
    from: u64,
    to: u64,
) -> Result<Result<Vec<Vec<u8>>, TreeError>, postgres::Error> {
    let rows = client.query(
        "SELECT idx, data FROM tlog_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        &[&(from as i64), &(to as i64)],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (want, row) in (from..to).zip(rows) {
        let idx: i64 = row.try_get(0)?;
        if idx as u64 != want {
            return Ok(Err(TreeError::MissingNode(NodeId::new(0, want))));
        }
        out.push(row.try_get(1)?);
    }
    if out.len() as u64 != to.saturating_sub(from) {
        let missing = from + out.len() as u64;
        return Ok(Err(TreeError::MissingNode(NodeId::new(0, missing))));
    }
    Ok(Ok(out))
}

/// The index of a record's entry, in PostgreSQL: from the record's own
/// row.
pub(super) fn pg_index_of(
    client: &mut impl postgres::GenericClient,
    record: &str,
) -> Result<Option<u64>, postgres::Error> {
    let row = match Owner::of(record) {
        None => return Ok(None),
        Some(Owner::Cert(serial)) => {
            client.query_opt("SELECT log_index FROM certs WHERE serial = $1", &[&serial])?
        }
        Some(Owner::Report(id)) => client.query_opt(
            "SELECT log_index FROM reports WHERE receipt_id = $1",
            &[&id],
        )?,
        Some(Owner::Upload(id)) => client.query_opt(
            "SELECT log_index FROM uploads WHERE receipt_id = $1",
            &[&id],
        )?,
    };
    Ok(row
        .map(|r| r.try_get::<_, Option<i64>>(0))
        .transpose()?
        .flatten()
        .map(|i| i as u64))
}

/// The index of a record's entry, in SQLite: from the record's own row.
pub(super) fn sqlite_index_of(
    conn: &rusqlite::Connection,
    record: &str,
) -> Result<Option<u64>, rusqlite::Error> {
    let (sql, key) = match Owner::of(record) {
        None => return Ok(None),
        Some(Owner::Cert(serial)) => (
            "SELECT log_index FROM certs WHERE serial = ?1",
            rusqlite::types::Value::Text(serial.to_string()),
        ),
        Some(Owner::Report(id)) => (
            "SELECT log_index FROM reports WHERE receipt_id = ?1",
            rusqlite::types::Value::Integer(id),
        ),
        Some(Owner::Upload(id)) => (
            "SELECT log_index FROM uploads WHERE receipt_id = ?1",
            rusqlite::types::Value::Integer(id),
        ),
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![key], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten()
        .map(|i| i as u64))
}

/// Reads of the log (tiles, proofs, verification) that do not change it.
pub trait LogReader {
    /// The engine's error.
    type Error: From<TreeError>;
    /// The tree head.
    fn head(&mut self) -> Result<Head, Self::Error>;
    /// Stored nodes, in the order asked; a missing one is an error.
    fn nodes(&mut self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
    /// The entries `[from, to)`, in order.
    fn entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, Self::Error>;
}

/// `ids`, consecutive nodes of one level from `first`, in one query.
fn range_nodes(
    conn: &rusqlite::Connection,
    first: NodeId,
    ids: &[NodeId],
) -> Result<Vec<Hash>, AppendError<rusqlite::Error>> {
    let engine = AppendError::Engine;
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, hash FROM tlog_nodes WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
        )
        .map_err(engine)?;
    let end = first.index.saturating_add(ids.len() as u64);
    let rows = stmt
        .query_map(params![first.level, first.index as i64, end as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(engine)?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, row) in ids.iter().zip(rows) {
        let (idx, hash) = row.map_err(engine)?;
        if idx as u64 != id.index {
            return Err(AppendError::Tree(TreeError::MissingNode(*id)));
        }
        out.push(to_hash(hash, *id)?);
    }
    if let Some(missing) = ids.get(out.len()) {
        return Err(AppendError::Tree(TreeError::MissingNode(*missing)));
    }
    Ok(out)
}

impl LogReader for rusqlite::Connection {
    type Error = AppendError<rusqlite::Error>;

    fn head(&mut self) -> Result<Head, Self::Error> {
        // Read per receipt and per /log request: cached, not parsed again.
        let (size, root): (i64, Vec<u8>) = self
            .prepare_cached("SELECT size, root FROM tlog_head")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(AppendError::Engine)?;
        Ok(Head {
            size: size as u64,
            root: to_hash(root, NodeId::new(u8::MAX, 0))?,
        })
    }

    fn nodes(&mut self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        if is_run(ids) {
            return range_nodes(self, ids[0], ids);
        }
        // One read transaction for all of them: each statement outside one
        // is its own, and in WAL mode each takes and drops its read locks
        // (four `fcntl` calls) and re-reads the pages a commit changed since
        // the last. A receipt's proof reads ~log2(size) nodes, a tile 256;
        // the locks were ~4% of the server's CPU per submission (issue 19's
        // profile). Stored nodes never change, so the snapshot is the same.
        let tx = self.transaction().map_err(AppendError::Engine)?;
        let found = sqlite_nodes_in(&tx, ids)?;
        tx.commit().map_err(AppendError::Engine)?;
        Ok(found)
    }

    fn entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, Self::Error> {
        sqlite_entries(self, from, to)
    }
}

/// Whether `ids` are consecutive nodes of one level (a hash tile is up to
/// 256 of them): read with one range scan instead of a lookup per node
/// (~6x fewer instructions).
fn is_run(ids: &[NodeId]) -> bool {
    ids.len() > 1
        && ids
            .windows(2)
            .all(|w| w[1].level == w[0].level && w[1].index == w[0].index.wrapping_add(1))
}

/// Stored nodes, in the order asked, read on `conn` as it stands (inside
/// the caller's transaction, if any).
pub(super) fn sqlite_nodes_in(
    conn: &rusqlite::Connection,
    ids: &[NodeId],
) -> Result<Vec<Hash>, AppendError<rusqlite::Error>> {
    if is_run(ids) {
        return range_nodes(conn, ids[0], ids);
    }
    let mut stmt = conn
        .prepare_cached("SELECT hash FROM tlog_nodes WHERE level = ?1 AND idx = ?2")
        .map_err(AppendError::Engine)?;
    lookup(ids, &HashMap::new(), |id| {
        stmt.query_row(params![id.level, id.index as i64], |r| r.get(0))
            .optional()
    })
    .map_err(AppendError::Engine)?
    .map_err(AppendError::Tree)
}

/// Entries `[from, to)`, in SQLite; a gap is an error.
pub(super) fn sqlite_entries(
    conn: &rusqlite::Connection,
    from: u64,
    to: u64,
) -> Result<Vec<Vec<u8>>, AppendError<rusqlite::Error>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, data FROM tlog_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )
        .map_err(AppendError::Engine)?;
    let rows = stmt
        .query_map(params![from as i64, to as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(AppendError::Engine)?;
    let mut out = Vec::new();
    for (want, row) in (from..to).zip(rows) {
        let (idx, data) = row.map_err(AppendError::Engine)?;
        if idx as u64 != want {
            return Err(AppendError::Tree(TreeError::MissingNode(NodeId::new(
                0, want,
            ))));
        }
        out.push(data);
    }
    if out.len() as u64 != to.saturating_sub(from) {
        let missing = from + out.len() as u64;
        return Err(AppendError::Tree(TreeError::MissingNode(NodeId::new(
            0, missing,
        ))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{inclusion_proof, leaf_hash, verify_inclusion};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn db() -> Result<rusqlite::Connection, rusqlite::Error> {
        let c = rusqlite::Connection::open_in_memory()?;
        c.execute_batch(SQLITE_SCHEMA)?;
        Ok(c)
    }

    fn dbg<E: std::fmt::Debug>(e: AppendError<E>) -> String {
        match e {
            AppendError::Engine(e) => format!("{e:?}"),
            AppendError::Tree(e) => e.to_string(),
        }
    }

    #[test]
    fn a_tile_run_is_read_in_one_scan_and_a_gap_in_it_is_named() -> TestResult {
        let mut c = db()?;
        let leaves: Vec<(String, Vec<u8>)> = (0u32..300)
            .map(|i| (format!("t:{i}"), i.to_le_bytes().to_vec()))
            .collect();
        let tx = c.transaction()?;
        sqlite_append(&tx, &leaves).map_err(dbg)?;
        tx.commit()?;
        let run: Vec<NodeId> = (0..256).map(|i| NodeId::new(0, i)).collect();
        let expected: Vec<Hash> = leaves[..256].iter().map(|(_, l)| leaf_hash(l)).collect();
        assert_eq!(c.nodes(&run).map_err(dbg)?, expected);
        c.execute("DELETE FROM tlog_nodes WHERE level = 0 AND idx = 7", [])?;
        let gap = c.nodes(&run);
        assert!(
            matches!(&gap, Err(AppendError::Tree(TreeError::MissingNode(id))) if *id == NodeId::new(0, 7)),
            "{gap:?}"
        );
        Ok(())
    }

    #[test]
    fn batches_append_in_order_and_proofs_verify_from_the_tables() -> TestResult {
        let mut c = db()?;
        let leaves: Vec<(String, Vec<u8>)> = (0u32..600)
            .map(|i| (format!("t:{i}"), i.to_le_bytes().to_vec()))
            .collect();
        let mut at = 0;
        for batch in leaves.chunks(77) {
            let tx = c.transaction()?;
            let a = sqlite_append(&tx, batch).map_err(dbg)?;
            tx.commit()?;
            assert_eq!(a.first, at);
            at += batch.len() as u64;
            assert_eq!(a.size, at);
        }
        let head = c.head().map_err(dbg)?;
        assert_eq!(head.size, 600);
        for index in [0u64, 255, 256, 599] {
            let p =
                inclusion_proof(index, head.size, |ids: &[NodeId]| c.nodes(ids)).map_err(dbg)?;
            assert!(verify_inclusion(
                &leaf_hash(&leaves[index as usize].1),
                index,
                head.size,
                &p,
                &head.root
            ));
        }
        let want: Vec<Vec<u8>> = leaves[10..13].iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(c.entries(10, 13).map_err(dbg)?, want);
        assert!(c.entries(590, 601).is_err());
        Ok(())
    }

    #[test]
    fn a_rolled_back_append_leaves_the_log_as_it_was() -> TestResult {
        let mut c = db()?;
        {
            let tx = c.transaction()?;
            sqlite_append(&tx, &[("a".into(), b"kept".to_vec())]).map_err(dbg)?;
            tx.commit()?;
        }
        let before = c.head().map_err(dbg)?;
        {
            let tx = c.transaction()?;
            sqlite_append(&tx, &[("b".into(), b"dropped".to_vec())]).map_err(dbg)?;
            // Dropped without commit: rolled back.
        }
        assert_eq!(c.head().map_err(dbg)?, before);
        let tx = c.transaction()?;
        assert_eq!(
            sqlite_append(&tx, &[("b".into(), b"next".to_vec())])
                .map_err(dbg)?
                .first,
            1
        );
        Ok(())
    }
}
