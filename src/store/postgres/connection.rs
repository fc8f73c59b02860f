//! The connection: connecting, sorting failures (the server's refusals
//! from a server gone), reconnecting under a back-off, and running an
//! operation once more on a fresh connection when nothing can have been kept.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::error::ErrorStack;
use postgres::error::SqlState;
use postgres::Client;

use super::queries::{duplicate_of, Conn, Statements, TxFailure};
use super::schema::Create;
use super::url::Target;
use super::{chain, PgError, PostgresStore, Unavailable};
use crate::store::StoreError;

/// The first wait after a failed reconnect; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between reconnect attempts: short, so a restarted
/// server is used again within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
impl Target {
    pub(super) fn connect(&self) -> Result<Client, StoreError> {
        let mut client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| self.connect_error(e))?;
        // Explicit, whatever the role's or database's default: replies are
        // released on COMMIT's return, so it must mean "flushed".
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(|e| self.failure(e, false, "setting up the session"))?;
        Ok(client)
    }

    /// [`Target::connect`], given up on after the URL's `connect_timeout`
    /// even when the server took the TCP connection and then said nothing
    /// (a stopped postmaster, a proxy with nothing behind it): the client
    /// library bounds only the TCP connect, and a server started against
    /// such a database waited in silence. For opening a store, where a
    /// failure ends the process or the command; the attempt left behind
    /// ends when the server answers or the process exits.
    fn connect_answered(&self) -> Result<Client, StoreError> {
        let waited = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(super::url::CONNECT_TIMEOUT);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let attempt = self.clone();
        let spawned = std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || {
                // The receiver may be gone (given up on): nothing to tell.
                let _ = tx.send(attempt.connect());
            });
        if spawned.is_err() {
            return self.connect();
        }
        match rx.recv_timeout(waited) {
            Ok(done) => done,
            Err(_) => Err(PgError::NoAnswer {
                target: self.shown.clone(),
                waited,
            }
            .into()),
        }
    }

    /// Sorts a failed connection attempt: the server's refusals are the
    /// operator's to fix; everything else (refused, timed out, starting
    /// up, too many connections) may pass and is retried.
    fn connect_error(&self, e: postgres::Error) -> StoreError {
        let target = self.shown.clone();
        if let Some(code) = e.code() {
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return PgError::LoginRefused { target, source: e }.into();
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return PgError::NoDatabase { target, source: e }.into();
            }
        }
        if has_openssl_cause(&e) {
            return PgError::Tls { target, source: e }.into();
        }
        if e.as_db_error().is_some() && !is_connection_failure(&e) {
            return PgError::Statement {
                what: "connecting",
                source: e,
            }
            .into();
        }
        StoreError::Unavailable(Unavailable {
            target,
            outcome_unknown: false,
            retry_in: Duration::ZERO,
            source: Some(Arc::new(e)),
        })
    }

    /// Sorts a failure on an open connection.
    pub(super) fn failure(
        &self,
        e: postgres::Error,
        during_commit: bool,
        what: &'static str,
    ) -> StoreError {
        if is_connection_failure(&e) {
            return StoreError::Unavailable(Unavailable {
                target: self.shown.clone(),
                outcome_unknown: during_commit,
                retry_in: Duration::ZERO,
                source: Some(Arc::new(e)),
            });
        }
        PgError::Statement { what, source: e }.into()
    }
}

fn causes(e: &postgres::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(e.source(), |c: &&(dyn std::error::Error + 'static)| {
        (*c).source()
    })
}

fn has_openssl_cause(e: &postgres::Error) -> bool {
    causes(e).any(|c| c.is::<openssl::ssl::Error>() || c.is::<ErrorStack>())
}

/// Whether the connection, not the statement, failed: closed, an I/O error,
/// or the server's own "connection exception" (class 08) and shutdown codes.
pub(super) fn is_connection_failure(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
        None => causes(e).any(|c| c.is::<std::io::Error>()),
    }
}

/// When the next reconnect may be tried.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// Failed attempts since the last success.
    pub(super) failures: u32,
    not_before: Option<Instant>,
    last: Option<Arc<postgres::Error>>,
}

impl Backoff {
    /// The wait left, if an attempt now would be too soon.
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.not_before
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn failed(&mut self, now: Instant, error: Option<Arc<postgres::Error>>) -> Duration {
        let shift = self.failures.min(10);
        self.failures = self.failures.saturating_add(1);
        let delay = BACKOFF_FIRST.saturating_mul(1 << shift).min(BACKOFF_MAX);
        self.not_before = Some(now + delay);
        self.last = error;
        delay
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

impl PostgresStore {
    /// Connects to the database at `url`
    /// (`postgres://user[:password]@host:port/database[?sslmode=...&sslrootcert=FILE]`),
    /// creating the schema in an empty database and migrating an older
    /// one. Fails, writing nothing, on a bad URL, a refused login, an
    /// unreachable server, or a database holding another schema.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        Self::open_with(url, Create::IfEmpty)
    }

    /// Like [`PostgresStore::open`], but refuses an empty database: the
    /// admin commands must not create a store behind a mistyped URL.
    pub fn open_existing(url: &str) -> Result<PostgresStore, StoreError> {
        Self::open_with(url, Create::Never)
    }

    fn open_with(url: &str, create: Create) -> Result<PostgresStore, StoreError> {
        let target = Target::parse(url)?;
        let mut store = PostgresStore {
            target,
            conn: None,
            backoff: Backoff::default(),
        };
        log::info!("{}: connecting", store.target.shown);
        let client = store.target.connect_answered()?;
        store.attach(client, create)?;
        Ok(store)
    }

    /// `user@host:port/database`, for logs (never the password).
    pub fn target(&self) -> &str {
        &self.target.shown
    }

    /// The connection itself (reconnecting if need be), for `migrate`,
    /// which copies a whole store in one transaction of its own.
    pub(in crate::store) fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.connection()?;
        match self.conn.as_mut() {
            Some(conn) => Ok(&mut conn.client),
            // Not reached: connection() returns Ok only with one in place.
            None => Err(StoreError::Unavailable(Unavailable {
                target: self.target.shown.clone(),
                outcome_unknown: false,
                retry_in: Duration::ZERO,
                source: None,
            })),
        }
    }

