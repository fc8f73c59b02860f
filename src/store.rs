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
//!   turn of their loop to the commit thread ([`crate::reactor::commit`]), which
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
mod files;
#[cfg(test)]
pub(crate) mod gated;
mod location;
mod migrate;
mod postgres;
mod sqlite;
mod staff;
pub mod tlog;

use crate::tlog::merkle::{Hash as LogHash, NodeId};

pub use bounded::{Bounded, LOOP_STORE_WAIT};
pub use location::{shown_url, Location};
pub use migrate::{migrate, MigrateError, Migrated};
pub use postgres::{PgError, PostgresStore, Unavailable, UrlProblem, PG_SCHEMA_VERSION};
pub use sqlite::{SqliteStore, DB_FILE, SCHEMA_VERSION};
pub use staff::{
    AuditEntry, LoginAttempt, LoginLimits, LoginVerdict, StaffAccount, StaffSession, StaffStorage,
};

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
    /// A renewal was to supersede the certificate it renews, and that
    /// certificate is revoked already (by the operator, or superseded by
    /// another renewal or enrollment meanwhile): nothing of the transaction
    /// was kept, so no certificate grows from a revoked one.
    RenewedRevoked {
        /// The SID.
        sid: String,
        /// The certificate the renewal rested on.
        serial: Serial,
    },
    /// A [`Record::Guess`] did not fit its bounds: nothing of the
    /// transaction was kept, and the guess is not evaluated.
    TooManyGuesses {
        /// Which bound.
        bound: GuessBound,
        /// The guess's window, seconds.
        window: i64,
        /// The bound's number of guesses.
        limit: u32,
        /// When the guess was made, Unix seconds.
        at: i64,
        /// When a guess fits again, Unix seconds.
        retry_at: i64,
    },
    /// The transparency log's stored hashes are missing or damaged (a row
    /// removed or changed behind certboard's back): nothing more is
    /// appended until `server log verify` names it and it is repaired.
    Log(crate::tlog::TreeError),
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
            StoreError::RenewedRevoked { sid, serial } => write!(
                f,
                "the certificate SID {sid} renewed (serial {serial}) was revoked meanwhile"
            ),
            StoreError::TooManyGuesses {
                bound,
                window,
                limit,
                at,
                retry_at,
            } => {
                let whose = match bound {
                    GuessBound::Source => "from this address",
                    GuessBound::SidSource => "for this SID from this address",
                };
                write!(
                    f,
                    "too many enrollment code guesses {whose} ({limit} per {} min); try again \
                     in {} s (at {})",
                    window / 60,
                    retry_at.saturating_sub(*at).max(1),
                    crate::time::rfc3339(*retry_at)
                )
            }
            StoreError::Log(e) => write!(f, "transparency log: {e}"),
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
    /// An enrollment code guess, counted before its proof is checked: it
    /// commits only within the bounds it carries, else the transaction
    /// fails with [`StoreError::TooManyGuesses`].
    Guess(Guess),
}

/// The key derived from an enrollment code (the code itself is never stored).
pub type CodeKey = [u8; 32];

/// How many enrollment code guesses are taken in any `window` seconds:
/// `per_source` from one source address (across every SID) and
/// `per_sid_source` for one SID from one source address. There is no
/// bound on a SID across sources: any such bound is one an attacker with
/// enough addresses could spend, locking out the student who holds her
/// code (docs/security.md, "Guessing enrollment codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLimits {
    /// The sliding window, seconds.
    pub window: i64,
    /// Guesses per source address per window, whatever the SID.
    pub per_source: u32,
    /// Guesses per SID per source address per window.
    pub per_sid_source: u32,
}

impl Default for GuessLimits {
    /// 5 per SID and 60 in all from one address per 15 minutes: room for
    /// a student's typos and for a lab of students enrolling at once
    /// behind one NAT address, and nothing near what 100-bit codes would
    /// need (docs/security.md has the numbers).
    fn default() -> Self {
        GuessLimits {
            window: 15 * 60,
            per_source: 60,
            per_sid_source: 5,
        }
    }
}

