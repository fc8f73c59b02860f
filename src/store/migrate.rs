//! `server migrate --to postgres://...`: the whole SQLite store copied into
//! an empty PostgreSQL database in one transaction, checked, then
//! committed; or nothing at all.
//!
//! The copy is generic: every table named in [`TABLES`] is copied column
//! by column, the columns found in the SQLite file and matched by name to
//! the PostgreSQL table (whose own extra columns, such as the insertion
//! order `seq`, take their defaults). So a new table is one line in
//! [`TABLES`], in both engines under the same name. A table in the source
//! that is not listed is refused, never skipped: a copy that silently left
//! data behind would be worse than none.
//!
//! SQLite's `counters` rows become PostgreSQL sequences of the same name
//! (`crl_number`), set so the next number taken follows the last one
//! handed out; identity columns copied explicitly have their sequences
//! moved past the largest value copied.

use std::fmt;
use std::path::Path;

use postgres::types::{ToSql, Type};
use rusqlite::types::Value;

use super::postgres::chain;
use super::{PostgresStore, SqliteStore, StoreError};

/// The tables copied, in this order: a table that another's foreign key
/// names comes first. One line per table.
const TABLES: &[&str] = &[
    "certs",
    "reports", // The codes refer to the roster: it comes first.
    "roster",
    "codes",
    "settings",
    "guesses",
    // Extensions refer to the assignments.
    "assignments",
    "extensions",
    "course_settings",
    // The log's leaves and stored hashes.
    "tlog_entries",
    "tlog_nodes",
    // Staged chunks, then the files naming them.
    "upload_chunks",
    "uploads",
    // The staff interface's accounts, sessions, audit log and attempts.
    "staff_accounts",
    "staff_sessions",
    "staff_audit",
    "staff_login_attempts",
];

/// The log's one-row tree head: made with the schema in both engines, so
/// it is set, not copied (and the target's must still be the empty tree).
const LOG_HEAD: &str = "tlog_head";

/// The SQLite table of named counters, copied into sequences.
const COUNTERS: &str = "counters";

/// Why `migrate` copied nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrateError {
    /// Opening or reading the SQLite source, or opening the PostgreSQL
    /// target (a bad URL, a refused login, a foreign schema) failed.
    Store(StoreError),
    /// The source has a table this build does not know how to copy.
    UnknownTable(String),
    /// The source has a counter with no sequence of that name in the target.
    UnknownCounter(String),
    /// A source column the target table lacks, or of a type it cannot take.
    Column {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What does not fit, e.g. "no such column in PostgreSQL".
        problem: &'static str,
    },
    /// The target already holds records (or has handed out a CRL number).
    TargetNotEmpty {
        /// `user@host:port/database`.
        target: String,
        /// What it holds, e.g. "3 row(s) in certs".
        holds: String,
    },
    /// After the copy, the target's count differs from the source's
    /// (the transaction was rolled back).
    CountMismatch {
        /// The table or counter.
        table: String,
        /// In SQLite.
        source: i64,
        /// In PostgreSQL, inside the copy's transaction.
        target: i64,
    },
    /// A statement on the target failed (the transaction was rolled back).
    Target {
        /// What was being done.
        what: &'static str,
        /// The server's or the client library's error.
        source: postgres::Error,
    },
    /// Reading the source failed.
    Source(rusqlite::Error),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Store(e) => write!(f, "{e}"),
            MigrateError::UnknownTable(t) => write!(
                f,
                "the SQLite store has a table {t:?} that this build cannot copy; nothing was written"
            ),
            MigrateError::UnknownCounter(c) => write!(
                f,
                "the SQLite store has a counter {c:?} with no PostgreSQL sequence of that name; nothing was written"
            ),
            MigrateError::Column {
                table,
                column,
                problem,
            } => write!(f, "{table}.{column}: {problem}; nothing was written"),
            MigrateError::TargetNotEmpty { target, holds } => write!(
                f,
                "{target} is not empty ({holds}): migrate copies only into an empty database; nothing was written"
            ),
            MigrateError::CountMismatch {
                table,
                source,
                target,
            } => write!(
                f,
                "{table}: {source} in SQLite but {target} copied; rolled back, nothing was written"
            ),
            MigrateError::Target { what, source } => write!(
                f,
                "{what}: {}; rolled back, nothing was written",
                chain(source)
            ),
            MigrateError::Source(e) => write!(f, "reading the SQLite store: {e}"),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrateError::Store(e) => Some(e),
            MigrateError::Target { source, .. } => Some(source),
            MigrateError::Source(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for MigrateError {
    fn from(e: StoreError) -> Self {
        MigrateError::Store(e)
    }
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Source(e)
    }
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// `user@host:port/database`.
    pub target: String,
    /// Rows per table, in copy order.
    pub tables: Vec<(String, i64)>,
    /// Counters and their values.
    pub counters: Vec<(String, i64)>,
}

