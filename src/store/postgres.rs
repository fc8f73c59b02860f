//! The PostgreSQL engine: several certboard hosts on one database (issue 13).
//!
//! The same [`Storage`](super::Storage) contract as the SQLite engine, with what must agree
//! across hosts decided by the database: serials and receipt ids are unique
//! by constraint, revocation is one row every host reads, and the CRL number
//! comes from a `SEQUENCE` (strictly increasing, never handed out twice, on
//! any host).
//!
//! Durability: a batch is one transaction and [`Storage::commit`](super::Storage::commit) returns
//! only after `COMMIT` has returned, with `synchronous_commit` set `on` for
//! the session (a role or database default of `off` would let an
//! acknowledgment outrun the WAL flush).
//!
//! Failure: a call that finds the server gone (down, restarting, the
//! connection cut) returns [`StoreError::Unavailable`]; the next call
//! reconnects, no sooner than a back-off allows, so a dead server is not
//! hammered and a restarted one is used again without recreating the store.
//! A connection lost while `COMMIT` was in flight is reported as such
//! ([`Unavailable::outcome_unknown`]): the batch may or may not be durable.
//! A failure before `COMMIT` was sent leaves nothing behind, so on a
//! connection that had been idle (the server may have restarted since) the
//! call is tried once more on a fresh one.
//!
//! Schema: versioned in `certboard_schema` and migrated on open inside one
//! transaction that first takes a transaction-level advisory lock, so two
//! hosts starting together migrate once. A database holding anything else,
//! or a newer schema, is refused untouched.
//!
//! The parts: `postgres/url.rs` reads the URL and its TLS settings,
//! `postgres/connection.rs` connects, sorts failures and reconnects under
//! the back-off, `postgres/schema.rs` creates and migrates the schema, and
//! `postgres/queries.rs` holds the statements and the [`Storage`](super::Storage) methods.
//! This file owns what they share: the errors and the store itself.
//!
//! Times are `BIGINT` Unix seconds and receipt ids the same 64 bits as a
//! signed `BIGINT`, exactly as the SQLite engine stores them, so a copy from
//! one to the other moves values unchanged.

mod connection;
mod queries;
mod schema;
mod staff;
mod url;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssl::error::ErrorStack;
use postgres::error::SqlState;

use super::StoreError;
use connection::Backoff;
use queries::Conn;
use url::Target;

/// The PostgreSQL schema this build reads and writes.
pub const PG_SCHEMA_VERSION: i32 = 9;
/// What is wrong with a database URL.
#[derive(Debug)]
#[non_exhaustive]
pub enum UrlProblem {
    /// It does not start with `postgres://` or `postgresql://`.
    NotPostgres,
    /// The client library could not read it (a bad port, an unknown option).
    Syntax(postgres::Error),
    /// It names no user, host or database.
    Missing(&'static str),
    /// An `sslmode` other than disable, prefer, require, verify-ca, verify-full.
    SslMode(String),
    /// `sslmode=verify-ca` or `verify-full` without `sslrootcert=FILE`.
    NoRootCert,
    /// A `%` escape in the URL that is not two hexadecimal digits, or one
    /// that makes the `sslrootcert` path invalid UTF-8.
    BadEscape(&'static str),
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlProblem::NotPostgres => {
                f.write_str("it must start with postgres:// or postgresql://")
            }
            UrlProblem::Syntax(e) => write!(f, "{}", chain(e)),
            UrlProblem::Missing(what) => write!(
                f,
                "it names no {what} (postgres://USER[:PASSWORD]@HOST:PORT/DATABASE)"
            ),
            UrlProblem::SslMode(mode) => write!(
                f,
                "sslmode={mode} is not supported (disable, prefer, require, verify-ca, verify-full)"
            ),
            UrlProblem::NoRootCert => f.write_str(
                "sslmode=verify-ca and verify-full need sslrootcert=FILE (the CA that signed the server's certificate)",
            ),
            UrlProblem::BadEscape(what) => write!(f, "bad %-escape in {what}"),
        }
    }
}

