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

use super::{
    CertRow, CertStatus, Origin, Record, ReportRecord, Revocation, RevocationMark, Storage,
    StoreError,
};
use crate::time::now_unix;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;
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

impl SqliteStore {
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
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            file_id: file_id(path).ok(),
        };
        store.check_or_create_schema()?;
        Ok(store)
    }

    /// Writes a consistent copy of the database to `dest` (which must not
    /// exist), safe while the server runs: `VACUUM INTO` reads one snapshot.
    pub fn backup_to(&mut self, dest: &Path) -> Result<(), StoreError> {
        let io = |kind: std::io::ErrorKind, msg: &str| StoreError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(kind, msg.to_string()),
        };
        if dest.exists() {
            return Err(io(
                std::io::ErrorKind::AlreadyExists,
                "refusing to overwrite",
            ));
        }
        let name = dest
            .to_str()
            .ok_or_else(|| io(std::io::ErrorKind::InvalidInput, "path is not UTF-8"))?;
        self.conn.execute("VACUUM INTO ?1", params![name])?;
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
        if (app, version, tables) == (0, 0, 0) {
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(&format!(
                "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION};"
            ))?;
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
        reason: &str,
        at: i64,
    ) -> Result<usize, StoreError> {
        let sql = format!(
            "UPDATE certs SET revoked_at = ?1, revoke_reason = ?2 WHERE {clause} = ?3 AND revoked_at IS NULL"
        );
        Ok(self.conn.execute(&sql, params![at, reason, key])?)
    }
}

