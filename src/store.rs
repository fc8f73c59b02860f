//! The durable record of what certboard issued and accepted: certificates
//! (with revocation) and reports.
//!
//! [`Storage`] is the interface the services and admin commands use, over
//! the records defined here; the engines behind it are children of this
//! module: [`SqliteStore`] (`store/sqlite.rs`). Writes come in batches: the
//! reactors hand the records made ready in a turn of their loop to the
//! commit thread ([`crate::commit`]), which commits what it has in one
//! transaction; only then are the acknowledgments sent (group commit), so
//! no acknowledgment ever outruns its record and no client pays for a
//! whole fsync of its own.

use std::fmt;
use std::path::PathBuf;

mod postgres;
mod sqlite;

pub use postgres::{PgError, PostgresStore, Unavailable, UrlProblem, PG_SCHEMA_VERSION};
pub use sqlite::{SqliteStore, DB_FILE, SCHEMA_VERSION};

/// Why the store failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The data dir could not be created.
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// SQLite reported an error.
    Sqlite(rusqlite::Error),
    /// The database was written by another program or another schema.
    Incompatible(String),
    /// A serial or receipt id is already recorded (never reused).
    Duplicate(String),
    /// The PostgreSQL engine failed: a bad URL, a refused login, TLS, or a
    /// statement the server rejected.
    Postgres(PgError),
    /// The database cannot be reached now (down, restarting, the connection
    /// lost); a later call reconnects. Nothing was committed unless
    /// [`Unavailable::outcome_unknown`] says the outcome is unknown.
    Unavailable(Unavailable),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StoreError::Sqlite(e) => write!(f, "database error: {e}"),
            StoreError::Incompatible(why) => write!(f, "refusing to use the database: {why}"),
            StoreError::Duplicate(what) => write!(f, "already recorded: {what}"),
            StoreError::Postgres(e) => write!(f, "database error: {e}"),
            StoreError::Unavailable(u) => write!(f, "{u}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Which protocol a record came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// certboard's own protocol.
    Certboard,
    /// The original lab client, served by `--legacy`.
    Legacy,
}

impl Origin {
    /// The name stored and listed.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Certboard => "certboard",
            Origin::Legacy => "legacy",
        }
    }

    /// The origin of a stored name (anything but "legacy" is certboard's).
    fn parse(s: &str) -> Origin {
        if s == "legacy" {
            Origin::Legacy
        } else {
            Origin::Certboard
        }
    }
}

/// One thing to record durably before it is acknowledged.
#[derive(Debug, Clone)]
pub enum Record {
    /// A certificate just issued.
    Cert(CertRecord),
    /// A report just accepted.
    Report(ReportRecord),
}

/// An issued certificate, as the store keeps it: the protocol builds it
/// from what the CA returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// Serial, upper-case hex without leading zero bytes (the CA's form).
    pub serial_hex: String,
    /// The SID it certifies.
    pub sid: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// How it was requested.
    pub origin: Origin,
}

/// An accepted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    /// Receipt id handed to the student.
    pub receipt_id: u64,
    /// The student.
    pub sid: String,
    /// Serial of the certificate she submitted under (hex).
    pub serial_hex: String,
    /// When it was received, Unix seconds.
    pub received_at: i64,
    /// The report text.
    pub text: String,
    /// How it was submitted.
    pub origin: Origin,
}

/// A certificate's standing in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Never recorded as issued by this CA.
    Unknown,
    /// Issued and not revoked.
    Good {
        /// The protocol it was issued by.
        origin: Origin,
    },
    /// Revoked.
    Revoked {
        /// When, Unix seconds.
        at: i64,
        /// Why, as given by the operator.
        reason: String,
    },
}

/// A stored certificate, as listed by `server certs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Serial (hex).
    pub serial_hex: String,
    /// The SID.
    pub sid: String,
    /// Start of validity.
    pub not_before: i64,
    /// End of validity.
    pub not_after: i64,
    /// How it was requested.
    pub origin: String,
    /// Revocation time and reason, if revoked.
    pub revoked: Option<(i64, String)>,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// One revoked certificate, as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Serial (hex).
    pub serial_hex: String,
    /// When, Unix seconds.
    pub at: i64,
    /// Why, as given by the operator (an RFC 5280 reason name).
    pub reason: String,
}

/// A summary of the revocations that changes whenever one is added
/// (revocations are never undone): how a served CRL knows, with one cheap
/// query, whether it is still complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevocationMark {
    /// Certificates revoked.
    pub count: u64,
    /// The latest revocation time (0 when none).
    pub latest: i64,
}

/// The storage interface the rest of certboard uses.
pub trait Storage {
    /// Makes every record durable in one transaction, all or nothing.
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError>;
    /// The standing of the certificate with this serial.
    fn cert_status(&mut self, serial_hex: &str) -> Result<CertStatus, StoreError>;
    /// Revokes one certificate; returns how many were newly revoked (0 or 1).
    fn revoke_serial(
        &mut self,
        serial_hex: &str,
        reason: &str,
        at: i64,
    ) -> Result<usize, StoreError>;
    /// Revokes every certificate of a SID; returns how many were newly revoked.
    fn revoke_sid(&mut self, sid: &str, reason: &str, at: i64) -> Result<usize, StoreError>;
    /// Every certificate, oldest first.
    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError>;
    /// Every report, oldest first.
    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError>;
    /// Takes the next CRL number (monotonic, never reused).
    fn next_crl_number(&mut self) -> Result<u64, StoreError>;
    /// Every revoked certificate, in revocation order.
    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError>;
    /// The current [`RevocationMark`].
    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError>;
    /// Whether the store can serve now (`GET /health`): it answers a query,
    /// and what it answers from is still where later writes will be read.
    fn check(&mut self) -> Result<(), StoreError>;
}
