//! The durable record of what certboard issued and accepted, and of the
//! course it serves: certificates (with their revocation), reports, the
//! roster and each student's enrollment code (only a key derived from it),
//! the CRL number, and settings such as the submission window.
//!
//! [`Storage`] is the one interface everything else uses, over the records
//! defined here; the engines behind it are children of this module:
//! [`SqliteStore`] (`store/sqlite.rs`) and [`PostgresStore`]
//! (`store/postgres.rs` and `store/postgres/`), chosen by [`Location`]
//! (`store/location.rs`); [`migrate`] (`store/migrate.rs`) copies the one
//! into the other. What does not depend on the engine is decided here, once,
//! for both: how a batch becomes rows ([`Writes`]: the subject is `CN=` the
//! SID, a code is spent by the certificate it authorised, receipt ids are
//! their 64 bits as a signed integer, the stored text of a serial, an origin
//! and a revocation reason) and how stored columns become records again
//! (the `*Columns` types). Both engines pass one behaviour contract
//! (`tests/store_contract.rs`).
//!
//! Who calls what:
//!
//! - Writes come in batches: the reactors hand the records made ready in a
//!   turn of their loop to the commit thread ([`crate::commit`]), which
//!   commits what it has in one transaction ([`Storage::commit`]); only
//!   then are the acknowledgments sent (group commit), so no
//!   acknowledgment ever outruns its record and no client pays for a whole
//!   fsync of its own.
//! - Sessions read per request: an enrollment reads the roster and the
//!   SID's code ([`Storage::enrollment_view`]), a submission its
//!   certificate's standing ([`Storage::cert_status`]).
//! - The HTTP path ([`crate::ops`]) reads standings for OCSP, the
//!   revocations and their [`RevocationMark`] for the CRL, takes CRL
//!   numbers, and asks [`Storage::check`] for `/health`.
//! - The admin commands revoke, list, import the roster, store codes and
//!   export, beside a running server.

use std::fmt;
use std::path::PathBuf;

pub use crate::ca::RevocationReason;
pub use crate::ca::Serial;

mod bounded;
#[cfg(test)]
pub(crate) mod gated;
mod location;
mod migrate;
mod postgres;
mod sqlite;

pub use bounded::{Bounded, LOOP_STORE_WAIT};
pub use location::{shown_url, Location};
pub use migrate::{migrate, MigrateError, Migrated};
pub use postgres::{PgError, PostgresStore, Unavailable, UrlProblem, PG_SCHEMA_VERSION};
pub use sqlite::{SqliteStore, DB_FILE, SCHEMA_VERSION};

/// What a client is told when the store cannot be reached: its request is
/// refused and nothing it asked for was recorded.
pub const STORE_UNAVAILABLE: &str = "store unavailable: nothing was acknowledged";

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
    /// A certificate record was to consume a SID's enrollment code, and
    /// that code is no longer unused (another request consumed it, or it
    /// was reissued): nothing of the transaction was kept.
    CodeUsed {
        /// The SID whose code it was.
        sid: String,
    },
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
            StoreError::CodeUsed { sid } => {
                write!(f, "the enrollment code of SID {sid} is already used")
            }
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
    /// One chunk of a file being uploaded (protocol version 3), staged:
    /// invisible until the [`Record::Upload`] that names its upload.
    Chunk(ChunkRecord),
    /// A file upload complete and verified: its staged chunks become the
    /// file, in the same transaction that records this row.
    Upload(UploadRecord),
    /// An upload abandoned (its connection closed first): its staged chunks
    /// are deleted, unless an [`Record::Upload`] made them a file.
    DiscardUpload {
        /// The upload.
        upload_id: i64,
    },
    /// A wrong enrollment code was tried for a SID: one more toward its lock.
    WrongCode {
        /// The SID.
        sid: String,
        /// The key of the code it was checked against (a reissued code
        /// starts its own count).
        code_key: CodeKey,
    },
}

/// The key derived from an enrollment code (the code itself is never stored).
pub type CodeKey = [u8; 32];

/// Wrong codes in a row after which a SID is locked until its code is reissued.
pub const LOCK_AFTER: u32 = 5;