impl Storage for SqliteStore {
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut cert_stmt = tx.prepare_cached(
                "INSERT INTO certs (serial, sid, subject, not_before, not_after, der, origin, issued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut report_stmt = tx.prepare_cached(
                "INSERT INTO reports (receipt_id, sid, serial, received_at, text, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let now = now_unix();
            for record in batch {
                let result = match record {
                    Record::Cert(c) => cert_stmt.execute(params![
                        c.serial_hex,
                        c.sid,
                        format!("CN={}", c.sid),
                        c.not_before,
                        c.not_after,
                        c.der,
                        c.origin.as_str(),
                        now,
                    ]),
                    // SQLite integers are signed: the receipt id is stored as
                    // the same 64 bits reinterpreted.
                    Record::Report(r) => report_stmt.execute(params![
                        r.receipt_id as i64,
                        r.sid,
                        r.serial_hex,
                        r.received_at,
                        r.text,
                        r.origin.as_str(),
                    ]),
                };
                if let Err(e) = result {
                    if is_unique_violation(&e) {
                        let what = match record {
                            Record::Cert(c) => format!("serial {}", c.serial_hex),
                            Record::Report(r) => format!("receipt {}", r.receipt_id),
                        };
                        return Err(StoreError::Duplicate(what));
                    }
                    return Err(e.into());
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn cert_status(&mut self, serial_hex: &str) -> Result<CertStatus, StoreError> {
        let row: Option<(Option<i64>, Option<String>, String)> = self
            .conn
            .prepare_cached(
                "SELECT revoked_at, revoke_reason, origin FROM certs WHERE serial = ?1",
            )?
            .query_row(params![serial_hex], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        Ok(match row {
            None => CertStatus::Unknown,
            Some((None, _, origin)) => CertStatus::Good {
                origin: Origin::parse(&origin),
            },
            Some((Some(at), reason, _)) => CertStatus::Revoked {
                at,
                reason: reason.unwrap_or_default(),
            },
        })
    }

    fn revoke_serial(
        &mut self,
        serial_hex: &str,
        reason: &str,
        at: i64,
    ) -> Result<usize, StoreError> {
        self.revoke("serial", serial_hex, reason, at)
    }

    fn revoke_sid(&mut self, sid: &str, reason: &str, at: i64) -> Result<usize, StoreError> {
        self.revoke("sid", sid, reason, at)
    }

    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT serial, sid, not_before, not_after, origin, revoked_at, revoke_reason, der
             FROM certs ORDER BY issued_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let at: Option<i64> = r.get(5)?;
            let reason: Option<String> = r.get(6)?;
            Ok(CertRow {
                serial_hex: r.get(0)?,
                sid: r.get(1)?,
                not_before: r.get(2)?,
                not_after: r.get(3)?,
                origin: r.get(4)?,
                revoked: at.map(|at| (at, reason.unwrap_or_default())),
                der: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT receipt_id, sid, serial, received_at, text, origin FROM reports
             ORDER BY received_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let id: i64 = r.get(0)?;
            let origin: String = r.get(5)?;
            Ok(ReportRecord {
                receipt_id: id as u64,
                sid: r.get(1)?,
                serial_hex: r.get(2)?,
                received_at: r.get(3)?,
                text: r.get(4)?,
                origin: Origin::parse(&origin),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT serial, revoked_at, revoke_reason FROM certs
             WHERE revoked_at IS NOT NULL ORDER BY revoked_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let reason: Option<String> = r.get(2)?;
            Ok(Revocation {
                serial_hex: r.get(0)?,
                at: r.get(1)?,
                reason: reason.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CertRecord;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn cert(serial: &str, sid: &str) -> Record {
        Record::Cert(CertRecord {
            serial_hex: serial.into(),
            sid: sid.into(),
            not_before: 1,
            not_after: 2,
            der: vec![0x30, 0x00],
            origin: Origin::Certboard,
        })
    }

    #[test]
    fn records_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let mut s = SqliteStore::open(dir.path())?;
            s.commit(&[
                cert("AA", "alice"),
                Record::Report(ReportRecord {
                    receipt_id: u64::MAX,
                    sid: "alice".into(),
                    serial_hex: "AA".into(),
                    received_at: 5,
                    text: "hello\n".into(),
                    origin: Origin::Legacy,
                }),
            ])?;
        }
        let mut s = SqliteStore::open(dir.path())?;
        assert_eq!(
            s.cert_status("AA")?,
            CertStatus::Good {
                origin: Origin::Certboard
            }
        );
        assert_eq!(s.cert_status("BB")?, CertStatus::Unknown);
        let reports = s.reports()?;
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].receipt_id, u64::MAX);
        assert_eq!(reports[0].origin, Origin::Legacy);
        assert_eq!(s.certs()?[0].sid, "alice");
        Ok(())
    }

    #[test]
    fn a_batch_is_all_or_nothing_and_serials_are_never_reused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        s.commit(&[cert("01", "a")])?;
        let err = s.commit(&[cert("02", "b"), cert("01", "c")]).err();
        assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
        assert_eq!(s.cert_status("02")?, CertStatus::Unknown, "rolled back");
        assert_eq!(s.certs()?.len(), 1);
        Ok(())
    }

    #[test]
    fn revocation_by_serial_and_sid() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        s.commit(&[cert("01", "a"), cert("02", "a"), cert("03", "b")])?;
        assert_eq!(s.revoke_serial("03", "keyCompromise", 10)?, 1);
        assert_eq!(s.revoke_serial("03", "again", 11)?, 0, "already revoked");
        assert_eq!(s.revoke_sid("a", "", 12)?, 2);
        assert_eq!(
            s.cert_status("03")?,
            CertStatus::Revoked {
                at: 10,
                reason: "keyCompromise".into()
            }
        );
        // Seen at once by another connection, as Blackboard would.
        let mut other = SqliteStore::open(dir.path())?;
        assert!(matches!(
            other.cert_status("01")?,
            CertStatus::Revoked { .. }
        ));
        // What the CRL is made from, and the mark that tells it changed.
        let revoked = other.revocations()?;
        assert_eq!(revoked.len(), 3);
        assert_eq!((revoked[0].serial_hex.as_str(), revoked[0].at), ("03", 10));
        assert_eq!(revoked[0].reason, "keyCompromise");
        let mark = other.revocation_mark()?;
        assert_eq!((mark.count, mark.latest), (3, 12));
        other.check()?;
        Ok(())
    }

    #[test]
    fn backup_is_a_working_copy() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        s.commit(&[cert("0A", "a")])?;
        let copy = dir.path().join("copy.sqlite3");
        s.backup_to(&copy)?;
        assert!(s.backup_to(&copy).is_err(), "never overwrites");
        let mut b = SqliteStore::open_file(&copy)?;
        assert_eq!(
            b.cert_status("0A")?,
            CertStatus::Good {
                origin: Origin::Certboard
            }
        );
        Ok(())
    }

    #[test]
    fn crl_numbers_increase() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = SqliteStore::open(dir.path())?;
        assert_eq!(s.next_crl_number()?, 1);
        assert_eq!(s.next_crl_number()?, 2);
        drop(s);
        assert_eq!(SqliteStore::open(dir.path())?.next_crl_number()?, 3);
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