/// How long guesses are kept: at least a day (for `server status`), and
/// at least the window (for the bounds).
pub const GUESS_RETENTION: i64 = 24 * 60 * 60;

/// One enrollment code guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// The SID the CSR names (on the roster or not: the two are counted
    /// alike, so the count tells nothing about the roster).
    pub sid: String,
    /// The source it came from ([`crate::course::guess_source`]).
    pub source: String,
    /// When, Unix seconds.
    pub at: i64,
    /// The bounds it must fit in.
    pub limits: GuessLimits,
}

/// Which bound a guess met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuessBound {
    /// Guesses from the source, across SIDs.
    Source,
    /// Guesses for the SID from the source.
    SidSource,
}

impl Guess {
    /// Whether this guess fits, given the times of the guesses already
    /// counted from its source within its window (`by_source`, any SID)
    /// and of those for its SID among them (`by_pair`); else which bound
    /// it met and when a guess fits again (the oldest guess that has to
    /// leave the window for one more to fit, plus the window). The one
    /// rule both engines apply, inside the transaction that then counts it.
    fn verdict(&self, by_source: &[i64], by_pair: &[i64]) -> Result<(), (GuessBound, i64)> {
        let l = &self.limits;
        let over = |ats: &[i64], limit: u32| -> Option<i64> {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            if ats.len() < limit {
                return None;
            }
            let mut sorted = ats.to_vec();
            sorted.sort_unstable();
            // With `limit` 0 nothing ever fits: the window from now.
            let leaves = sorted.get(ats.len() - limit).copied().unwrap_or(self.at);
            Some(leaves.saturating_add(l.window))
        };
        if let Some(at) = over(by_pair, l.per_sid_source) {
            return Err((GuessBound::SidSource, at));
        }
        if let Some(at) = over(by_source, l.per_source) {
            return Err((GuessBound::Source, at));
        }
        Ok(())
    }

    /// Guesses at or before this time are outside the window.
    fn window_start(&self) -> i64 {
        self.at.saturating_sub(self.limits.window)
    }

    /// Guesses at or before this time are deleted.
    fn retained_after(&self) -> i64 {
        self.at
            .saturating_sub(self.limits.window.max(GUESS_RETENTION))
    }
}

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
    /// What authorised it, and what it therefore consumes or supersedes in
    /// the same transaction.
    pub authorised: Authorisation,
}

/// What authorised an issuance, with what the record does besides being
/// inserted, all in its transaction: a code is consumed (the record
/// commits only if it is still unused) and supersedes every other live
/// certificate of the SID (a lost laptop's, an impostor's from open
/// enrollment); a renewal supersedes the certificate it renews (and
/// commits only if that one is still unrevoked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorisation {
    /// Open enrollment (no roster), or legacy mode: nobody vouched.
    Open,
    /// The SID's enrollment code (its key): vouched.
    Code(CodeKey),
    /// Proof of possession of a current certificate's key.
    Renewal {
        /// The certificate renewed.
        renews: Serial,
        /// Whether a code, or a chain of renewals from one, vouches for
        /// the certificate renewed (and so for this one).
        vouched: bool,
    },
}

impl Authorisation {
    /// Whether a code (directly or through renewals) vouches for it.
    pub fn vouched(&self) -> bool {
        match self {
            Authorisation::Open => false,
            Authorisation::Code(_) => true,
            Authorisation::Renewal { vouched, .. } => *vouched,
        }
    }

    /// Its kind, as stored and listed.
    pub fn kind(&self) -> Authorised {
        match self {
            Authorisation::Open => Authorised::Open,
            Authorisation::Code(_) => Authorised::Code,
            Authorisation::Renewal { .. } => Authorised::Renewal,
        }
    }
}

/// The kind of [`Authorisation`] a stored certificate had (`certs.authorised`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorised {
    /// Open enrollment or legacy mode.
    Open,
    /// An enrollment code.
    Code,
    /// A renewal.
    Renewal,
}