/// An issued certificate, as the store keeps it: the protocol builds it
/// from what the CA returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// Serial (stored as its upper-case hex text).
    pub serial: Serial,
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
    /// The enrollment code this issuance consumes (its key), if any: the
    /// record commits only if that code is still unused, in the same
    /// transaction.
    pub consumes_code: Option<CodeKey>,
    /// Issued as a renewal (proof of possession of a current certificate's
    /// key), for the metrics; not stored.
    pub renewal: bool,
}

/// An accepted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    /// Receipt id handed to the student.
    pub receipt_id: u64,
    /// The student.
    pub sid: String,
    /// Serial of the certificate she submitted under.
    pub serial: Serial,
    /// When it was received, Unix seconds.
    pub received_at: i64,
    /// The report text.
    pub text: String,
    /// How it was submitted.
    pub origin: Origin,
}

impl ReportRecord {
    /// Lower-case hex SHA-256 of the exact report text bytes: the
    /// `report_sha256` of its signed receipt, which an instructor and a
    /// student can compare (`server reports --format json`).
    pub fn sha256_hex(&self) -> String {
        crate::crypto::sha256_hex(self.text.as_bytes())
    }
}

/// Largest chunk of file data one row holds (64 KiB): what protocol
/// version 3 asks a client for, and a PostgreSQL `BYTEA` kept small.
pub const MAX_CHUNK_ROW: usize = 64 * 1024;

/// One staged chunk of an upload's plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// The upload it belongs to.
    pub upload_id: i64,
    /// Its place, from 0.
    pub seq: u64,
    /// Its bytes (at most [`MAX_CHUNK_ROW`]).
    pub data: Vec<u8>,
}

/// A file submission (protocol version 3), as recorded and listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Receipt id handed to the student.
    pub receipt_id: u64,
    /// Which staged chunks are its content.
    pub upload_id: i64,
    /// The student.
    pub sid: String,
    /// Serial of the certificate she submitted under.
    pub serial: Serial,
    /// When it was received, Unix seconds.
    pub received_at: i64,
    /// The assignment it was handed in for.
    pub assignment: String,
    /// Its (sanitised) file name.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// How many chunks hold it: the commit fails unless exactly these are
    /// staged.
    pub chunks: u64,
    /// How late it was, in seconds (0: on time).
    pub late_seconds: i64,
}

impl UploadRecord {
    /// Lower-case hex of its SHA-256.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A `uploads` row as read.
#[derive(Debug)]
struct UploadColumns {
    receipt_id: i64,
    upload_id: i64,
    sid: String,
    serial: String,
    received_at: i64,
    assignment: String,
    file_name: String,
    size: i64,
    sha256: Vec<u8>,
    chunks: i64,
    late_seconds: i64,
}

impl UploadColumns {
    fn into_record(self) -> Result<UploadRecord, StoreError> {
        let sha256 = <[u8; 32]>::try_from(self.sha256.as_slice()).map_err(|_| {
            StoreError::Incompatible(format!(
                "an upload's SHA-256 of {} bytes (certboard writes 32)",
                self.sha256.len()
            ))
        })?;
        Ok(UploadRecord {
            receipt_id: receipt_id_of(self.receipt_id),
            upload_id: self.upload_id,
            sid: self.sid,
            serial: serial_of(&self.serial)?,
            received_at: self.received_at,
            assignment: self.assignment,
            file_name: self.file_name,
            size: u64::try_from(self.size).unwrap_or(0),
            sha256,
            chunks: u64::try_from(self.chunks).unwrap_or(0),
            late_seconds: self.late_seconds,
        })
    }
}

/// Checks, in an upload's transaction, that exactly its chunks are
/// staged: a record that names fewer (a lost chunk commit) or more must not
/// become a file.
fn staged_match(u: &UploadRecord, count: i64, bytes: i64) -> Result<(), StoreError> {
    if u64::try_from(count).ok() == Some(u.chunks) && u64::try_from(bytes).ok() == Some(u.size) {
        Ok(())
    } else {
        Err(StoreError::Incompatible(format!(
            "upload {}: {count} chunk(s) of {bytes} bytes staged, {} of {} announced",
            u.upload_id, u.chunks, u.size
        )))
    }
}

/// Whether a store failure is a full disk (SQLite's `SQLITE_FULL`,
/// PostgreSQL's `disk_full`, 53100): the server says so rather than
/// "internal error".
pub fn is_storage_full(e: &StoreError) -> bool {
    match e {
        StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
        StoreError::Postgres(e) => {
            e.to_string().contains("could not extend file")
                || e.to_string().contains("No space left on device")
        }
        _ => false,
    }
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
        /// Why, as given by the operator; `None` when the stored text
        /// names no RFC 5280 reason.
        reason: Option<RevocationReason>,
    },
}