/// Why the PostgreSQL engine failed, other than the server being
/// unreachable ([`Unavailable`]), a duplicate or an incompatible schema.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgError {
    /// The database URL cannot be used.
    BadUrl(UrlProblem),
    /// The TLS settings could not be loaded (the `sslrootcert` file).
    TlsSetup {
        /// The root certificate file, if one was named.
        rootcert: Option<PathBuf>,
        /// OpenSSL's reason.
        source: ErrorStack,
    },
    /// The server refused the login: a wrong user or password, or no
    /// `pg_hba.conf` entry for this host and user.
    LoginRefused {
        /// `user@host:port/database`.
        target: String,
        /// The server's answer.
        source: postgres::Error,
    },
    /// The database named in the URL does not exist on the server.
    NoDatabase {
        /// `user@host:port/database`.
        target: String,
        /// The server's answer.
        source: postgres::Error,
    },
    /// The TLS handshake failed: the server's certificate is not trusted
    /// or does not name the host (`sslmode=verify-ca`/`verify-full`).
    Tls {
        /// `user@host:port/database`.
        target: String,
        /// The handshake's error.
        source: postgres::Error,
    },
    /// The server took the TCP connection but did not answer the start of
    /// the session within the connect timeout: stopped, overloaded, or not
    /// PostgreSQL.
    NoAnswer {
        /// `user@host:port/database`.
        target: String,
        /// How long it was given (the URL's `connect_timeout`, 10 s unset).
        waited: Duration,
    },
    /// A statement failed for a reason other than the connection: data the
    /// server rejected, missing privileges, a row of an unexpected shape.
    Statement {
        /// What certboard was doing.
        what: &'static str,
        /// The server's or the client library's error.
        source: postgres::Error,
    },
}

impl PgError {
    /// Whether the server said its disk is full: SQLSTATE 53100
    /// (`disk_full`, which PostgreSQL also gives a file it cannot extend
    /// for lack of space), not its words, which follow its `lc_messages`.
    pub fn is_disk_full(&self) -> bool {
        match self {
            PgError::Statement { source, .. }
            | PgError::LoginRefused { source, .. }
            | PgError::NoDatabase { source, .. }
            | PgError::Tls { source, .. } => source.code() == Some(&SqlState::DISK_FULL),
            PgError::BadUrl(_) | PgError::TlsSetup { .. } | PgError::NoAnswer { .. } => false,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::BadUrl(why) => write!(f, "bad database url: {why}"),
            PgError::TlsSetup { rootcert, source } => match rootcert {
                Some(path) => write!(f, "sslrootcert {}: {source}", path.display()),
                None => write!(f, "cannot set up TLS: {source}"),
            },
            PgError::LoginRefused { target, source } => write!(
                f,
                "{target}: login refused (check the user and password in the url, and pg_hba.conf): {}",
                chain(source)
            ),
            PgError::NoDatabase { target, source } => {
                write!(f, "{target}: no such database: {}", chain(source))
            }
            PgError::Tls { target, source } => {
                write!(f, "{target}: tls handshake failed: {}", chain(source))
            }
            PgError::NoAnswer { target, waited } => write!(
                f,
                "{target}: the server took the connection but has not answered in {} s \
                 (is it stopped, overloaded, or not PostgreSQL? connect_timeout in the url \
                 sets the wait)",
                waited.as_secs_f32()
            ),
            PgError::Statement { what, source } => write!(f, "{what}: {}", chain(source)),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::BadUrl(UrlProblem::Syntax(e)) => Some(e),
            PgError::BadUrl(_) | PgError::NoAnswer { .. } => None,
            PgError::TlsSetup { source, .. } => Some(source),
            PgError::LoginRefused { source, .. }
            | PgError::NoDatabase { source, .. }
            | PgError::Tls { source, .. }
            | PgError::Statement { source, .. } => Some(source),
        }
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        StoreError::Postgres(e)
    }
}

/// The database cannot be used now: the server is down, restarting or
/// unreachable, or the connection was lost. Later calls reconnect.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// `user@host:port/database`.
    pub target: String,
    /// The connection was lost while `COMMIT` was in flight: the batch may
    /// or may not be durable. Otherwise nothing of the call was committed.
    pub outcome_unknown: bool,
    /// How long until the next reconnect is tried (zero: on the next call).
    pub retry_in: Duration,
    /// The failure; when the call was refused during a back-off without
    /// trying, the failure of the last attempt.
    pub source: Option<Arc<postgres::Error>>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.outcome_unknown {
            write!(
                f,
                "store unavailable: the connection to {} was lost during COMMIT: the outcome is unknown",
                self.target
            )?;
        } else {
            write!(
                f,
                "store unavailable: nothing was acknowledged: {}",
                self.target
            )?;
        }
        if let Some(e) = &self.source {
            write!(f, ": {}", chain(e.as_ref()))?;
        }
        if !self.retry_in.is_zero() {
            write!(f, " (next attempt in {} ms)", self.retry_in.as_millis())?;
        }
        Ok(())
    }
}

/// An error and its causes, one line: the client library's own `Display`
/// names only the kind ("error connecting to server"), not the reason.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

/// The PostgreSQL engine.
pub struct PostgresStore {
    target: Target,
    conn: Option<Conn>,
    backoff: Backoff,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target.shown)
            .field("connected", &self.conn.is_some())
            .field("backoff", &self.backoff.failures)
            .finish()
    }
}
