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
    /// A write named a record that does not exist (an extension of an
    /// assignment that is not there).
    NotFound(String),
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
            StoreError::NotFound(what) => write!(f, "no such {what}"),
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
    /// The assignment it was handed in for ([`DEFAULT_ASSIGNMENT`] for
    /// every version 2 and legacy report).
    pub assignment: String,
    /// Seconds after her due time it came (`None`: on time).
    pub late_by: Option<i64>,
}

impl ReportRecord {
    /// Lower-case hex SHA-256 of the exact report text bytes: the
    /// `report_sha256` of its signed receipt, which an instructor and a
    /// student can compare (`server reports --format json`).
    pub fn sha256_hex(&self) -> String {
        crate::crypto::sha256_hex(self.text.as_bytes())
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
    /// Her e-mail address, when the roster has an `email` column (an
    /// import without one leaves a stored address as it is).
    pub email: Option<String>,
}

/// The assignment every version 2 and legacy report goes to: the lab of
/// the design card, whose window the old `--submissions-open/close` flags
/// set.
pub const DEFAULT_ASSIGNMENT: &str = "lab";

/// An assignment, as stored (times in Unix seconds, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Short id (`[a-z0-9_-]`, at most 32 characters), e.g. `hw1`.
    pub id: String,
    /// Its title, for people.
    pub title: String,
    /// Submissions are refused before this time (`None`: open at once).
    pub opens: Option<i64>,
    /// Submissions from this time on are late (`None`: never late; only
    /// the `lab` made from the restart flags has none).
    pub due: Option<i64>,
    /// Late submissions are refused from this time on (`None`: nothing
    /// is taken late, the due time closes it).
    pub late_until: Option<i64>,
    /// Closed by the instructor (`assignment close`) at this time:
    /// nothing is taken from then on, whatever the other times say.
    pub closed_at: Option<i64>,
}

/// One student's own due time for one assignment (`server extend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The student.
    pub sid: String,
    /// The assignment.
    pub assignment: String,
    /// Her due time, Unix seconds.
    pub until: i64,
    /// When it was granted.
    pub granted_at: i64,
}

/// What a submission to one assignment is decided on, read in one go per
/// submission (the store, not the process, is the truth: an `assignment
/// edit` holds for the next submission on every host).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmissionView {
    /// The assignment (`None`: no such assignment).
    pub assignment: Option<Assignment>,
    /// Her extension of it, if any: her own due time.
    pub extension: Option<i64>,
    /// The course's IANA time zone, for the times a refusal shows.
    pub timezone: Option<String>,
}

/// The name of the course setting holding its IANA time zone.
pub const TIMEZONE_SETTING: &str = "timezone";

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
    /// Her e-mail address, if the roster gave one.
    pub email: Option<String>,
    /// When she was removed from the roster (`roster remove`): she no
    /// longer counts, and may no longer enroll; her records stay.
    pub dropped_at: Option<i64>,
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
    /// Students on the roster (not removed).
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
    /// Whether the store can serve now (`GET /health`): it answers a query,
    /// and what it answers from is still where later writes will be read.
    fn check(&mut self) -> Result<(), StoreError>;
    /// Creates the assignment, or replaces every field of the one with its
    /// id (the caller has merged an edit).
    fn put_assignment(&mut self, assignment: &Assignment) -> Result<(), StoreError>;
    /// Every assignment, by due time (none first), then id.
    fn assignments(&mut self) -> Result<Vec<Assignment>, StoreError>;
    /// The assignment, her extension and the course's zone, for one
    /// submission (read per submission, like [`Storage::enrollment_view`]).
    fn submission_view(
        &mut self,
        sid: &str,
        assignment: &str,
    ) -> Result<SubmissionView, StoreError>;
    /// Sets her own due time for an existing assignment (replacing an
    /// earlier extension); [`StoreError::NotFound`] when there is no such
    /// assignment.
    fn extend(
        &mut self,
        sid: &str,
        assignment: &str,
        until: i64,
        at: i64,
    ) -> Result<(), StoreError>;
    /// Every extension, by assignment then SID.
    fn extensions(&mut self) -> Result<Vec<Extension>, StoreError>;
    /// Removes a student from the roster at `at` (her certificates, reports
    /// and extensions stay); `false` when she is not on it (or already
    /// removed). A later import that lists her puts her back.
    fn drop_student(&mut self, sid: &str, at: i64) -> Result<bool, StoreError>;
    /// Sets (or with `None` clears) a text setting of the course.
    fn set_course_setting(&mut self, name: &str, value: Option<&str>) -> Result<(), StoreError>;
    /// A text setting of the course.
    fn course_setting(&mut self, name: &str) -> Result<Option<String>, StoreError>;
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
    assignment: &'a str,
    late_by: Option<i64>,
    /// Size and lower-case hex SHA-256 of the handed-in bytes (the report
    /// text, for version 2): the columns a file submission fills too.
    file_size: i64,
    file_sha256: String,
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
                    assignment: &r.assignment,
                    late_by: r.late_by,
                    file_size: i64::try_from(r.text.len()).unwrap_or(i64::MAX),
                    file_sha256: r.sha256_hex(),
                }),
                Record::WrongCode { sid, code_key } => w.wrong.push((sid, code_key)),
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
    assignment: String,
    late_by: Option<i64>,
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
            assignment: self.assignment,
            late_by: self.late_by,
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