/// A stored certificate, as listed by `server certs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Serial.
    pub serial: Serial,
    /// The SID.
    pub sid: String,
    /// Start of validity.
    pub not_before: i64,
    /// End of validity.
    pub not_after: i64,
    /// How it was requested.
    pub origin: Origin,
    /// Revocation time and reason, if revoked (the reason `None` when the
    /// stored text names no RFC 5280 reason).
    pub revoked: Option<(i64, Option<RevocationReason>)>,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// A student of the roster, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Student {
    /// The SID.
    pub sid: String,
    /// Her name.
    pub name: String,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RosterChange {
    /// Students new to the roster.
    pub added: usize,
    /// Students whose name changed.
    pub renamed: usize,
    /// Students already there as given.
    pub unchanged: usize,
}

/// A SID's enrollment code, as stored (only its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    /// The key derived from the code.
    pub code_key: CodeKey,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// When it was consumed, if it was.
    pub used_at: Option<i64>,
    /// Wrong codes tried in a row since it was issued or last used rightly.
    pub wrong: u32,
}

impl CodeState {
    /// Whether the SID is locked ([`LOCK_AFTER`] wrong codes in a row).
    pub fn locked(&self) -> bool {
        self.wrong >= LOCK_AFTER
    }
}

/// A roster student and her code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// The SID.
    pub sid: String,
    /// Her name.
    pub name: String,
    /// Her enrollment code, if one was ever issued.
    pub code: Option<CodeState>,
}

/// What the CA needs to decide an enrollment for one SID, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollView {
    /// Whether a roster exists at all (no roster: open enrollment).
    pub roster_on: bool,
    /// Whether this SID is on it.
    pub on_roster: bool,
    /// The SID's code, if one was ever issued.
    pub code: Option<CodeState>,
}

/// How much the store holds, for the startup log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Certificates issued.
    pub certs: u64,
    /// Reports accepted.
    pub reports: u64,
    /// Students on the roster.
    pub roster: u64,
}