impl Authorised {
    /// The name stored and listed.
    pub fn as_str(self) -> &'static str {
        match self {
            Authorised::Open => "open",
            Authorised::Code => "code",
            Authorised::Renewal => "renewal",
        }
    }

    /// The kind of a stored name (certboard writes only these three).
    fn parse(s: &str) -> Authorised {
        match s {
            "code" => Authorised::Code,
            "renewal" => Authorised::Renewal,
            _ => Authorised::Open,
        }
    }
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
        crate::crypto::hex_lower(&self.sha256)
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
        StoreError::Postgres(e) => e.is_disk_full(),
        // An uploaded file's write or fsync (SQLite engine).
        StoreError::Io { source, .. } => {
            let full = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT];
            source
                .raw_os_error()
                .is_some_and(|n| full.iter().any(|e| e.raw_os_error() == n))
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
        /// Whether a code, or a chain of renewals from one, vouches for it:
        /// once a roster is in force, an unvouched certificate (from open
        /// enrollment before the roster) neither renews nor submits.
        vouched: bool,
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
    /// What authorised it.
    pub authorised: Authorised,
    /// Whether a code, directly or through renewals, vouches for it.
    pub vouched: bool,
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
    /// Students whose name stayed and whose e-mail address changed.
    pub new_email: usize,
    /// Students already there as given.
    pub unchanged: usize,
}

impl RosterChange {
    /// Counts `student` against the roster's row for her SID, if any:
    /// its name, whether she had been dropped, its e-mail address. The one
    /// rule for both engines.
    pub(crate) fn count(&mut self, student: &Student, old: Option<(&str, bool, Option<&str>)>) {
        match old {
            None | Some((_, true, _)) => self.added += 1,
            Some((name, false, _)) if name != student.name => self.renamed += 1,
            Some((_, false, email))
                if student.email.as_deref().is_some_and(|e| Some(e) != email) =>
            {
                self.new_email += 1;
            }
            Some(_) => self.unchanged += 1,
        }
    }
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
    /// Code guesses for her SID counted in the last [`GUESS_RETENTION`]
    /// seconds, from any source: right and wrong alike, since a guess is
    /// counted before it is checked.
    pub recent_guesses: u64,
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

/// What the store holds at one time, for the `/metrics` gauges (issue 22,
/// 16): the course's state, which a restart of the server does not reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    /// Certificates issued, ever.
    pub certs: u64,
    /// Certificates neither revoked nor expired.
    pub certs_current: u64,
    /// Certificates revoked.
    pub certs_revoked: u64,
    /// Students (SIDs) holding at least one current certificate.
    pub students_current: u64,
    /// Reports recorded.
    pub reports: u64,
    /// Students on the roster (not those removed from it, as in
    /// [`Counts::roster`]).
    pub roster: u64,
}

/// The query behind [`Storage::census`], the same text in both engines
/// (`$1`, the time, is numbered in SQLite's and PostgreSQL's syntax alike).
pub(crate) const CENSUS_SQL: &str = "SELECT
    (SELECT count(*) FROM certs),
    (SELECT count(*) FROM certs WHERE revoked_at IS NULL AND not_after > $1),
    (SELECT count(*) FROM certs WHERE revoked_at IS NOT NULL),
    (SELECT count(DISTINCT sid) FROM certs WHERE revoked_at IS NULL AND not_after > $1),
    (SELECT count(*) FROM reports),
    (SELECT count(*) FROM roster WHERE dropped_at IS NULL)";