    /// Checks (and if allowed, creates or migrates) the schema on a new
    /// connection, then keeps it.
    fn attach(&mut self, mut client: Client, create: Create) -> Result<(), StoreError> {
        self.migrate(&mut client, create)?;
        let stmts = Statements::prepare(&mut client)
            .map_err(|e| self.target.failure(e, false, "preparing statements"))?;
        self.conn = Some(Conn { client, stmts });
        Ok(())
    }

    /// The open connection, reconnecting if there is none and the back-off
    /// allows; `true` with it when it is new.
    pub(super) fn connection(&mut self) -> Result<bool, StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_some() {
            return Ok(false);
        }
        let now = Instant::now();
        if let Some(wait) = self.backoff.wait(now) {
            return Err(StoreError::Unavailable(Unavailable {
                target: self.target.shown.clone(),
                outcome_unknown: false,
                retry_in: wait,
                source: self.backoff.last.clone(),
            }));
        }
        let attempt = self
            .target
            .connect()
            .and_then(|client| self.attach(client, Create::Never));
        match attempt {
            Ok(()) => {
                log::info!("{}: reconnected", self.target.shown);
                self.backoff.succeeded();
                Ok(true)
            }
            Err(StoreError::Unavailable(mut u)) => {
                u.retry_in = self.backoff.failed(now, u.source.clone());
                Err(StoreError::Unavailable(u))
            }
            // A refused login or a changed schema is not transient, but a
            // fix (a new password, a restored database) must not need a
            // restart either: retry on the same schedule.
            Err(other) => {
                self.backoff.failed(now, None);
                Err(other)
            }
        }
    }

    /// Runs `op` on the connection. A failure of the connection drops it;
    /// when nothing can have been kept (not at `COMMIT`) and the connection
    /// was an old one, `op` is tried once more on a new connection: the
    /// server may have restarted while it was idle.
    pub(super) fn run<T>(
        &mut self,
        what: &'static str,
        mut op: impl FnMut(&mut Conn) -> Result<T, TxFailure>,
    ) -> Result<T, StoreError> {
        let mut retried = false;
        loop {
            let fresh = self.connection()?;
            let Some(conn) = self.conn.as_mut() else {
                // Not reached: connection() returns Ok only with one in place.
                return Err(StoreError::Unavailable(Unavailable {
                    target: self.target.shown.clone(),
                    outcome_unknown: false,
                    retry_in: Duration::ZERO,
                    source: None,
                }));
            };
            let (e, at_commit) = match op(conn) {
                Ok(value) => return Ok(value),
                Err(TxFailure::Before(e)) => (e, false),
                Err(TxFailure::AtCommit(e)) => (e, true),
            };
            if !is_connection_failure(&e) {
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && !at_commit {
                    return Err(StoreError::Duplicate(duplicate_of(&e)));
                }
                // A statement error at COMMIT still means "rolled back":
                // the server answered.
                return Err(PgError::Statement { what, source: e }.into());
            }
            self.conn = None;
            log::warn!(
                "{}: connection lost ({what}): {}",
                self.target.shown,
                chain(&e)
            );
            if at_commit || fresh || retried {
                return Err(self.target.failure(e, at_commit, what));
            }
            retried = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.wait(t0), None, "the first attempt is immediate");
        assert_eq!(b.failed(t0, None), BACKOFF_FIRST);
        assert!(b.wait(t0).is_some());
        assert_eq!(b.wait(t0 + BACKOFF_FIRST), None);
        assert_eq!(b.failed(t0, None), BACKOFF_FIRST * 2);
        for _ in 0..40 {
            b.failed(t0, None);
        }
        assert_eq!(b.failed(t0, None), BACKOFF_MAX);
        b.succeeded();
        assert_eq!(b.wait(t0), None);
    }

    #[test]
    fn a_server_that_takes_the_connection_and_says_nothing_is_given_up_on() {
        // The kernel completes the handshake into the backlog; nothing
        // ever answers, as with a stopped postmaster.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let url = format!("postgres://u@127.0.0.1:{port}/db?connect_timeout=1&sslmode=disable");
        let started = Instant::now();
        let Err(e) = PostgresStore::open(&url) else {
            panic!("a silent server gave a store");
        };
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "given up on after its timeout, not the kernel's"
        );
        assert!(
            matches!(e, StoreError::Postgres(PgError::NoAnswer { .. })),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!("u@127.0.0.1:{port}/db"))
                && text.contains("not answered in 1 s"),
            "{text}"
        );
        drop(silent);
    }
}
