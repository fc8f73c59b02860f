//! The staff web interface's records (issue 23): accounts with their
//! argon2id password hashes, login sessions (the hash of each token only),
//! the audit log of every staff action, and the login attempts counted for
//! the throttle. A trait of its own beside [`Storage`]: only the two
//! engines keep these; the loop's wrappers never see them, since every
//! staff request is served off the loop on a store connection of its own.

use super::{GuessLimits, Storage, StoreError};

/// A staff account, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAccount {
    /// Her login name.
    pub name: String,
    /// When she was added, Unix seconds.
    pub created_at: i64,
}

/// A login session as stored: the token itself is only in her cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// SHA-256 of the cookie's token, lower-case hex.
    pub token_hash: String,
    /// Whose it is.
    pub name: String,
    /// The token every POST of this session must carry.
    pub csrf: String,
    /// When it began, Unix seconds.
    pub created_at: i64,
    /// When it ends, Unix seconds.
    pub expires_at: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its number, increasing (0 before it is stored).
    pub id: i64,
    /// When, Unix seconds.
    pub at: i64,
    /// Which staff member (or the name tried, for a refused login).
    pub who: String,
    /// What: `login`, `login-failed`, `logout`, `revoke`, `code`, ...
    pub action: String,
    /// On what: a SID, an assignment, a serial.
    pub target: String,
    /// The particulars (a reason, a time, a count).
    pub detail: String,
}

/// How many login attempts are taken in any `window` seconds: per source
/// address (whatever the account) and per account from one source. As
/// with enrollment codes ([`GuessLimits`]), there is no bound on an account
/// across sources, so an attacker elsewhere cannot lock her out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// The sliding window, seconds.
    pub window: i64,
    /// Attempts per source address, whatever the account.
    pub per_source: u32,
    /// Attempts per account from one source address.
    pub per_account_source: u32,
}

impl Default for LoginLimits {
    /// 5 per account and 30 in all from one address per 15 minutes: room
    /// for typos and for a room of TAs behind one address, nothing near
    /// what guessing a 12-character password needs.
    fn default() -> Self {
        LoginLimits {
            window: 15 * 60,
            per_source: 30,
            per_account_source: 5,
        }
    }
}

/// A login attempt, counted before its password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The account named (existing or not: counted alike).
    pub name: String,
    /// The source address, as text.
    pub source: String,
    /// When, Unix seconds.
    pub at: i64,
    /// The bounds it must fit in.
    pub limits: LoginLimits,
}

impl LoginAttempt {
    /// The same rule as enrollment code guesses ([`super::Guess`]): the
    /// account plays the SID.
    pub(super) fn as_guess(&self) -> super::Guess {
        super::Guess {
            sid: self.name.clone(),
            source: self.source.clone(),
            at: self.at,
            limits: GuessLimits {
                window: self.limits.window,
                per_source: self.limits.per_source,
                per_sid_source: self.limits.per_account_source,
            },
        }
    }

    /// Whether it fits, given the times of the attempts counted from its
    /// source within the window (`by_source`) and of those for its account
    /// (`by_pair`); else when one fits again.
    pub(super) fn verdict(&self, by_source: &[i64], by_pair: &[i64]) -> LoginVerdict {
        match self.as_guess().verdict(by_source, by_pair) {
            Ok(()) => LoginVerdict::Counted,
            Err((_, retry_at)) => LoginVerdict::Throttled { retry_at },
        }
    }

    /// Attempts at or before this time are outside the window.
    pub(super) fn window_start(&self) -> i64 {
        self.as_guess().window_start()
    }

    /// Attempts at or before this time are deleted.
    pub(super) fn retained_after(&self) -> i64 {
        self.as_guess().retained_after()
    }
}

/// What counting a login attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVerdict {
    /// Counted: check the password.
    Counted,
    /// Over a bound: not counted, the password is not checked.
    Throttled {
        /// When an attempt fits again, Unix seconds.
        retry_at: i64,
    },
}

/// The staff interface's store calls, in both engines.
pub trait StaffStorage: Storage {
    /// Adds an account; [`StoreError::Duplicate`] if the name is taken.
    fn add_staff(&mut self, name: &str, phc: &str, at: i64) -> Result<(), StoreError>;
    /// Every account, by name.
    fn staff_accounts(&mut self) -> Result<Vec<StaffAccount>, StoreError>;
    /// Her password hash (PHC string), if she exists.
    fn staff_password(&mut self, name: &str) -> Result<Option<String>, StoreError>;
    /// Removes an account and ends her sessions, in one transaction;
    /// `false` when there was none.
    fn remove_staff(&mut self, name: &str) -> Result<bool, StoreError>;
    /// Counts a login attempt if it fits its bounds, in one transaction
    /// (dropping attempts older than the retention).
    fn count_login_attempt(&mut self, attempt: &LoginAttempt) -> Result<LoginVerdict, StoreError>;
    /// A login succeeded: her attempts from that source are forgotten.
    fn forget_login_attempts(&mut self, name: &str, source: &str) -> Result<(), StoreError>;
    /// Stores a new session (and deletes sessions expired by its start).
    fn start_staff_session(&mut self, session: &StaffSession) -> Result<(), StoreError>;
    /// The session with this token hash, if it exists, belongs to an
    /// existing account and has not expired at `now`.
    fn staff_session(
        &mut self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<StaffSession>, StoreError>;
    /// Ends a session; `false` when there was none.
    fn end_staff_session(&mut self, token_hash: &str) -> Result<bool, StoreError>;
    /// Appends to the audit log; returns the entry's id.
    fn audit(&mut self, entry: &AuditEntry) -> Result<i64, StoreError>;
    /// Records the outcome of the action an entry announced: its detail
    /// becomes `detail` (a staff action writes its entry first, as an
    /// intent, then does the action, then says how it went; see
    /// `staff::audited`). `false` when there is no entry `id`.
    fn settle_audit(&mut self, id: i64, detail: &str) -> Result<bool, StoreError>;
    /// The newest `limit` audit entries, newest first.
    fn audit_log(&mut self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}