/// A [`Census`] from [`CENSUS_SQL`]'s six counts, in order.
pub(crate) fn census_of(n: [i64; 6]) -> Census {
    let [certs, certs_current, certs_revoked, students_current, reports, roster] =
        n.map(i64::unsigned_abs);
    Census {
        certs,
        certs_current,
        certs_revoked,
        students_current,
        reports,
        roster,
    }
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
    /// [`Storage::commit`], saying where the batch's log entries went
    /// ([`tlog::Appended`]: the first one's index and the tree head after
    /// the commit) so that a receipt's proof needs no store lookup to find
    /// them. `None`: the batch logged nothing, or the store does not say.
    fn commit_logged(&mut self, batch: &[Record]) -> Result<Option<tlog::Appended>, StoreError> {
        self.commit(batch).map(|()| None)
    }
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
    /// (reissue; guesses counted stay counted). Returns
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
    /// The [`Census`] at `now` (Unix seconds: a certificate whose notAfter
    /// is not after it has expired). Read-only.
    fn census(&mut self, now: i64) -> Result<Census, StoreError>;
    /// Every revoked certificate, in revocation order.
    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError>;
    /// The current [`RevocationMark`].
    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError>;
    /// Every file submission (protocol version 3), oldest first.
    fn uploads(&mut self) -> Result<Vec<UploadRecord>, StoreError>;
    /// Her reports and file submissions (`client status`), each oldest
    /// first. The engines read only hers; this default reads everything.
    fn submissions_of(
        &mut self,
        sid: &str,
    ) -> Result<(Vec<ReportRecord>, Vec<UploadRecord>), StoreError> {
        let mut reports = self.reports()?;
        reports.retain(|r| r.sid == sid);
        let mut uploads = self.uploads()?;
        uploads.retain(|u| u.sid == sid);
        Ok((reports, uploads))
    }
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
    /// The transparency log's tree head (size and root).
    fn log_head(&mut self) -> Result<tlog::Head, StoreError>;
    /// Stored log hashes, in the order asked; a missing one is
    /// [`StoreError::Log`].
    fn log_nodes(&mut self, ids: &[NodeId]) -> Result<Vec<LogHash>, StoreError>;
    /// The log's entries `[from, to)`, in order; a gap is [`StoreError::Log`].
    fn log_entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Entry `index` and the stored hashes `ids` (as [`Storage::log_nodes`]),
    /// read together: what a proof of one entry needs. An engine reads them
    /// in one transaction (each costs its locks and a page cache a commit
    /// may have just invalidated).
    fn log_entry_and_nodes(
        &mut self,
        index: u64,
        ids: &[NodeId],
    ) -> Result<(Vec<u8>, Vec<LogHash>), StoreError> {
        let entry = self
            .log_entries(index, index + 1)?
            .pop()
            .ok_or(StoreError::Log(
                crate::tlog::merkle::TreeError::MissingNode(NodeId::new(0, index)),
            ))?;
        Ok((entry, self.log_nodes(ids)?))
    }
    /// The index of the entry logging a record (`tlog::cert_record_key`,
    /// `tlog::report_record_key`), if any.
    fn log_index_of(&mut self, record: &str) -> Result<Option<u64>, StoreError>;
}

/// A batch as both engines write it, with the rules that do not depend on
/// the engine applied once: guesses to count first (each within its
/// bounds, [`Guess::verdict`], or the whole batch fails with
/// [`StoreError::TooManyGuesses`]), then codes to spend (each by the
/// certificate it authorised, or the whole batch fails with
/// [`StoreError::CodeUsed`]), then the rows. Each engine runs the phases
/// in this order in one transaction.
#[derive(Debug, Default)]
struct Writes<'a> {
    /// Codes to consume, in batch order.
    spends: Vec<CodeSpend<'a>>,
    /// Guesses to count, in batch order.
    guesses: Vec<&'a Guess>,
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
    /// Certificates superseded by the new ones, after they are inserted.
    supersedes: Vec<Supersede<'a>>,
    /// For each of `uploads`, its leaf's place among the batch's leaves.
    upload_leaves: Vec<u64>,
    /// How many leaves the batch appends ([`tlog::has_leaf`]).
    leaves: u64,
}

/// What a new certificate revokes as `superseded`, in its transaction.
#[derive(Debug)]
enum Supersede<'a> {
    /// A renewal: the certificate renewed, which must still be unrevoked
    /// (else the batch fails with [`StoreError::RenewedRevoked`]).
    Renewed {
        sid: &'a str,
        renews: &'a Serial,
        renews_text: String,
    },
    /// A code enrollment: every other unrevoked certificate of the SID.
    AllOthers { sid: &'a str, serial: String },
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
    authorised: &'static str,
    vouched: bool,
    /// The serial renewed, for a renewal.
    renews: Option<String>,
    /// Its leaf's place among the batch's leaves (in batch order, as
    /// [`tlog::leaves_of`] makes them): its entry's index is the log's
    /// size before the batch plus this.
    leaf: u64,
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
    /// As [`CertInsert::leaf`].
    leaf: u64,
}

