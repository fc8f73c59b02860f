//! The SQLite engine behind [`Storage`].
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so a
//! COMMIT returns only after the WAL has been fsync'd; a power cut or a
//! SIGKILL after that keeps the transaction. (`synchronous=NORMAL`, the usual
//! WAL pairing, may lose the last transactions on power loss, which would
//! break the promise made by an acknowledgment.)

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::files::{Undo, UploadFiles};
use super::staff::{
    AuditEntry, LoginAttempt, LoginVerdict, StaffAccount, StaffSession, StaffStorage,
};
use super::{
    census_of, check_guess, code_state_of, receipt_id_of, staged_match, status_of, Assignment,
    Census, CertColumns, CertRow, CertStatus, CodeColumns, CodeKey, Counts, EnrollView, Extension,
    Record, ReportColumns, ReportRecord, Revocation, RevocationColumns, RevocationMark,
    RevocationReason, RosterChange, RosterEntry, Serial, StatusColumns, Storage, StoreError,
    Student, SubmissionView, Supersede, UploadColumns, UploadRecord, Writes, CENSUS_SQL,
    GUESS_RETENTION,
};
use crate::time::now_unix;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 9;
/// Marks the file as certboard's (`PRAGMA application_id`): "CBRD".
const APPLICATION_ID: i64 = 0x4342_5244;
/// File name of the database inside the data dir.
pub const DB_FILE: &str = "certboard.sqlite3";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// The SQLite engine.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Device and inode of the file opened: the health check tells a
    /// database removed or replaced under a running server.
    file_id: Option<(u64, u64)>,
    /// Uploaded files beside the database (`None` in memory: there, chunks
    /// stay rows, as in stores before files).
    files: Option<UploadFiles>,
}