/// One revoked certificate, as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Serial.
    pub serial: Serial,
    /// When, Unix seconds.
    pub at: i64,
    /// Why, as given by the operator; `None` when the stored text names
    /// no RFC 5280 reason.
    pub reason: Option<RevocationReason>,
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
    fn cert_status(&mut self, serial: &Serial) -> Result<CertStatus, StoreError>;
    /// Revokes one certificate; returns how many were newly revoked (0 or 1).
    fn revoke_serial(
        &mut self,
        serial: &Serial,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError>;
    /// Revokes every certificate of a SID; returns how many were newly revoked.
    fn revoke_sid(
        &mut self,
        sid: &str,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError>;
    /// Every certificate, oldest first.
    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError>;
    /// Every report, oldest first.
    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError>;
    /// Takes the next CRL number (monotonic, never reused).
    fn next_crl_number(&mut self) -> Result<u64, StoreError>;
    /// Adds students and updates names, in one transaction; never deletes.
    fn import_roster(&mut self, students: &[Student]) -> Result<RosterChange, StoreError>;
    /// The roster with each student's code state, by SID.
    fn roster(&mut self) -> Result<Vec<RosterEntry>, StoreError>;
    /// What an enrollment for `sid` is decided on (read per request: the
    /// store, not the process, is the truth about the roster).
    fn enrollment_view(&mut self, sid: &str) -> Result<EnrollView, StoreError>;
    /// Stores new code keys for roster SIDs, in one transaction, at `at`.
    /// A SID holding an unused code keeps it unless `replace_unused`
    /// (reissue, which also clears its wrong-code count and lock). Returns
    /// the SIDs whose code was stored.
    fn store_codes(
        &mut self,
        codes: &[(String, CodeKey)],
        at: i64,
        replace_unused: bool,
    ) -> Result<Vec<String>, StoreError>;
    /// How many certificates, reports and roster students are stored.
    fn counts(&mut self) -> Result<Counts, StoreError>;
    /// Records the submission window the server runs with (Unix seconds,
    /// `None`: that end is open), so `server status` can show it.
    fn record_window(&mut self, open: Option<i64>, close: Option<i64>) -> Result<(), StoreError>;
    /// The submission window last recorded.
    fn recorded_window(&mut self) -> Result<(Option<i64>, Option<i64>), StoreError>;
    /// Every revoked certificate, in revocation order.
    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError>;
    /// The current [`RevocationMark`].
    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError>;
    /// Every file submission (protocol version 3), oldest first.
    fn uploads(&mut self) -> Result<Vec<UploadRecord>, StoreError>;
    /// One chunk of an upload's bytes (`None`: no such chunk). Read chunk
    /// by chunk so that no file is ever whole in memory.
    fn upload_chunk(&mut self, upload_id: i64, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// How many staged chunks belong to no recorded upload (uploads in
    /// progress, or abandoned ones not yet removed).
    fn staged_chunks(&mut self) -> Result<u64, StoreError>;
    /// Deletes the staged chunks of uploads never recorded whose chunks
    /// were all staged before `before` (Unix seconds): at start, those of
    /// connections a crash cut off. Returns how many chunks were deleted.
    fn discard_orphan_chunks(&mut self, before: i64) -> Result<u64, StoreError>;
    /// Whether the store can serve now (`GET /health`): it answers a query,
    /// and what it answers from is still where later writes will be read.
    fn check(&mut self) -> Result<(), StoreError>;
}

/// A batch as both engines write it, with the rules that do not depend on
/// the engine applied once: codes to spend first (each by the certificate
/// it authorised, or the whole batch fails with
/// [`StoreError::CodeUsed`]), then wrong codes to count, then the rows.
/// Each engine runs the phases in this order in one transaction.
#[derive(Debug, Default)]
struct Writes<'a> {
    /// Codes to consume, in batch order.
    spends: Vec<CodeSpend<'a>>,
    /// Wrong codes to count: SID and the key they were checked against.
    wrong: Vec<(&'a str, &'a [u8])>,
    /// Certificates to insert, in batch order.
    certs: Vec<CertInsert<'a>>,
    /// Reports to insert, in batch order.
    reports: Vec<ReportInsert<'a>>,
    /// Chunks to stage, in batch order.
    chunks: Vec<&'a ChunkRecord>,
    /// Uploads to record, after their chunks.
    uploads: Vec<&'a UploadRecord>,
    /// Uploads whose staged chunks go (unless recorded), last.
    discards: Vec<i64>,
}

/// A code spent by the issuance it authorised.
#[derive(Debug)]
struct CodeSpend<'a> {
    sid: &'a str,
    /// The serial of the certificate that spends it (`codes.used_serial`).
    serial: String,
    key: &'a [u8],
}

/// A `certs` row as written.
#[derive(Debug)]
struct CertInsert<'a> {
    serial: String,
    sid: &'a str,
    /// Always `CN=` the SID: the CA issues nothing else.
    subject: String,
    not_before: i64,
    not_after: i64,
    der: &'a [u8],
    origin: &'static str,
}

/// A `reports` row as written.
#[derive(Debug)]
struct ReportInsert<'a> {
    /// The receipt id's 64 bits as a signed integer: neither engine has an
    /// unsigned 64-bit column.
    receipt_id: i64,
    sid: &'a str,
    serial: String,
    received_at: i64,
    text: &'a str,
    origin: &'static str,
}