/// A PostgreSQL column's type, as far as the copy converts values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgKind {
    Int8,
    Int4,
    Int2,
    Bool,
    Float8,
    Text,
    Bytea,
}

impl PgKind {
    fn of(data_type: &str) -> Option<PgKind> {
        Some(match data_type {
            "bigint" => PgKind::Int8,
            "integer" => PgKind::Int4,
            "smallint" => PgKind::Int2,
            "boolean" => PgKind::Bool,
            "double precision" => PgKind::Float8,
            "text" => PgKind::Text,
            "bytea" => PgKind::Bytea,
            _ => return None,
        })
    }

    fn pg_type(self) -> Type {
        match self {
            PgKind::Int8 => Type::INT8,
            PgKind::Int4 => Type::INT4,
            PgKind::Int2 => Type::INT2,
            PgKind::Bool => Type::BOOL,
            PgKind::Float8 => Type::FLOAT8,
            PgKind::Text => Type::TEXT,
            PgKind::Bytea => Type::BYTEA,
        }
    }

    /// The SQLite value as a parameter of this type; `None` if it does not
    /// fit (text in an integer column, an integer out of range).
    fn convert(self, v: Value) -> Option<Box<dyn ToSql + Sync>> {
        Some(match (self, v) {
            (PgKind::Int8, Value::Integer(i)) => Box::new(Some(i)),
            (PgKind::Int8, Value::Null) => Box::new(None::<i64>),
            (PgKind::Int4, Value::Integer(i)) => Box::new(Some(i32::try_from(i).ok()?)),
            (PgKind::Int4, Value::Null) => Box::new(None::<i32>),
            (PgKind::Int2, Value::Integer(i)) => Box::new(Some(i16::try_from(i).ok()?)),
            (PgKind::Int2, Value::Null) => Box::new(None::<i16>),
            (PgKind::Bool, Value::Integer(i @ (0 | 1))) => Box::new(Some(i == 1)),
            (PgKind::Bool, Value::Null) => Box::new(None::<bool>),
            (PgKind::Float8, Value::Real(x)) => Box::new(Some(x)),
            (PgKind::Float8, Value::Null) => Box::new(None::<f64>),
            (PgKind::Text, Value::Text(s)) => Box::new(Some(s)),
            (PgKind::Text, Value::Null) => Box::new(None::<String>),
            (PgKind::Bytea, Value::Blob(b)) => Box::new(Some(b)),
            (PgKind::Bytea, Value::Null) => Box::new(None::<Vec<u8>>),
            _ => return None,
        })
    }
}

/// A PostgreSQL column of a target table.
struct PgColumn {
    name: String,
    kind: Option<PgKind>,
    identity: bool,
}