/// Device and inode of the file at `path`.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Version 0 to 1: certificates, reports and the CRL counter.
const SCHEMA: &str = "
CREATE TABLE certs (
    serial      TEXT PRIMARY KEY,
    sid         TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    der         BLOB NOT NULL,
    origin      TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    revoked_at  INTEGER,
    revoke_reason TEXT
);
CREATE INDEX certs_sid ON certs(sid);
CREATE TABLE reports (
    receipt_id  INTEGER PRIMARY KEY,
    sid         TEXT NOT NULL,
    serial      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    text        TEXT NOT NULL,
    origin      TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters VALUES ('crl_number', 0);
";

/// Version 1 to 2: the roster and the enrollment codes (issue 12).
const MIGRATE_V2: &str = "
CREATE TABLE roster (
    sid       TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    added_at  INTEGER NOT NULL
);
CREATE TABLE codes (
    sid         TEXT PRIMARY KEY REFERENCES roster(sid),
    code_key    BLOB NOT NULL,
    issued_at   INTEGER NOT NULL,
    used_at     INTEGER,
    used_serial TEXT,
    wrong       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  INTEGER
);
";

/// Version 2 to 3: enrollment code guesses, counted before each is checked
/// (issue 22); `codes.wrong` is no longer read or written.
const MIGRATE_V3: &str = "
CREATE TABLE guesses (
    sid     TEXT NOT NULL,
    source  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX guesses_source ON guesses(source, at);
CREATE INDEX guesses_sid ON guesses(sid, at);
CREATE INDEX guesses_at ON guesses(at);
";

/// Version 3 to 4: what authorised each certificate (issue 22 item 3):
/// `authorised` (open, code or renewal), `vouched` (a code, directly or
/// through renewals, stands behind it) and `renews` (the serial a renewal
/// rested on). Earlier rows are marked from what the store already knew:
/// the certificate that spent a code is `code`; one issued before any
/// roster student was added is `open`; a later one is a renewal, vouched
/// unless its SID also holds an `open` certificate (then which chain it
/// grew from is unknown, and it is not vouched for: the instructor
/// reissues that student's code). Same rule as PostgreSQL's step 4.
const MIGRATE_V4: &str = "
ALTER TABLE certs ADD COLUMN authorised TEXT NOT NULL DEFAULT 'open';
ALTER TABLE certs ADD COLUMN vouched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certs ADD COLUMN renews TEXT;
UPDATE certs SET authorised = CASE
    WHEN serial IN (SELECT used_serial FROM codes WHERE used_serial IS NOT NULL) THEN 'code'
    WHEN NOT EXISTS (SELECT 1 FROM roster)
         OR issued_at < (SELECT min(added_at) FROM roster) THEN 'open'
    ELSE 'renewal' END;
UPDATE certs SET vouched = CASE
    WHEN authorised = 'code' THEN 1
    WHEN authorised = 'renewal'
         AND NOT EXISTS (SELECT 1 FROM certs o WHERE o.sid = certs.sid AND o.authorised = 'open')
         THEN 1
    ELSE 0 END;
";

/// Version 5 to 6: assignments, extensions and the course's text settings
/// (issue 20); each report names its assignment and how late it came, and
/// has room for a handed-in file's name, size and SHA-256; a roster
/// student may have an e-mail address and may be removed.
const MIGRATE_V6: &str = "
CREATE TABLE assignments (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    opens_at    INTEGER,
    due_at      INTEGER,
    late_until  INTEGER,
    closed_at   INTEGER
);
CREATE TABLE extensions (
    sid         TEXT NOT NULL,
    assignment  TEXT NOT NULL REFERENCES assignments(id),
    until       INTEGER NOT NULL,
    granted_at  INTEGER NOT NULL,
    PRIMARY KEY (sid, assignment)
);
CREATE TABLE course_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
ALTER TABLE reports ADD COLUMN assignment TEXT NOT NULL DEFAULT 'lab';
ALTER TABLE reports ADD COLUMN late_by INTEGER;
ALTER TABLE reports ADD COLUMN file_name TEXT;
ALTER TABLE reports ADD COLUMN file_size INTEGER;
ALTER TABLE reports ADD COLUMN file_sha256 TEXT;
ALTER TABLE roster ADD COLUMN email TEXT;
ALTER TABLE roster ADD COLUMN dropped_at INTEGER;
";

/// Version 6 to 7: files handed in by protocol version 3 (issue 20).
/// Chunks are staged as they arrive; an `uploads` row naming their
/// `upload_id` makes them a file, in one transaction; staged chunks no row
/// names belong to an upload in progress or abandoned.
const MIGRATE_V7: &str = "
CREATE TABLE upload_chunks (
    upload_id  INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    data       BLOB NOT NULL,
    staged_at  INTEGER NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
CREATE TABLE uploads (
    receipt_id   INTEGER PRIMARY KEY,
    upload_id    INTEGER NOT NULL UNIQUE,
    sid          TEXT NOT NULL,
    serial       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    assignment   TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       BLOB NOT NULL,
    chunks       INTEGER NOT NULL,
    late_seconds INTEGER NOT NULL
);
";

/// Version 8 (issue 23): the staff web interface's accounts, sessions
/// (the token's hash only), audit log and counted login attempts.
const MIGRATE_V8: &str = "
CREATE TABLE staff_accounts (
    name        TEXT PRIMARY KEY,
    phc         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE staff_sessions (
    token_hash  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX staff_sessions_name ON staff_sessions (name);
CREATE TABLE staff_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    who     TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE TABLE staff_login_attempts (
    name    TEXT NOT NULL,
    source  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX staff_login_attempts_source ON staff_login_attempts (source, at);
";

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`, as in the
/// PostgreSQL engine. A new version appends a step (and bumps
/// [`SCHEMA_VERSION`]); a step once released never changes.
const MIGRATIONS: &[&str] = &[
    SCHEMA,
    MIGRATE_V2,
    MIGRATE_V3,
    MIGRATE_V4,
    super::tlog::SQLITE_SCHEMA,
    MIGRATE_V6,
    MIGRATE_V7,
    MIGRATE_V8,
    super::tlog::SQLITE_OWN_INDEX,
];
const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// The columns of `codes` from column `at` on (all NULL: no code).
fn code_columns(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<CodeColumns>> {
    let key: Option<Vec<u8>> = r.get(at)?;
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(Some(CodeColumns {
        key,
        issued_at: r.get(at + 1)?,
        used_at: r.get(at + 2)?,
    }))
}

/// application_id, user_version and the number of tables.
fn schema_marks(conn: &Connection) -> Result<(i64, i64, i64), StoreError> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type='table'",
        [],
        |r| r.get(0),
    )?;
    Ok((app, version, tables))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// An insert's outcome, a unique violation named as [`StoreError::Duplicate`].
fn duplicate(
    inserted: rusqlite::Result<usize>,
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(what())),
        Err(e) => Err(e.into()),
    }
}

/// Whether `table` (`reports` or `uploads`) holds `receipt_id`.
fn receipt_taken(
    tx: &rusqlite::Transaction<'_>,
    table: &'static str,
    receipt_id: i64,
) -> Result<bool, StoreError> {
    let sql = match table {
        "reports" => "SELECT EXISTS (SELECT 1 FROM reports WHERE receipt_id = ?1)",
        _ => "SELECT EXISTS (SELECT 1 FROM uploads WHERE receipt_id = ?1)",
    };
    Ok(tx
        .prepare_cached(sql)?
        .query_row(params![receipt_id], |r| r.get(0))?)
}

/// The environment variable that caps the SQLite store's size, in pages
/// (`PRAGMA max_page_count`); unset, SQLite's own limit holds.
pub(crate) const MAX_PAGES_ENV: &str = "CERTBOARD_SQLITE_MAX_PAGES";

impl SqliteStore {
    /// Reports, oldest first: every one, or one SID's.
    fn reports_of(&mut self, sid: Option<&str>) -> Result<Vec<ReportRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT receipt_id, sid, serial, received_at, text, origin, assignment, late_by
             FROM reports WHERE ?1 IS NULL OR sid = ?1 ORDER BY received_at, rowid",
        )?;
        let rows = stmt.query_map([sid], |r| {
            Ok(ReportColumns {
                receipt_id: r.get(0)?,
                sid: r.get(1)?,
                serial: r.get(2)?,
                received_at: r.get(3)?,
                text: r.get(4)?,
                origin: r.get(5)?,
                assignment: r.get(6)?,
                late_by: r.get(7)?,
            })
        })?;
        let columns = rows.collect::<Result<Vec<_>, _>>()?;
        columns
            .into_iter()
            .map(ReportColumns::into_record)
            .collect()
    }

    /// File submissions, oldest first: every one, or one SID's.
    fn uploads_of(&mut self, sid: Option<&str>) -> Result<Vec<UploadRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT receipt_id, upload_id, sid, serial, received_at, assignment, file_name,
             size, sha256, chunks, late_seconds FROM uploads WHERE ?1 IS NULL OR sid = ?1
             ORDER BY received_at, rowid",
        )?;
        let rows = stmt.query_map([sid], |r| {
            Ok(UploadColumns {
                receipt_id: r.get(0)?,
                upload_id: r.get(1)?,
                sid: r.get(2)?,
                serial: r.get(3)?,
                received_at: r.get(4)?,
                assignment: r.get(5)?,
                file_name: r.get(6)?,
                size: r.get(7)?,
                sha256: r.get(8)?,
                chunks: r.get(9)?,
                late_seconds: r.get(10)?,
            })
        })?;
        let columns = rows.collect::<Result<Vec<_>, _>>()?;
        columns
            .into_iter()
            .map(UploadColumns::into_record)
            .collect()
    }

    /// Opens (creating if needed) the database in `data_dir`.
    ///
    /// A new data dir and database are private to the server's user (0700,
    /// 0600): they hold every report's text.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io(data_dir))?;
        let db = data_dir.join(DB_FILE);
        if !db.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&db)
                .map_err(io(&db))?;
        }
        Self::open_file(&db)
    }

    /// Opens the database in `data_dir` only if it exists: the admin
    /// commands must not create an empty one behind a mistyped path.
    pub fn open_existing(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no database here (check --data-dir; the server creates it on first start)",
                ),
            });
        }
        Self::open_file(&path)
    }

    /// Opens (creating if needed) the database file at `path`.
    pub fn open_file(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        // Another process (an admin command, a second reactor) may hold the
        // write lock for a moment; wait briefly rather than fail.
        conn.busy_timeout(Duration::from_secs(2))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Incompatible(format!(
                "could not switch to WAL mode (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        if let Some(pages) = std::env::var(MAX_PAGES_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            // A quota: past it SQLite answers SQLITE_FULL, as on a full
            // disk, which is how the tests reach that case without root.
            conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))?;
        }
        let quota = std::env::var(MAX_PAGES_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        let files = UploadFiles::new(path.parent().unwrap_or(Path::new(".")), quota);
        let file_id = file_id(path).ok();
        Self::with_schema(conn, path.to_path_buf(), file_id, Some(files))
    }

    /// A fresh, private database in memory (SQLite's `:memory:`): the same
    /// schema, statements and constraints as a file, so protocol tests and
    /// the session fuzz target run the real engine without a temp dir.
    /// Nothing survives the value; WAL and fsync do not apply.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::with_schema(conn, PathBuf::from(":memory:"), None, None)
    }

    /// The steps every database shares once its connection is open.
    fn with_schema(
        conn: Connection,
        path: PathBuf,
        file_id: Option<(u64, u64)>,
        files: Option<UploadFiles>,
    ) -> Result<SqliteStore, StoreError> {
        conn.execute_batch("PRAGMA foreign_keys=ON;")?;
        let mut store = SqliteStore {
            conn,
            path,
            file_id,
            files,
        };
        store.check_or_create_schema()?;
        Ok(store)
    }

    /// The connection itself, for `migrate`, which reads every table in
    /// one snapshot.
    pub(super) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Writes a consistent copy of the database to `dest` (which must not
    /// exist), safe while the server runs: `VACUUM INTO` reads one snapshot.
    /// The copy holds every report: it is created 0600 before SQLite fills
    /// it (VACUUM INTO accepts an empty file).
    pub fn backup_to(&mut self, dest: &Path) -> Result<(), StoreError> {
        let io = |source: std::io::Error| StoreError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let name = dest.to_str().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "path is not UTF-8",
            ))
        })?;
        crate::fsutil::create_private(dest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                io(std::io::Error::new(e.kind(), "refusing to overwrite"))
            } else {
                io(e)
            }
        })?;
        if let Err(e) = self.conn.execute("VACUUM INTO ?1", params![name]) {
            let _ = std::fs::remove_file(dest);
            return Err(e.into());
        }
        // The copy is one file that holds everything: the files of the
        // uploads it records go into it as chunk rows, as a store from
        // before files kept them (and as every build reads them). A
        // recorded file never changes, so the copy stays one snapshot.
        if let Err(e) = self.files_into_rows(dest) {
            let _ = std::fs::remove_file(dest);
            return Err(e);
        }
        Ok(())
    }

    /// Recorded uploads whose bytes are files here, with their chunk counts
    /// and times, as listed by `conn` (this store or a copy of it).
    pub(super) fn uploads_in_files(
        &self,
        conn: &Connection,
    ) -> Result<Vec<(i64, u64, i64)>, StoreError> {
        let Some(files) = &self.files else {
            return Ok(Vec::new());
        };
        let mut stmt = conn.prepare(
            "SELECT upload_id, chunks, received_at FROM uploads u
             WHERE NOT EXISTS (SELECT 1 FROM upload_chunks c WHERE c.upload_id = u.upload_id)
             ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, chunks, at) = row?;
            if files.has_file(id) {
                out.push((id, u64::try_from(chunks).unwrap_or(0), at));
            }
        }
        Ok(out)
    }

    /// Chunk `seq` of a recorded upload's file; a missing one is an error
    /// (its record says it is there).
    pub(super) fn file_chunk(&self, upload_id: i64, seq: u64) -> Result<Vec<u8>, StoreError> {
        self.files
            .as_ref()
            .map(|f| f.read_chunk(upload_id, seq))
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                StoreError::NotFound(format!("chunk {seq} of upload {upload_id}'s file"))
            })
    }

    fn files_into_rows(&self, dest: &Path) -> Result<(), StoreError> {
        let mut copy = Connection::open(dest)?;
        let tx = copy.transaction()?;
        for (id, chunks, at) in self.uploads_in_files(&tx)? {
            let mut insert = tx.prepare_cached(
                "INSERT INTO upload_chunks (upload_id, seq, data, staged_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for seq in 0..chunks {
                insert.execute(params![id, seq as i64, self.file_chunk(id, seq)?, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads the schema marks; creates the schema in an empty file. Only
    /// creation takes the write lock, so opening an existing database (an
    /// admin command beside the running server) never blocks the server's
    /// commits.
    fn check_or_create_schema(&mut self) -> Result<(), StoreError> {
        if self.schema_is_current(rusqlite::TransactionBehavior::Deferred)? {
            return Ok(());
        }
        // Empty: create it, under the write lock, unless someone else just did.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (app, version, tables) = schema_marks(&tx)?;
        let from = match (app, version, tables) {
            (0, 0, 0) => {
                tx.execute_batch(&format!("PRAGMA application_id={APPLICATION_ID};"))?;
                0
            }
            (APPLICATION_ID, v, _) if (1..SCHEMA_VERSION).contains(&v) => v,
            // Someone else made it current meanwhile (or it is not ours:
            // the check below says which).
            _ => SCHEMA_VERSION,
        };
        for step in MIGRATIONS.iter().skip(from as usize) {
            tx.execute_batch(step)?;
        }
        if from < SCHEMA_VERSION {
            tx.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION};"))?;
            if from > 0 {
                log::info!(
                    "{}: schema migrated from version {from} to {SCHEMA_VERSION}",
                    self.path.display()
                );
            }
        }
        tx.commit()?;
        if self.schema_is_current(rusqlite::TransactionBehavior::Deferred)? {
            Ok(())
        } else {
            Err(StoreError::Incompatible(format!(
                "{}: could not create the schema",
                self.path.display()
            )))
        }
    }

    /// Whether the file holds our current schema (`Ok(false)`: it is empty);
    /// an error when it is someone else's or another version.
    fn schema_is_current(
        &mut self,
        how: rusqlite::TransactionBehavior,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction_with_behavior(how)?;
        let marks = schema_marks(&tx)?;
        drop(tx);
        match marks {
            (0, 0, 0) => Ok(false),
            (APPLICATION_ID, SCHEMA_VERSION, _) => Ok(true),
            // An older schema this build migrates (under the write lock).
            (APPLICATION_ID, v, _) if (1..SCHEMA_VERSION).contains(&v) => Ok(false),
            (APPLICATION_ID, v, _) => Err(StoreError::Incompatible(format!(
                "{} has schema version {v}; this build understands version {SCHEMA_VERSION}",
                self.path.display()
            ))),
            _ => Err(StoreError::Incompatible(format!(
                "{} is not a certboard database",
                self.path.display()
            ))),
        }
    }

    fn revoke(
        &mut self,
        clause: &str,
        key: &str,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        let sql = format!(
            "UPDATE certs SET revoked_at = ?1, revoke_reason = ?2 WHERE {clause} = ?3 AND revoked_at IS NULL"
        );
        Ok(self.conn.execute(&sql, params![at, reason.name(), key])?)
    }
}

impl SqliteStore {
    /// A batch whose chunks go to files: they are appended and the
    /// completed files made durable under their final names first, then
    /// the rest commits in one transaction (none at all for a batch of
    /// chunks only); if anything fails, what the files took is undone.
    fn commit_with_files(
        &mut self,
        files: &mut UploadFiles,
        batch: &[Record],
    ) -> Result<Option<super::tlog::Appended>, StoreError> {
        let mut undo = Undo::default();
        let mut finished = Vec::new();
        let mut rows = false;
        let mut staged = Ok(());
        for r in batch {
            staged = match r {
                Record::Chunk(c) => files.append(c, &mut undo),
                Record::Upload(u) => {
                    rows = true;
                    finished.push(u.upload_id);
                    files.finish(u, &mut undo)
                }
                Record::DiscardUpload { .. } => Ok(()),
                _ => {
                    rows = true;
                    Ok(())
                }
            };
            if staged.is_err() {
                break;
            }
        }
        let out = match staged {
            Ok(()) if rows => self.commit_rows(batch, false),
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        };
        match out {
            Ok(appended) => {
                files.settle(&finished);
                for r in batch {
                    if let Record::DiscardUpload { upload_id } = r {
                        if !finished.contains(upload_id) {
                            files.discard(*upload_id);
                        }
                    }
                }
                Ok(appended)
            }
            Err(e) => {
                files.undo(undo);
                Err(e)
            }
        }
    }

    /// The batch in one transaction; `chunk_rows`: chunks are rows (a
    /// store in memory), else files did their part already.
    fn commit_rows(
        &mut self,
        batch: &[Record],
        chunk_rows: bool,
    ) -> Result<Option<super::tlog::Appended>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_unix();
        let log_from = {
            let mut cert_stmt = tx.prepare_cached(
                "INSERT INTO certs (serial, sid, subject, not_before, not_after, der, origin, issued_at,
                                    authorised, vouched, renews, log_index)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut renewed_stmt = tx.prepare_cached(
                "UPDATE certs SET revoked_at = ?1, revoke_reason = ?2
                 WHERE serial = ?3 AND sid = ?4 AND revoked_at IS NULL",
            )?;
            let mut others_stmt = tx.prepare_cached(
                "UPDATE certs SET revoked_at = ?1, revoke_reason = ?2
                 WHERE sid = ?3 AND serial <> ?4 AND revoked_at IS NULL",
            )?;
            let mut report_stmt = tx.prepare_cached(
                "INSERT INTO reports (receipt_id, sid, serial, received_at, text, origin,
                                      assignment, late_by, file_size, file_sha256, log_index)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut consume_stmt = tx.prepare_cached(
                "UPDATE codes SET used_at = ?1, used_serial = ?2
                 WHERE sid = ?3 AND code_key = ?4 AND used_at IS NULL",
            )?;
            let w = Writes::of(batch);
            // Each logged row keeps its entry's index (`log_index_of` reads
            // it there): the log's size now, which nothing else can change
            // before this commit, plus its leaf's place in the batch.
            let log_from: i64 = if w.leaves > 0 {
                tx.prepare_cached("SELECT size FROM tlog_head")?
                    .query_row([], |r| r.get(0))?
            } else {
                0
            };
            let log_index = |leaf: u64| log_from + leaf as i64;
            // The transaction is IMMEDIATE: no other writer, in this
            // process or another, counts between the read and the insert.
            if !w.guesses.is_empty() {
                let mut prune = tx.prepare_cached("DELETE FROM guesses WHERE at <= ?1")?;
                let mut counted = tx.prepare_cached(
                    "SELECT sid, at FROM guesses WHERE source = ?1 AND at > ?2 ORDER BY at",
                )?;
                let mut add =
                    tx.prepare_cached("INSERT INTO guesses (sid, source, at) VALUES (?1, ?2, ?3)")?;
                for g in &w.guesses {
                    prune.execute(params![g.retained_after()])?;
                    let rows = counted
                        .query_map(params![g.source, g.window_start()], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect::<Result<Vec<(String, i64)>, _>>()?;
                    check_guess(g, &rows)?;
                    add.execute(params![g.sid, g.source, g.at])?;
                }
            }
            for spend in &w.spends {
                if consume_stmt.execute(params![now, spend.serial, spend.sid, spend.key])? == 0 {
                    return Err(StoreError::CodeUsed {
                        sid: spend.sid.to_string(),
                    });
                }
            }
            for c in &w.certs {
                let inserted = cert_stmt.execute(params![
                    c.serial,
                    c.sid,
                    c.subject,
                    c.not_before,
                    c.not_after,
                    c.der,
                    c.origin,
                    now,
                    c.authorised,
                    c.vouched,
                    c.renews,
                    log_index(c.leaf),
                ]);
                duplicate(inserted, || format!("serial {}", c.serial))?;
            }
            let superseded = RevocationReason::Superseded.name();
            for s in &w.supersedes {
                match s {
                    Supersede::Renewed {
                        sid,
                        renews,
                        renews_text,
                    } => {
                        if renewed_stmt.execute(params![now, superseded, renews_text, sid])? == 0 {
                            return Err(StoreError::RenewedRevoked {
                                sid: sid.to_string(),
                                serial: (*renews).clone(),
                            });
                        }
                    }
                    Supersede::AllOthers { sid, serial } => {
                        others_stmt.execute(params![now, superseded, sid, serial])?;
                    }
                }
            }
            for r in &w.reports {
                let inserted = report_stmt.execute(params![
                    r.receipt_id,
                    r.sid,
                    r.serial,
                    r.received_at,
                    r.text,
                    r.origin,
                    r.assignment,
                    r.late_by,
                    r.file_size,
                    r.file_sha256,
                    log_index(r.leaf),
                ]);
                duplicate(inserted, || {
                    format!("receipt {}", receipt_id_of(r.receipt_id))
                })?;
                // One namespace of receipt ids for reports and files: a
                // receipt id names one submission.
                if receipt_taken(&tx, "uploads", r.receipt_id)? {
                    return Err(StoreError::Duplicate(format!(
                        "receipt {} (a file's)",
                        receipt_id_of(r.receipt_id)
                    )));
                }
            }
            let mut chunk_stmt = tx.prepare_cached(
                "INSERT INTO upload_chunks (upload_id, seq, data, staged_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for c in w.chunks.iter().filter(|_| chunk_rows) {
                let inserted = chunk_stmt.execute(params![c.upload_id, c.seq as i64, c.data, now]);
                duplicate(inserted, || {
                    format!("upload {} chunk {}", c.upload_id, c.seq)
                })?;
            }
            for (u, &leaf) in w.uploads.iter().zip(&w.upload_leaves) {
                if chunk_rows {
                    let (count, bytes): (i64, i64) = tx
                        .prepare_cached(
                            "SELECT count(*), coalesce(sum(length(data)), 0) FROM upload_chunks
                         WHERE upload_id = ?1",
                        )?
                        .query_row(params![u.upload_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    staged_match(u, count, bytes)?;
                }
                if receipt_taken(&tx, "reports", u.receipt_id as i64)? {
                    return Err(StoreError::Duplicate(format!(
                        "receipt {} (a report's)",
                        u.receipt_id
                    )));
                }
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO uploads (receipt_id, upload_id, sid, serial, received_at,
                         assignment, file_name, size, sha256, chunks, late_seconds, log_index)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )?
                    .execute(params![
                        u.receipt_id as i64,
                        u.upload_id,
                        u.sid,
                        u.serial.to_string(),
                        u.received_at,
                        u.assignment,
                        u.file_name,
                        u.size as i64,
                        &u.sha256[..],
                        u.chunks as i64,
                        u.late_seconds,
                        log_index(leaf),
                    ]);
                duplicate(inserted, || format!("receipt {}", u.receipt_id))?;
            }
            for id in w.discards.iter().filter(|_| chunk_rows) {
                tx.prepare_cached(
                    "DELETE FROM upload_chunks WHERE upload_id = ?1
                     AND NOT EXISTS (SELECT 1 FROM uploads WHERE upload_id = ?1)",
                )?
                .execute(params![id])?;
            }
            log_from
        };
        let leaves = super::tlog::leaves_of(batch, now);
        let appended = if leaves.is_empty() {
            None
        } else {
            Some(super::tlog::sqlite_append(&tx, &leaves)?)
        };
        if let Some(first) = appended.as_ref().map(|a| a.first) {
            if first as i64 != log_from {
                // Rolled back: no row may name another record's entry.
                return Err(StoreError::Log(
                    crate::tlog::merkle::TreeError::OutOfRange {
                        what: format!("the log's size read at {log_from}"),
                        size: first,
                    },
                ));
            }
        }
        tx.commit()?;
        Ok(appended)
    }
}

impl Storage for SqliteStore {
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        self.commit_logged(batch).map(drop)
    }

    fn commit_logged(
        &mut self,
        batch: &[Record],
    ) -> Result<Option<super::tlog::Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let Some(mut files) = self.files.take() else {
            return self.commit_rows(batch, true);
        };
        let out = self.commit_with_files(&mut files, batch);
        self.files = Some(files);
        out
    }

    fn cert_status(&mut self, serial: &Serial) -> Result<CertStatus, StoreError> {
        let row: Option<StatusColumns> = self
            .conn
            .prepare_cached(
                "SELECT revoked_at, revoke_reason, origin, vouched FROM certs WHERE serial = ?1",
            )?
            .query_row(params![serial.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        status_of(row)
    }

    fn revoke_serial(
        &mut self,
        serial: &Serial,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        self.revoke("serial", &serial.to_string(), reason, at)
    }

    fn revoke_sid(
        &mut self,
        sid: &str,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        self.revoke("sid", sid, reason, at)
    }

    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT serial, sid, not_before, not_after, origin, revoked_at, revoke_reason, der,
                    authorised, vouched
             FROM certs ORDER BY issued_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(CertColumns {
                serial: r.get(0)?,
                sid: r.get(1)?,
                not_before: r.get(2)?,
                not_after: r.get(3)?,
                origin: r.get(4)?,
                revoked_at: r.get(5)?,
                reason: r.get(6)?,
                der: r.get(7)?,
                authorised: r.get(8)?,
                vouched: r.get(9)?,
            })
        })?;
        let columns = rows.collect::<Result<Vec<_>, _>>()?;
        columns.into_iter().map(CertColumns::into_row).collect()
    }

    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        self.reports_of(None)
    }

    fn submissions_of(
        &mut self,
        sid: &str,
    ) -> Result<(Vec<ReportRecord>, Vec<UploadRecord>), StoreError> {
        Ok((self.reports_of(Some(sid))?, self.uploads_of(Some(sid))?))
    }

    fn uploads(&mut self) -> Result<Vec<UploadRecord>, StoreError> {
        self.uploads_of(None)
    }

    fn upload_chunk(&mut self, upload_id: i64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        // A file's bytes are in its file; a store from before files keeps
        // them as rows, read as they were.
        if let Some(files) = &self.files {
            if files.has_file(upload_id) {
                return files.read_chunk(upload_id, seq);
            }
        }
        Ok(self
            .conn
            .prepare_cached("SELECT data FROM upload_chunks WHERE upload_id = ?1 AND seq = ?2")?
            .query_row(params![upload_id, seq as i64], |r| r.get(0))
            .optional()?)
    }

    fn staged_chunks(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM upload_chunks c
             WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.upload_id = c.upload_id)",
            [],
            |r| r.get(0),
        )?;
        let in_files = match &self.files {
            Some(files) => files.staged_chunks()?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0) + in_files)
    }

    fn discard_orphan_chunks(&mut self, before: i64) -> Result<u64, StoreError> {
        let in_files = match self.files.take() {
            Some(mut files) => {
                let conn = &self.conn;
                let recorded = |id: i64| -> Result<bool, StoreError> {
                    Ok(conn
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM uploads WHERE upload_id = ?1)",
                        )?
                        .query_row(params![id], |r| r.get(0))?)
                };
                let removed = files.remove_orphans(before, &recorded);
                self.files = Some(files);
                removed?
            }
            None => 0,
        };
        let n = self.conn.execute(
            "DELETE FROM upload_chunks WHERE upload_id IN (
                 SELECT c.upload_id FROM upload_chunks c
                 WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.upload_id = c.upload_id)
                 GROUP BY c.upload_id HAVING max(c.staged_at) < ?1)",
            params![before],
        )?;
        Ok(n as u64 + in_files)
    }

    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT serial, revoked_at, revoke_reason FROM certs
             WHERE revoked_at IS NOT NULL ORDER BY revoked_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RevocationColumns {
                serial: r.get(0)?,
                revoked_at: r.get(1)?,
                reason: r.get(2)?,
            })
        })?;
        let columns = rows.collect::<Result<Vec<_>, _>>()?;
        columns
            .into_iter()
            .map(RevocationColumns::into_revocation)
            .collect()
    }

    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError> {
        let (count, latest): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT count(*), coalesce(max(revoked_at), 0) FROM certs
                 WHERE revoked_at IS NOT NULL",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(RevocationMark {
            count: count.unsigned_abs(),
            latest,
        })
    }

    fn log_head(&mut self) -> Result<super::tlog::Head, StoreError> {
        use super::tlog::LogReader;
        Ok(self.conn.head()?)
    }

    fn log_nodes(
        &mut self,
        ids: &[crate::tlog::NodeId],
    ) -> Result<Vec<crate::tlog::Hash>, StoreError> {
        use super::tlog::LogReader;
        Ok(self.conn.nodes(ids)?)
    }

    fn log_entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        use super::tlog::LogReader;
        Ok(self.conn.entries(from, to)?)
    }

    fn log_entry_and_nodes(
        &mut self,
        index: u64,
        ids: &[crate::tlog::NodeId],
    ) -> Result<(Vec<u8>, Vec<crate::tlog::Hash>), StoreError> {
        // One read transaction (one snapshot, one set of WAL read locks)
        // for both.
        let tx = self.conn.transaction()?;
        let entry = super::tlog::sqlite_entries(&tx, index, index + 1)?
            .pop()
            .ok_or(StoreError::Log(
                crate::tlog::merkle::TreeError::MissingNode(crate::tlog::NodeId::new(0, index)),
            ))?;
        let nodes = super::tlog::sqlite_nodes_in(&tx, ids)?;
        tx.commit()?;
        Ok((entry, nodes))
    }

    fn log_index_of(&mut self, record: &str) -> Result<Option<u64>, StoreError> {
        Ok(super::tlog::sqlite_index_of(&self.conn, record)?)
    }

    fn check(&mut self) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("SELECT value FROM counters WHERE name = 'crl_number'")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        // A file removed or replaced under the server still answers from
        // the open descriptor, but nothing written now would be found at
        // the next start.
        let now = file_id(&self.path);
        if now.as_ref().ok() != self.file_id.as_ref() {
            let source = match now {
                Err(e) => e,
                Ok(_) => std::io::Error::other("the file was replaced"),
            };
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    source.kind(),
                    format!(
                        "the database file the server opened is no longer there ({source}); \
                         what it records now would be lost at restart"
                    ),
                ),
            });
        }
        Ok(())
    }

    fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'crl_number'",
            [],
        )?;
        let n: i64 = tx.query_row(
            "SELECT value FROM counters WHERE name = 'crl_number'",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn import_roster(&mut self, students: &[Student]) -> Result<RosterChange, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut change = RosterChange::default();
        {
            let mut get =
                tx.prepare_cached("SELECT name, dropped_at, email FROM roster WHERE sid = ?1")?;
            let mut add = tx.prepare_cached(
                "INSERT INTO roster (sid, name, added_at, email) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut rename =
                tx.prepare_cached("UPDATE roster SET name = ?2, dropped_at = NULL WHERE sid = ?1")?;
            let mut email = tx.prepare_cached("UPDATE roster SET email = ?2 WHERE sid = ?1")?;
            let now = now_unix();
            for s in students {
                let old: Option<(String, Option<i64>, Option<String>)> = get
                    .query_row(params![s.sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                change.count(
                    s,
                    old.as_ref().map(|(name, dropped, email)| {
                        (name.as_str(), dropped.is_some(), email.as_deref())
                    }),
                );
                match old {
                    None => {
                        add.execute(params![s.sid, s.name, now, s.email])?;
                    }
                    Some(_) => {
                        rename.execute(params![s.sid, s.name])?;
                    }
                }
                if s.email.is_some() {
                    email.execute(params![s.sid, s.email])?;
                }
            }
        }
        tx.commit()?;
        Ok(change)
    }

    fn roster(&mut self) -> Result<Vec<RosterEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.sid, r.name, r.email, r.dropped_at,
                    c.code_key, c.issued_at, c.used_at,
                    (SELECT count(*) FROM guesses g WHERE g.sid = r.sid AND g.at > ?1)
             FROM roster r LEFT JOIN codes c ON c.sid = r.sid ORDER BY r.sid",
        )?;
        type Row = (
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<CodeColumns>,
            i64,
        );
        let since = now_unix().saturating_sub(GUESS_RETENTION);
        let rows = stmt.query_map(params![since], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                code_columns(r, 4)?,
                r.get(7)?,
            ))
        })?;
        let columns: Vec<Row> = rows.collect::<Result<_, _>>()?;
        columns
            .into_iter()
            .map(|(sid, name, email, dropped_at, code, guesses)| {
                Ok(RosterEntry {
                    sid,
                    name,
                    code: code_state_of(code)?,
                    email,
                    dropped_at,
                    recent_guesses: guesses.unsigned_abs(),
                })
            })
            .collect()
    }

    fn enrollment_view(&mut self, sid: &str) -> Result<EnrollView, StoreError> {
        // One statement, so one read transaction (in WAL mode each takes and
        // drops its locks with `fcntl` and revalidates the page cache): the
        // roster's presence and her row together; a submission's hello and
        // its report each read this.
        let (roster_on, on_roster, code): (bool, bool, Option<CodeColumns>) = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM roster), r.sid IS NOT NULL,
                        c.code_key, c.issued_at, c.used_at
                 FROM (SELECT 1) LEFT JOIN roster r ON r.sid = ?1 AND r.dropped_at IS NULL
                 LEFT JOIN codes c ON c.sid = r.sid",
            )?
            .query_row(params![sid], |r| {
                Ok((r.get(0)?, r.get(1)?, code_columns(r, 2)?))
            })?;
        Ok(EnrollView {
            roster_on,
            on_roster,
            code: code_state_of(code)?,
        })
    }

    fn store_codes(
        &mut self,
        codes: &[(String, CodeKey)],
        at: i64,
        replace_unused: bool,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stored = Vec::new();
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO codes (sid, code_key, issued_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sid) DO UPDATE
                 SET code_key = excluded.code_key, issued_at = excluded.issued_at,
                     used_at = NULL, used_serial = NULL
                 WHERE codes.used_at IS NOT NULL OR ?4",
            )?;
            for (sid, key) in codes {
                if put.execute(params![sid, &key[..], at, replace_unused])? == 1 {
                    stored.push(sid.clone());
                }
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let (certs, reports, roster): (i64, i64, i64) = self.conn.query_row(
            "SELECT (SELECT count(*) FROM certs), (SELECT count(*) FROM reports),
                    (SELECT count(*) FROM roster WHERE dropped_at IS NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Counts {
            certs: certs.unsigned_abs(),
            reports: reports.unsigned_abs(),
            roster: roster.unsigned_abs(),
        })
    }

    fn census(&mut self, now: i64) -> Result<Census, StoreError> {
        let n: [i64; 6] = self.conn.query_row(CENSUS_SQL, params![now], |r| {
            Ok([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ])
        })?;
        Ok(census_of(n))
    }

    fn record_window(&mut self, open: Option<i64>, close: Option<i64>) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (name, value) in [("submissions_open", open), ("submissions_close", close)] {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn recorded_window(&mut self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let get = |name: &str| -> Result<Option<i64>, StoreError> {
            Ok(self
                .conn
                .query_row(
                    "SELECT value FROM settings WHERE name = ?1",
                    params![name],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .optional()?
                .flatten())
        };
        Ok((get("submissions_open")?, get("submissions_close")?))
    }

    fn put_assignment(&mut self, a: &Assignment) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO assignments (id, title, opens_at, due_at, late_until, closed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title,
                 opens_at = excluded.opens_at, due_at = excluded.due_at,
                 late_until = excluded.late_until, closed_at = excluded.closed_at",
            params![a.id, a.title, a.opens, a.due, a.late_until, a.closed_at],
        )?;
        Ok(())
    }

    fn assignments(&mut self) -> Result<Vec<Assignment>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, title, opens_at, due_at, late_until, closed_at FROM assignments
             ORDER BY due_at IS NOT NULL, due_at, id",
        )?;
        let rows = stmt.query_map([], assignment_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn submission_view(
        &mut self,
        sid: &str,
        assignment: &str,
    ) -> Result<SubmissionView, StoreError> {
        // One statement (one read transaction), read at a submission's hello
        // and again at its report: the assignment, her extension and the
        // course's time zone, which is there whether or not the assignment is.
        let (found, timezone) = self
            .conn
            .prepare_cached(
                "SELECT a.id, a.title, a.opens_at, a.due_at, a.late_until, a.closed_at,
                        (SELECT until FROM extensions e WHERE e.sid = ?1 AND e.assignment = a.id),
                        (SELECT value FROM course_settings WHERE name = ?3)
                 FROM (SELECT 1) LEFT JOIN assignments a ON a.id = ?2",
            )?
            .query_row(params![sid, assignment, super::TIMEZONE_SETTING], |r| {
                let found = match r.get::<_, Option<String>>(0)? {
                    Some(_) => Some((assignment_of(r)?, r.get::<_, Option<i64>>(6)?)),
                    None => None,
                };
                Ok((found, r.get::<_, Option<String>>(7)?))
            })?;
        let (assignment, extension) = match found {
            Some((a, e)) => (Some(a), e),
            None => (None, None),
        };
        Ok(SubmissionView {
            assignment,
            extension,
            timezone,
        })
    }

    fn extend(
        &mut self,
        sid: &str,
        assignment: &str,
        until: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        let inserted = self.conn.execute(
            "INSERT INTO extensions (sid, assignment, until, granted_at)
             SELECT ?1, id, ?3, ?4 FROM assignments WHERE id = ?2
             ON CONFLICT (sid, assignment) DO UPDATE
             SET until = excluded.until, granted_at = excluded.granted_at",
            params![sid, assignment, until, at],
        )?;
        if inserted == 0 {
            return Err(StoreError::NotFound(format!("assignment {assignment:?}")));
        }
        Ok(())
    }

    fn extensions(&mut self) -> Result<Vec<Extension>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT sid, assignment, until, granted_at FROM extensions ORDER BY assignment, sid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Extension {
                sid: r.get(0)?,
                assignment: r.get(1)?,
                until: r.get(2)?,
                granted_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn drop_student(&mut self, sid: &str, at: i64) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE roster SET dropped_at = ?2 WHERE sid = ?1 AND dropped_at IS NULL",
            params![sid, at],
        )? == 1)
    }

    fn set_course_setting(&mut self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO course_settings (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, v],
            )?,
            None => self
                .conn
                .execute("DELETE FROM course_settings WHERE name = ?1", params![name])?,
        };
        Ok(())
    }

    fn course_setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM course_settings WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?)
    }
}

impl StaffStorage for SqliteStore {
    fn add_staff(&mut self, name: &str, phc: &str, at: i64) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "INSERT INTO staff_accounts (name, phc, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, phc, at],
        )?;
        if n == 0 {
            return Err(StoreError::Duplicate(format!("staff account {name}")));
        }
        Ok(())
    }

    fn staff_accounts(&mut self) -> Result<Vec<StaffAccount>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, created_at FROM staff_accounts ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(StaffAccount {
                name: r.get(0)?,
                created_at: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn staff_password(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT phc FROM staff_accounts WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?)
    }

    fn remove_staff(&mut self, name: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM staff_sessions WHERE name = ?1", params![name])?;
        let n = tx.execute("DELETE FROM staff_accounts WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn count_login_attempt(&mut self, attempt: &LoginAttempt) -> Result<LoginVerdict, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM staff_login_attempts WHERE at <= ?1",
            params![attempt.retained_after()],
        )?;
        let mut by_source = Vec::new();
        let mut by_pair = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT name, at FROM staff_login_attempts WHERE source = ?1 AND at > ?2",
            )?;
            let rows = stmt.query_map(params![attempt.source, attempt.window_start()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (name, at) = row?;
                if name == attempt.name {
                    by_pair.push(at);
                }
                by_source.push(at);
            }
        }
        let verdict = attempt.verdict(&by_source, &by_pair);
        if verdict == LoginVerdict::Counted {
            tx.execute(
                "INSERT INTO staff_login_attempts (name, source, at) VALUES (?1, ?2, ?3)",
                params![attempt.name, attempt.source, attempt.at],
            )?;
        }
        tx.commit()?;
        Ok(verdict)
    }

    fn forget_login_attempts(&mut self, name: &str, source: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM staff_login_attempts WHERE name = ?1 AND source = ?2",
            params![name, source],
        )?;
        Ok(())
    }

    fn start_staff_session(&mut self, session: &StaffSession) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM staff_sessions WHERE expires_at <= ?1",
            params![session.created_at],
        )?;
        tx.execute(
            "INSERT INTO staff_sessions (token_hash, name, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                session.token_hash,
                session.name,
                session.csrf,
                session.created_at,
                session.expires_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn staff_session(
        &mut self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<StaffSession>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT s.token_hash, s.name, s.csrf, s.created_at, s.expires_at
                 FROM staff_sessions s JOIN staff_accounts a ON a.name = s.name
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            )?
            .query_row(params![token_hash, now], |r| {
                Ok(StaffSession {
                    token_hash: r.get(0)?,
                    name: r.get(1)?,
                    csrf: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn end_staff_session(&mut self, token_hash: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM staff_sessions WHERE token_hash = ?1",
            params![token_hash],
        )? == 1)
    }

    fn audit(&mut self, e: &AuditEntry) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO staff_audit (at, who, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.at, e.who, e.action, e.target, e.detail],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn settle_audit(&mut self, id: i64, detail: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE staff_audit SET detail = ?2 WHERE id = ?1",
            params![id, detail],
        )? == 1)
    }

    fn audit_log(&mut self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, at, who, action, target, detail FROM staff_audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                who: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// An `assignments` row from its first six columns.
fn assignment_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Assignment> {
    Ok(Assignment {
        id: r.get(0)?,
        title: r.get(1)?,
        opens: r.get(2)?,
        due: r.get(3)?,
        late_until: r.get(4)?,
        closed_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    //! What only the SQLite engine has; the behaviour both engines share is
    //! the contract in `tests/store_contract.rs`.
    use super::*;
    use crate::store::{Authorisation, CertRecord, Origin};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A serial as the records carry it.
    fn sn(hex: &str) -> Serial {
        Serial::parse_hex(hex).expect("a test serial is hex")
    }

    fn cert(serial: &str, sid: &str) -> Record {
        Record::Cert(CertRecord {
            serial: sn(serial),
            sid: sid.into(),
            not_before: 1,
            not_after: 2,
            der: vec![0x30, 0x00],
            origin: Origin::Certboard,
            authorised: Authorisation::Open,
        })
    }

    fn roster_of(s: &mut SqliteStore, sids: &[&str]) -> Result<(), StoreError> {
        let students: Vec<Student> = sids
            .iter()
            .map(|sid| Student {
                sid: sid.to_string(),
                name: format!("Student {sid}"),
                email: None,
            })
            .collect();
        s.import_roster(&students).map(|_| ())
    }

    #[test]
    fn a_version_1_database_is_migrated() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(DB_FILE);
        {
            let c = Connection::open(&path)?;
            c.execute_batch(SCHEMA)?;
            c.execute_batch(&format!(
                "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version=1;"
            ))?;
        }
        let mut s = SqliteStore::open(dir.path())?;
        roster_of(&mut s, &["1155000001"])?;
        assert_eq!(s.counts()?.roster, 1);
        s.record_window(Some(5), None)?;
        assert_eq!(s.recorded_window()?, (Some(5), None));
        Ok(())
    }

    /// Reports recorded before assignments existed belong to the lab, on
    /// time; the roster keeps its students, without e-mail. A version 2
    /// database passes through steps 3 to 5 (guesses, vouching, the log) on
    /// the way.
    #[test]
    fn a_version_2_database_is_migrated_to_assignments() -> TestResult {
        migrated_to_assignments_from(2)
    }

    /// The same from version 5, which has only the assignments' step left.
    #[test]
    fn a_version_5_database_is_migrated_to_assignments() -> TestResult {
        migrated_to_assignments_from(5)
    }

    fn migrated_to_assignments_from(version: usize) -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let c = Connection::open(dir.path().join(DB_FILE))?;
            for step in &MIGRATIONS[..version] {
                c.execute_batch(step)?;
            }
            c.execute_batch(&format!(
                "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={version};
                 INSERT INTO roster VALUES ('1155000001', 'One', 1);
                 INSERT INTO reports VALUES (7, '1155000001', '0A', 5, 'old', 'certboard');"
            ))?;
        }
        let mut s = SqliteStore::open(dir.path())?;
        let r = &s.reports()?[0];
        assert_eq!((r.assignment.as_str(), r.late_by), ("lab", None));
        let e = &s.roster()?[0];
        assert_eq!((e.email.as_deref(), e.dropped_at), (None, None));
        assert!(s.assignments()?.is_empty());
        Ok(())
    }

    /// Step 4 marks what an older database held: the certificate that spent
    /// a code is vouched; an open one from before the roster is not, nor is a
    /// later one of the same SID (which chain it grew from is unknown); a
    /// later one of a SID without an open one is a vouched renewal. A
    /// version 2 database passes through step 3 (guesses) on the way.
    #[test]
    fn a_version_2_database_learns_who_vouches() -> TestResult {
        learns_who_vouches_from(2)
    }

    /// The same marks from version 3 (guesses already counted), which has
    /// only step 4 left.
    #[test]
    fn a_version_3_database_learns_who_vouches() -> TestResult {
        learns_who_vouches_from(3)
    }

    fn learns_who_vouches_from(version: usize) -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(DB_FILE);
        {
            let c = Connection::open(&path)?;
            for step in &MIGRATIONS[..version] {
                c.execute_batch(step)?;
            }
            c.execute_batch(&format!(
                "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={version};
                 INSERT INTO roster VALUES ('a', 'A', 100), ('b', 'B', 100);
                 INSERT INTO codes (sid, code_key, issued_at, used_at, used_serial)
                     VALUES ('a', x'00', 100, 110, '02'), ('b', x'00', 100, 110, '04');
                 INSERT INTO certs (serial, sid, subject, not_before, not_after, der, origin, issued_at)
                 VALUES ('01', 'a', 'CN=a', 0, 9, x'30', 'certboard', 50),
                        ('02', 'a', 'CN=a', 0, 9, x'30', 'certboard', 110),
                        ('03', 'a', 'CN=a', 0, 9, x'30', 'certboard', 120),
                        ('04', 'b', 'CN=b', 0, 9, x'30', 'certboard', 110),
                        ('05', 'b', 'CN=b', 0, 9, x'30', 'certboard', 120);"
            ))?;
        }
        let mut s = SqliteStore::open(dir.path())?;
        // Listed by issue time.
        let marks: Vec<(String, &str, bool)> = s
            .certs()?
            .iter()
            .map(|c| (c.serial.to_string(), c.authorised.as_str(), c.vouched))
            .collect();
        let want = [
            ("01", "open", false),
            ("02", "code", true),
            ("04", "code", true),
            ("03", "renewal", false),
            ("05", "renewal", true),
        ];
        assert_eq!(marks, want.map(|(s, a, v)| (s.to_string(), a, v)).to_vec());
        // Step 3's table is there too, whichever version it started from.
        let c = Connection::open(&path)?;
        let guesses: i64 = c.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'guesses'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(guesses, 1);
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(v, SCHEMA_VERSION);
        Ok(())
    }

    /// Step 9 moves each record's entry index into its own row, filled
    /// for what a version 8 database logged (a receipt id over 2^63 too),
    /// and drops the unique index on the entries' record names; the log
    /// itself is unchanged and the next commit goes on from it.
    #[test]
    fn a_version_8_database_keeps_each_entry_index_in_its_record() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(DB_FILE);
        let big = u64::MAX - 2;
        let before = {
            let mut c = Connection::open(&path)?;
            for step in &MIGRATIONS[..8] {
                c.execute_batch(step)?;
            }
            c.execute_batch(&format!(
                "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version=8;
                 INSERT INTO certs (serial, sid, subject, not_before, not_after, der, origin, issued_at)
                 VALUES ('0A', 'a', 'CN=a', 0, 9, x'30', 'certboard', 50);
                 INSERT INTO reports (receipt_id, sid, serial, received_at, text, origin)
                 VALUES ({}, 'a', '0A', 5, 'old', 'certboard'), (3, 'a', '0A', 6, 'unlogged', 'certboard');
                 INSERT INTO uploads (receipt_id, upload_id, sid, serial, received_at, assignment,
                                      file_name, size, sha256, chunks, late_seconds)
                 VALUES (9, 1, 'a', '0A', 7, 'lab', 'f', 0, x'00', 0, 0);",
                big as i64
            ))?;
            let tx = c.transaction()?;
            let leaves: Vec<(String, Vec<u8>)> = [
                super::super::tlog::cert_record_key("0A"),
                super::super::tlog::report_record_key(big),
                super::super::tlog::upload_record_key(9),
            ]
            .into_iter()
            .map(|k| (k.clone(), k.into_bytes()))
            .collect();
            let a =
                super::super::tlog::sqlite_append(&tx, &leaves).map_err(|e| format!("{e:?}"))?;
            tx.commit()?;
            a
        };
        let mut s = SqliteStore::open(dir.path())?;
        let head = s.log_head()?;
        assert_eq!((head.size, head.root), (before.size, before.root));
        for (key, want) in [
            (super::super::tlog::cert_record_key("0A"), Some(0)),
            (super::super::tlog::report_record_key(big), Some(1)),
            (super::super::tlog::upload_record_key(9), Some(2)),
            (super::super::tlog::report_record_key(3), None),
        ] {
            assert_eq!(s.log_index_of(&key)?, want, "{key}");
        }
        assert_eq!(
            s.log_entries(1, 2)?,
            vec![b"report:18446744073709551613".to_vec()]
        );
        let c = Connection::open(&path)?;
        let indexes: i64 = c.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tlog_entries'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(indexes, 0, "no index on the entries' record names");
        let next = s.commit_logged(&[Record::Report(ReportRecord {
            receipt_id: 4,
            sid: "a".into(),
            serial: crate::ca::Serial::parse_hex("0A")?,
            received_at: 8,
            text: "new".into(),
            origin: crate::store::Origin::Certboard,
            assignment: "lab".into(),
            late_by: None,
        })])?;
        assert_eq!(next.map(|a| a.first), Some(3));
        assert_eq!(
            s.log_index_of(&super::super::tlog::report_record_key(4))?,
            Some(3)
        );
        Ok(())
    }

    #[test]
    fn in_memory_is_the_same_engine_and_private_to_its_value() -> TestResult {
        let mut s = SqliteStore::in_memory()?;
        s.commit(&[cert("01", "a")])?;
        let err = s.commit(&[cert("01", "b")]).err();
        assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
        assert_eq!(s.next_crl_number()?, 1);
        assert_eq!(s.revoke_sid("a", RevocationReason::Superseded, 3)?, 1);
        assert!(matches!(
            s.cert_status(&sn("01"))?,
            CertStatus::Revoked { at: 3, .. }
        ));
        // A second one shares nothing with the first.
        let mut other = SqliteStore::in_memory()?;
        assert_eq!(other.cert_status(&sn("01"))?, CertStatus::Unknown);
        assert_eq!(other.next_crl_number()?, 1);
        Ok(())
    }

    use crate::testing::upload_file_records as file;

    fn read_all(s: &mut SqliteStore, upload_id: i64) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        let mut seq = 0;
        while let Some(c) = s.upload_chunk(upload_id, seq)? {
            out.extend(c);
            seq += 1;
        }
        Ok(out)
    }

    fn chunk_rows(s: &SqliteStore) -> Result<i64, rusqlite::Error> {
        s.conn
            .query_row("SELECT count(*) FROM upload_chunks", [], |r| r.get(0))
    }

    /// Bytes of 150 KiB: three chunks, the last short.
    fn bytes() -> Vec<u8> {
        (0..150 * 1024).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn an_upload_is_a_file_not_rows_and_reads_back_whole() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        let data = bytes();
        s.commit(&file(1, 77, &data))?;
        assert_eq!(chunk_rows(&s)?, 0);
        assert_eq!(std::fs::read(dir.path().join("uploads/77"))?, data);
        assert!(!dir.path().join("uploads/77.part").exists());
        assert_eq!(read_all(&mut s, 77)?, data);
        // Another handle (an admin command) reads it too.
        assert_eq!(read_all(&mut SqliteStore::open(dir.path())?, 77)?, data);
        Ok(())
    }

    /// A store from before files keeps its chunks as rows: they are read
    /// as they were, beside new uploads' files.
    #[test]
    fn an_older_stores_chunk_rows_are_still_read() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        let old = bytes();
        let files = s.files.take();
        s.commit(&file(1, 5, &old))?;
        s.files = files;
        assert_eq!(chunk_rows(&s)?, 3);
        let new = b"a file".to_vec();
        s.commit(&file(2, 6, &new))?;
        let mut again = SqliteStore::open(dir.path())?;
        assert_eq!(read_all(&mut again, 5)?, old);
        assert_eq!(read_all(&mut again, 6)?, new);
        assert_eq!(again.staged_chunks()?, 0);
        Ok(())
    }

    /// A failed transaction takes back what the files took: the chunk can
    /// be staged again, and no whole file stands without its row.
    #[test]
    fn a_failed_commit_leaves_the_files_as_they_were() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        s.commit(&file(1, 5, b"first"))?;
        // Receipt 1 again: refused whole.
        assert!(s.commit(&file(1, 6, b"second")).is_err());
        assert!(!dir.path().join("uploads/6").exists());
        assert_eq!(std::fs::read(dir.path().join("uploads/6.part"))?, b"");
        s.commit(&file(2, 6, b"second"))?;
        assert_eq!(read_all(&mut s, 6)?, b"second");
        Ok(())
    }

    /// The backup is one file: uploads' files go into it as chunk rows.
    #[test]
    fn a_backup_holds_the_uploaded_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        let data = bytes();
        s.commit(&file(1, 9, &data))?;
        let elsewhere = tempfile::tempdir()?;
        let copy = elsewhere.path().join(DB_FILE);
        s.backup_to(&copy)?;
        let mut b = SqliteStore::open(elsewhere.path())?;
        assert_eq!(chunk_rows(&b)?, 3);
        assert_eq!(read_all(&mut b, 9)?, data);
        Ok(())
    }

    #[test]
    fn backup_is_a_working_copy() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        s.commit(&[cert("0A", "a")])?;
        let copy = dir.path().join("copy.sqlite3");
        s.backup_to(&copy)?;
        assert_eq!(
            std::fs::metadata(&copy)?.permissions().mode() & 0o777,
            0o600
        );
        assert!(s.backup_to(&copy).is_err(), "never overwrites");
        let mut b = SqliteStore::open_file(&copy)?;
        assert_eq!(
            b.cert_status(&sn("0A"))?,
            CertStatus::Good {
                origin: Origin::Certboard,
                vouched: false
            }
        );
        Ok(())
    }

    #[test]
    fn refuses_foreign_and_future_databases() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("other.db");
        {
            let c = Connection::open(&path)?;
            c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")?;
        }
        let err = SqliteStore::open_file(&path).err();
        assert!(matches!(err, Some(StoreError::Incompatible(_))), "{err:?}");
        // The foreign data is untouched.
        let c = Connection::open(&path)?;
        let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
        assert_eq!(n, 1);

        SqliteStore::open(dir.path())?;
        {
            let c = Connection::open(dir.path().join(DB_FILE))?;
            c.execute_batch("PRAGMA user_version=99;")?;
        }
        let err = SqliteStore::open(dir.path()).err();
        assert!(
            matches!(&err, Some(StoreError::Incompatible(m)) if m.contains("version 99")),
            "{err:?}"
        );
        Ok(())
    }
}