impl<'a> Writes<'a> {
    fn of(batch: &'a [Record]) -> Writes<'a> {
        let mut w = Writes::default();
        for record in batch {
            match record {
                Record::Cert(c) => {
                    let serial = c.serial.to_string();
                    if let Some(key) = &c.consumes_code {
                        w.spends.push(CodeSpend {
                            sid: &c.sid,
                            serial: serial.clone(),
                            key,
                        });
                    }
                    w.certs.push(CertInsert {
                        serial,
                        sid: &c.sid,
                        subject: format!("CN={}", c.sid),
                        not_before: c.not_before,
                        not_after: c.not_after,
                        der: &c.der,
                        origin: c.origin.as_str(),
                    });
                }
                Record::Report(r) => w.reports.push(ReportInsert {
                    receipt_id: r.receipt_id as i64,
                    sid: &r.sid,
                    serial: r.serial.to_string(),
                    received_at: r.received_at,
                    text: &r.text,
                    origin: r.origin.as_str(),
                }),
                Record::WrongCode { sid, code_key } => w.wrong.push((sid, code_key)),
                Record::Chunk(c) => w.chunks.push(c),
                Record::Upload(u) => w.uploads.push(u),
                Record::DiscardUpload { upload_id } => w.discards.push(*upload_id),
            }
        }
        w
    }
}

/// The id a student was given, from the signed integer stored.
fn receipt_id_of(stored: i64) -> u64 {
    stored as u64
}

/// A `certs` row as read, before it is checked.
#[derive(Debug)]
struct CertColumns {
    serial: String,
    sid: String,
    not_before: i64,
    not_after: i64,
    origin: String,
    revoked_at: Option<i64>,
    reason: Option<String>,
    der: Vec<u8>,
}

impl CertColumns {
    fn into_row(self) -> Result<CertRow, StoreError> {
        Ok(CertRow {
            serial: serial_of(&self.serial)?,
            sid: self.sid,
            not_before: self.not_before,
            not_after: self.not_after,
            origin: Origin::parse(&self.origin),
            revoked: self
                .revoked_at
                .map(|at| (at, reason_of(self.reason.as_deref()))),
            der: self.der,
        })
    }
}

/// A `reports` row as read.
#[derive(Debug)]
struct ReportColumns {
    receipt_id: i64,
    sid: String,
    serial: String,
    received_at: i64,
    text: String,
    origin: String,
}

impl ReportColumns {
    fn into_record(self) -> Result<ReportRecord, StoreError> {
        Ok(ReportRecord {
            receipt_id: receipt_id_of(self.receipt_id),
            sid: self.sid,
            serial: serial_of(&self.serial)?,
            received_at: self.received_at,
            text: self.text,
            origin: Origin::parse(&self.origin),
        })
    }
}

/// A revoked `certs` row as read.
#[derive(Debug)]
struct RevocationColumns {
    serial: String,
    revoked_at: i64,
    reason: Option<String>,
}

impl RevocationColumns {
    fn into_revocation(self) -> Result<Revocation, StoreError> {
        Ok(Revocation {
            serial: serial_of(&self.serial)?,
            at: self.revoked_at,
            reason: reason_of(self.reason.as_deref()),
        })
    }
}

/// The standing of a certificate from its `certs` columns (`None`: no row).
fn status_of(row: Option<(Option<i64>, Option<String>, String)>) -> Result<CertStatus, StoreError> {
    Ok(match row {
        None => CertStatus::Unknown,
        Some((None, _, origin)) => CertStatus::Good {
            origin: Origin::parse(&origin),
        },
        Some((Some(at), reason, _)) => CertStatus::Revoked {
            at,
            reason: reason_of(reason.as_deref()),
        },
    })
}

/// The serial a `serial` column holds: certboard writes only [`Serial`]'s
/// text, so anything else is a database it did not write.
fn serial_of(stored: &str) -> Result<Serial, StoreError> {
    Serial::parse_hex(stored)
        .map_err(|e| StoreError::Incompatible(format!("a stored serial {stored:?}: {e}")))
}

/// The reason a `revoke_reason` column names (`None`: NULL, or a text that
/// names no RFC 5280 reason, which a CRL or OCSP answer reads as
/// unspecified).
fn reason_of(stored: Option<&str>) -> Option<RevocationReason> {
    stored.and_then(RevocationReason::from_name)
}

/// A `codes` row as read (all NULL from a LEFT JOIN: `None`).
#[derive(Debug)]
struct CodeColumns {
    key: Vec<u8>,
    issued_at: i64,
    used_at: Option<i64>,
    wrong: i64,
}

impl CodeColumns {
    fn into_state(self) -> Result<CodeState, StoreError> {
        let code_key = CodeKey::try_from(self.key.as_slice()).map_err(|_| {
            StoreError::Incompatible(format!(
                "a code key of {} bytes (certboard writes 32)",
                self.key.len()
            ))
        })?;
        Ok(CodeState {
            code_key,
            issued_at: self.issued_at,
            used_at: self.used_at,
            // Counted up from 0 by one statement per wrong code.
            wrong: u32::try_from(self.wrong.max(0)).unwrap_or(u32::MAX),
        })
    }
}

/// The code state of optional `codes` columns.
fn code_state_of(columns: Option<CodeColumns>) -> Result<Option<CodeState>, StoreError> {
    columns.map(CodeColumns::into_state).transpose()
}