/// `"name"`: identifiers here come from the two schemas, never from a user,
/// but are quoted all the same.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies the SQLite store in `data_dir` into the PostgreSQL database at
/// `url`, which must be empty (no tables, or certboard's schema with no
/// rows and no CRL number taken). One transaction: on any error nothing
/// is left in the target but, at most, the empty schema.
pub fn migrate(data_dir: &Path, url: &str) -> Result<Migrated, MigrateError> {
    let mut source = SqliteStore::open_existing(data_dir)?;
    // The uploads' files beside the database, read by a second handle
    // (the first is borrowed by the snapshot).
    let source_files = SqliteStore::open_existing(data_dir)?;
    let conn = source.connection_mut();
    // One read snapshot for every table: the counts checked at the end are
    // those of the rows copied.
    let snapshot = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let mut names = Vec::new();
    {
        let mut stmt = snapshot.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for name in rows {
            names.push(name?);
        }
    }
    if let Some(unknown) = names
        .iter()
        .find(|n| n.as_str() != COUNTERS && n.as_str() != LOG_HEAD && !TABLES.contains(&n.as_str()))
    {
        return Err(MigrateError::UnknownTable(unknown.clone()));
    }
    let mut counters: Vec<(String, i64)> = Vec::new();
    if names.iter().any(|n| n == COUNTERS) {
        let mut stmt = snapshot.prepare("SELECT name, value FROM counters ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            counters.push(row?);
        }
    }

    // The target: created if empty, refused if foreign or newer.
    let mut target = PostgresStore::open(url)?;
    let shown = target.target().to_string();
    let client = target.client()?;
    let pg = |what: &'static str| move |source| MigrateError::Target { what, source };
    let mut tx = client
        .transaction()
        .map_err(pg("starting the transaction"))?;
    // No server may write while the copy runs (one started on the target
    // by mistake waits, then finds the records there).
    let all: Vec<String> = TABLES.iter().chain([&LOG_HEAD]).map(|t| ident(t)).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        all.join(", ")
    ))
    .map_err(pg("locking the target's tables"))?;
    for table in TABLES {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", ident(table)), &[])
            .and_then(|r| r.try_get(0))
            .map_err(pg("counting the target's rows"))?;
        if n > 0 {
            return Err(MigrateError::TargetNotEmpty {
                target: shown,
                holds: format!("{n} row(s) in {table}"),
            });
        }
    }
    let log_head: Option<(i64, Vec<u8>)> = if names.iter().any(|n| n == LOG_HEAD) {
        Some(
            snapshot.query_row("SELECT size, root FROM tlog_head", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?,
        )
    } else {
        None
    };
    let target_size: i64 = tx
        .query_one("SELECT size FROM tlog_head", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg("reading the target's log head"))?;
    if target_size != 0 {
        return Err(MigrateError::TargetNotEmpty {
            target: shown,
            holds: format!("a transparency log of {target_size} entries"),
        });
    }
    for (name, _) in &counters {
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relname = $1 AND c.relkind = 'S')",
                &[name],
            )
            .and_then(|r| r.try_get(0))
            .map_err(pg("looking for the counters' sequences"))?;
        if !exists {
            return Err(MigrateError::UnknownCounter(name.clone()));
        }
        let used: bool = tx
            .query_one(&format!("SELECT is_called FROM {}", ident(name)), &[])
            .and_then(|r| r.try_get(0))
            .map_err(pg("reading a sequence"))?;
        if used {
            return Err(MigrateError::TargetNotEmpty {
                target: shown,
                holds: format!("sequence {name} already used"),
            });
        }
    }

    let mut copied = Vec::new();
    for table in TABLES {
        if !names.iter().any(|n| n == table) {
            // An older store without this table: nothing to copy.
            continue;
        }
        let mut n = copy_table(&snapshot, &mut tx, table)?;
        if *table == "upload_chunks" {
            n += copy_upload_files(&source_files, &snapshot, &mut tx)?;
        }
        copied.push((table.to_string(), n));
    }
    if let Some((size, root)) = &log_head {
        tx.execute("UPDATE tlog_head SET size = $1, root = $2", &[size, root])
            .map_err(pg("setting the log head"))?;
    }
    for (name, value) in &counters {
        // Next number handed out: value + 1 (a counter at 0 has handed out
        // none, and the fresh sequence already starts at 1).
        if *value > 0 {
            tx.query_one(
                "SELECT setval($1::text::regclass, $2, true)",
                &[&ident(name), value],
            )
            .map_err(pg("setting a sequence"))?;
        }
        let (last, called): (i64, bool) = tx
            .query_one(
                &format!("SELECT last_value, is_called FROM {}", ident(name)),
                &[],
            )
            .and_then(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .map_err(pg("reading a sequence"))?;
        let handed_out = if called { last } else { 0 };
        if handed_out != *value {
            return Err(MigrateError::CountMismatch {
                table: format!("counter {name}"),
                source: *value,
                target: handed_out,
            });
        }
    }
    tx.commit().map_err(pg("committing the copy"))?;
    drop(snapshot);
    Ok(Migrated {
        target: shown,
        tables: copied,
        counters,
    })
}