impl<'a> Writes<'a> {
    fn of(batch: &'a [Record]) -> Writes<'a> {
        let mut w = Writes::default();
        for record in batch {
            let leaf = w.leaves;
            if tlog::has_leaf(record) {
                w.leaves += 1;
            }
            match record {
                Record::Cert(c) => {
                    let serial = c.serial.to_string();
                    let mut renews = None;
                    match &c.authorised {
                        Authorisation::Open => {}
                        Authorisation::Code(key) => {
                            w.spends.push(CodeSpend {
                                sid: &c.sid,
                                serial: serial.clone(),
                                key,
                            });
                            w.supersedes.push(Supersede::AllOthers {
                                sid: &c.sid,
                                serial: serial.clone(),
                            });
                        }
                        Authorisation::Renewal { renews: old, .. } => {
                            renews = Some(old.to_string());
                            w.supersedes.push(Supersede::Renewed {
                                sid: &c.sid,
                                renews: old,
                                renews_text: old.to_string(),
                            });
                        }
                    }
                    w.certs.push(CertInsert {
                        serial,
                        sid: &c.sid,
                        subject: format!("CN={}", c.sid),
                        not_before: c.not_before,
                        not_after: c.not_after,
                        der: &c.der,
                        origin: c.origin.as_str(),
                        authorised: c.authorised.kind().as_str(),
                        vouched: c.authorised.vouched(),
                        renews,
                        leaf,
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
                    leaf,
                }),
                Record::Guess(g) => w.guesses.push(g),
                Record::Chunk(c) => w.chunks.push(c),
                Record::Upload(u) => {
                    w.uploads.push(u);
                    w.upload_leaves.push(leaf);
                }
                Record::DiscardUpload { upload_id } => w.discards.push(*upload_id),
            }
        }
        w
    }

    /// The sources of the guesses, sorted and once each: the order in
    /// which an engine that locks per source takes its locks, so two
    /// transactions never wait for each other in a cycle.
    fn guess_sources(&self) -> Vec<&'a str> {
        let mut s: Vec<&str> = self.guesses.iter().map(|g| g.source.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s
    }
}

/// Applies [`Guess::verdict`] to one guess given the times of its source's
/// guesses in its window (with their SIDs), as an engine read them in its
/// transaction.
fn check_guess(g: &Guess, counted: &[(String, i64)]) -> Result<(), StoreError> {
    let by_source: Vec<i64> = counted.iter().map(|(_, at)| *at).collect();
    let by_pair: Vec<i64> = counted
        .iter()
        .filter(|(sid, _)| *sid == g.sid)
        .map(|(_, at)| *at)
        .collect();
    g.verdict(&by_source, &by_pair)
        .map_err(|(bound, retry_at)| StoreError::TooManyGuesses {
            bound,
            window: g.limits.window,
            limit: match bound {
                GuessBound::Source => g.limits.per_source,
                GuessBound::SidSource => g.limits.per_sid_source,
            },
            at: g.at,
            retry_at,
        })
}

/// The id a student was given, from the signed integer stored.
pub(crate) fn receipt_id_of(stored: i64) -> u64 {
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
    authorised: String,
    vouched: bool,
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
            authorised: Authorised::parse(&self.authorised),
            vouched: self.vouched,
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

/// The `certs` columns a standing is read from: revoked_at,
/// revoke_reason, origin, vouched.
type StatusColumns = (Option<i64>, Option<String>, String, bool);

/// The standing of a certificate from its `certs` columns (`None`: no row).
fn status_of(row: Option<StatusColumns>) -> Result<CertStatus, StoreError> {
    Ok(match row {
        None => CertStatus::Unknown,
        Some((None, _, origin, vouched)) => CertStatus::Good {
            origin: Origin::parse(&origin),
            vouched,
        },
        Some((Some(at), reason, _, _)) => CertStatus::Revoked {
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
        })
    }
}

/// The code state of optional `codes` columns.
fn code_state_of(columns: Option<CodeColumns>) -> Result<Option<CodeState>, StoreError> {
    columns.map(CodeColumns::into_state).transpose()
}
