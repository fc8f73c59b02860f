//! The staff interface's store calls ([`StaffStorage`]) on PostgreSQL.

use super::queries::{in_transaction, TxFailure};
use super::PostgresStore;
use crate::store::staff::{
    AuditEntry, LoginAttempt, LoginVerdict, StaffAccount, StaffSession, StaffStorage,
};
use crate::store::StoreError;

/// The first key of the advisory lock a transaction counting login
/// attempts takes (the second is 0): "STAF". Counting and inserting are
/// one step, so two hosts cannot both take the last attempt.
const ATTEMPT_LOCK: i32 = 0x5354_4146;

fn session_of(r: &postgres::Row) -> Result<StaffSession, postgres::Error> {
    Ok(StaffSession {
        token_hash: r.try_get(0)?,
        name: r.try_get(1)?,
        csrf: r.try_get(2)?,
        created_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
    })
}

impl StaffStorage for PostgresStore {
    fn add_staff(&mut self, name: &str, phc: &str, at: i64) -> Result<(), StoreError> {
        let n = self.run("adding a staff account", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "INSERT INTO staff_accounts (name, phc, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &phc, &at],
                )
            })
        })?;
        if n == 0 {
            return Err(StoreError::Duplicate(format!("staff account {name}")));
        }
        Ok(())
    }

    fn staff_accounts(&mut self) -> Result<Vec<StaffAccount>, StoreError> {
        self.run("listing staff accounts", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT name, created_at FROM staff_accounts ORDER BY name",
                    &[],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(StaffAccount {
                        name: r.try_get(0)?,
                        created_at: r.try_get(1)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })
    }

    fn staff_password(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        self.run("reading a staff password hash", |conn| {
            conn.client
                .query_opt("SELECT phc FROM staff_accounts WHERE name = $1", &[&name])
                .and_then(|row| row.map(|r| r.try_get(0)).transpose())
                .map_err(TxFailure::Before)
        })
    }

    fn remove_staff(&mut self, name: &str) -> Result<bool, StoreError> {
        self.run("removing a staff account", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute("DELETE FROM staff_sessions WHERE name = $1", &[&name])?;
                tx.execute("DELETE FROM staff_accounts WHERE name = $1", &[&name])
            })
        })
        .map(|n| n == 1)
    }

    fn count_login_attempt(&mut self, attempt: &LoginAttempt) -> Result<LoginVerdict, StoreError> {
        self.run("counting a login attempt", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&ATTEMPT_LOCK])?;
                tx.execute(
                    "DELETE FROM staff_login_attempts WHERE at <= $1",
                    &[&attempt.retained_after()],
                )?;
                let rows = tx.query(
                    "SELECT name, at FROM staff_login_attempts WHERE source = $1 AND at > $2",
                    &[&attempt.source, &attempt.window_start()],
                )?;
                let mut by_source = Vec::with_capacity(rows.len());
                let mut by_pair = Vec::new();
                for r in &rows {
                    let name: String = r.try_get(0)?;
                    let at: i64 = r.try_get(1)?;
                    if name == attempt.name {
                        by_pair.push(at);
                    }
                    by_source.push(at);
                }
                let verdict = attempt.verdict(&by_source, &by_pair);
                if verdict == LoginVerdict::Counted {
                    tx.execute(
                        "INSERT INTO staff_login_attempts (name, source, at) VALUES ($1, $2, $3)",
                        &[&attempt.name, &attempt.source, &attempt.at],
                    )?;
                }
                Ok(verdict)
            })
        })
    }

    fn forget_login_attempts(&mut self, name: &str, source: &str) -> Result<(), StoreError> {
        self.run("forgetting login attempts", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "DELETE FROM staff_login_attempts WHERE name = $1 AND source = $2",
                    &[&name, &source],
                )
            })
        })
        .map(|_| ())
    }

    fn start_staff_session(&mut self, s: &StaffSession) -> Result<(), StoreError> {
        self.run("starting a staff session", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "DELETE FROM staff_sessions WHERE expires_at <= $1",
                    &[&s.created_at],
                )?;
                tx.execute(
                    "INSERT INTO staff_sessions (token_hash, name, csrf, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &s.token_hash,
                        &s.name,
                        &s.csrf,
                        &s.created_at,
                        &s.expires_at,
                    ],
                )
            })
        })
        .map(|_| ())
    }

    fn staff_session(
        &mut self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<StaffSession>, StoreError> {
        self.run("reading a staff session", |conn| {
            conn.client
                .query_opt(
                    "SELECT s.token_hash, s.name, s.csrf, s.created_at, s.expires_at
                     FROM staff_sessions s JOIN staff_accounts a ON a.name = s.name
                     WHERE s.token_hash = $1 AND s.expires_at > $2",
                    &[&token_hash, &now],
                )
                .and_then(|row| row.as_ref().map(session_of).transpose())
                .map_err(TxFailure::Before)
        })
    }

    fn end_staff_session(&mut self, token_hash: &str) -> Result<bool, StoreError> {
        self.run("ending a staff session", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "DELETE FROM staff_sessions WHERE token_hash = $1",
                    &[&token_hash],
                )
            })
        })
        .map(|n| n == 1)
    }

    fn audit(&mut self, e: &AuditEntry) -> Result<i64, StoreError> {
        self.run("writing the audit log", |conn| {
            in_transaction(conn, |tx, _| {
                tx.query_one(
                    "INSERT INTO staff_audit (at, who, action, target, detail)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&e.at, &e.who, &e.action, &e.target, &e.detail],
                )?
                .try_get(0)
            })
        })
    }

    fn settle_audit(&mut self, id: i64, detail: &str) -> Result<bool, StoreError> {
        self.run("recording an audited action's outcome", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "UPDATE staff_audit SET detail = $2 WHERE id = $1",
                    &[&id, &detail],
                )
            })
        })
        .map(|n| n == 1)
    }

    fn audit_log(&mut self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::from(limit);
        self.run("reading the audit log", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT id, at, who, action, target, detail FROM staff_audit
                     ORDER BY id DESC LIMIT $1",
                    &[&limit],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.try_get(0)?,
                        at: r.try_get(1)?,
                        who: r.try_get(2)?,
                        action: r.try_get(3)?,
                        target: r.try_get(4)?,
                        detail: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })
    }
}