/// The SQLite engine keeps an upload's bytes in a file (store/files.rs);
/// PostgreSQL keeps them as chunk rows: each recorded upload's file in the
/// snapshot becomes its rows, in order, checked against its SHA-256 and
/// its counts. Returns how many rows.
fn copy_upload_files(
    files: &SqliteStore,
    source: &rusqlite::Transaction<'_>,
    tx: &mut postgres::Transaction<'_>,
) -> Result<i64, MigrateError> {
    let pg = |what: &'static str| move |source| MigrateError::Target { what, source };
    let insert = tx
        .prepare_typed(
            "INSERT INTO upload_chunks (upload_id, seq, data, staged_at) VALUES ($1, $2, $3, $4)",
            &[Type::INT8, Type::INT8, Type::BYTEA, Type::INT8],
        )
        .map_err(pg("preparing the copy of the uploaded files"))?;
    let before: i64 = tx
        .query_one("SELECT count(*) FROM upload_chunks", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg("counting the copied rows"))?;
    let mut n: i64 = 0;
    for (id, chunks, at) in files.uploads_in_files(source)? {
        let (size, sha256): (i64, Vec<u8>) = source.query_row(
            "SELECT size, sha256 FROM uploads WHERE upload_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut hasher = openssl::sha::Sha256::new();
        let mut bytes: i64 = 0;
        for seq in 0..chunks {
            let data = files.file_chunk(id, seq)?;
            hasher.update(&data);
            bytes += data.len() as i64;
            tx.execute(&insert, &[&id, &(seq as i64), &data, &at])
                .map_err(pg("copying an uploaded file"))?;
            n += 1;
        }
        if bytes != size || hasher.finish()[..] != sha256[..] {
            return Err(MigrateError::CountMismatch {
                table: format!("upload {id}'s file (bytes, or their SHA-256)"),
                source: size,
                target: bytes,
            });
        }
    }
    let after: i64 = tx
        .query_one("SELECT count(*) FROM upload_chunks", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg("counting the copied rows"))?;
    if after - before != n {
        return Err(MigrateError::CountMismatch {
            table: "upload_chunks (from files)".into(),
            source: n,
            target: after - before,
        });
    }
    Ok(n)
}

/// Copies one table's rows in insertion order; returns how many, checked
/// against the target's count inside the transaction.
fn copy_table(
    source: &rusqlite::Transaction<'_>,
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<i64, MigrateError> {
    let pg = |what: &'static str| move |source| MigrateError::Target { what, source };
    let mut src_cols = Vec::new();
    {
        let mut stmt = source.prepare(&format!("PRAGMA table_info({})", ident(table)))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(1))?;
        for c in rows {
            src_cols.push(c?);
        }
    }
    let pg_cols: Vec<PgColumn> = tx
        .query(
            "SELECT column_name::text, data_type::text, is_identity::text = 'YES'
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .map_err(pg("reading the target's columns"))?
        .iter()
        .map(|r| {
            let data_type: String = r.try_get(1)?;
            Ok(PgColumn {
                name: r.try_get(0)?,
                kind: PgKind::of(&data_type),
                identity: r.try_get(2)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()
        .map_err(pg("reading the target's columns"))?;
    let mut kinds = Vec::with_capacity(src_cols.len());
    for col in &src_cols {
        let problem = |problem| MigrateError::Column {
            table: table.to_string(),
            column: col.clone(),
            problem,
        };
        let target = pg_cols
            .iter()
            .find(|c| &c.name == col)
            .ok_or_else(|| problem("no such column in PostgreSQL"))?;
        kinds.push(
            target
                .kind
                .ok_or_else(|| problem("a PostgreSQL type migrate cannot fill"))?,
        );
    }
    let cols: Vec<String> = src_cols.iter().map(|c| ident(c)).collect();
    let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let types: Vec<Type> = kinds.iter().map(|k| k.pg_type()).collect();
    let insert = tx
        .prepare_typed(
            &format!(
                "INSERT INTO {} ({}) VALUES ({})",
                ident(table),
                cols.join(", "),
                placeholders.join(", ")
            ),
            &types,
        )
        .map_err(pg("preparing the copy"))?;
    let mut stmt = source.prepare(&format!(
        "SELECT {} FROM {} ORDER BY rowid",
        cols.join(", "),
        ident(table)
    ))?;
    let mut rows = stmt.query([])?;
    let mut n: i64 = 0;
    while let Some(row) = rows.next()? {
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let value: Value = row.get(i)?;
            let converted = kind.convert(value).ok_or_else(|| MigrateError::Column {
                table: table.to_string(),
                column: src_cols[i].clone(),
                problem: "a value that does not fit the PostgreSQL column's type",
            })?;
            params.push(converted);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        tx.execute(&insert, &refs).map_err(pg("copying a row"))?;
        n += 1;
    }
    let source_count: i64 =
        source.query_row(&format!("SELECT count(*) FROM {}", ident(table)), [], |r| {
            r.get(0)
        })?;
    let target_count: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", ident(table)), &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg("counting the copied rows"))?;
    if source_count != n || target_count != n {
        return Err(MigrateError::CountMismatch {
            table: table.to_string(),
            source: source_count,
            target: target_count,
        });
    }
    // An identity column given explicit values: its sequence must go past
    // them, or the next insert would collide.
    for col in pg_cols
        .iter()
        .filter(|c| c.identity && src_cols.contains(&c.name))
    {
        tx.query_one(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, $2),
                               GREATEST((SELECT max({c}) FROM {t}), 1),
                               (SELECT max({c}) FROM {t}) IS NOT NULL)",
                c = ident(&col.name),
                t = ident(table)
            ),
            &[&table, &col.name],
        )
        .map_err(pg("moving an identity sequence"))?;
    }
    Ok(n)
}
