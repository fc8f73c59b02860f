//! The statements and the [`Storage`] methods over them.

use crate::time::now_unix;

use crate::store::tlog::AppendError;
use postgres::{Client, Statement, Transaction};

use super::PostgresStore;
use crate::store::{
    census_of, check_guess, code_state_of, receipt_id_of, staged_match, status_of, Assignment,
    Census, CertColumns, CertRow, CertStatus, CodeColumns, CodeKey, Counts, EnrollView, Extension,
    Record, ReportColumns, ReportRecord, Revocation, RevocationColumns, RevocationMark,
    RevocationReason, RosterChange, RosterEntry, Serial, Storage, StoreError, Student,
    SubmissionView, Supersede, UploadColumns, UploadRecord, Writes, CENSUS_SQL, GUESS_RETENTION,
};

/// The first key of the advisory lock a transaction counting guesses takes
/// per source (the second is the source's hash): "GUES".
const GUESS_LOCK: i32 = 0x4755_4553;

/// An open connection and its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) stmts: Statements,
}

/// Where a transaction failed: before `COMMIT` was sent nothing is kept;
/// at `COMMIT` the outcome may be unknown.
pub(super) enum TxFailure {
    Before(postgres::Error),
    AtCommit(postgres::Error),
}

/// Runs `body` in a transaction and commits it.
pub(super) fn in_transaction<T>(
    conn: &mut Conn,
    body: impl FnOnce(&mut Transaction<'_>, &Statements) -> Result<T, postgres::Error>,
) -> Result<T, TxFailure> {
    let mut tx = conn.client.transaction().map_err(TxFailure::Before)?;
    // An error drops `tx`, which rolls back.
    let value = body(&mut tx, &conn.stmts).map_err(TxFailure::Before)?;
    tx.commit().map_err(TxFailure::AtCommit)?;
    Ok(value)
}

pub(super) struct Statements {
    insert_certs: Statement,
    insert_reports: Statement,
    cert_status: Statement,
    revoke_serial: Statement,
    revoke_sid: Statement,
    next_crl: Statement,
    consume_code: Statement,
    lock_source: Statement,
    prune_guesses: Statement,
    counted_guesses: Statement,
    insert_guess: Statement,
    enrollment_view: Statement,
    submission_view: Statement,
    supersede_renewed: Statement,
    supersede_others: Statement,
}

impl Statements {
    pub(super) fn prepare(client: &mut Client) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            // One statement per table for the whole batch: a round trip
            // each, however many records.
            insert_certs: client.prepare(
                "INSERT INTO certs (serial, sid, subject, not_before, not_after, der, origin, issued_at,
                                    authorised, vouched, renews)
                 SELECT serial, sid, subject, not_before, not_after, der, origin, $8,
                        authorised, vouched, renews
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
                             $6::bytea[], $7::text[], $9::text[], $10::bool[], $11::text[])
                      WITH ORDINALITY AS t(serial, sid, subject, not_before, not_after, der, origin,
                                           authorised, vouched, renews, n)
                 ORDER BY n",
            )?,
            insert_reports: client.prepare(
                "INSERT INTO reports (receipt_id, sid, serial, received_at, text, origin,
                                      assignment, late_by, file_size, file_sha256)
                 SELECT receipt_id, sid, serial, received_at, text, origin,
                        assignment, late_by, file_size, file_sha256
                 FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                             $7::text[], $8::int8[], $9::int8[], $10::text[])
                      WITH ORDINALITY AS t(receipt_id, sid, serial, received_at, text, origin,
                                           assignment, late_by, file_size, file_sha256, n)
                 ORDER BY n",
            )?,
            cert_status: client.prepare(
                "SELECT revoked_at, revoke_reason, origin, vouched FROM certs WHERE serial = $1",
            )?,
            // Under READ COMMITTED a second renewal of the same certificate
            // waits for the first, then finds it revoked: one successor.
            supersede_renewed: client.prepare(
                "UPDATE certs SET revoked_at = $1, revoke_reason = $2
                 WHERE serial = $3 AND sid = $4 AND revoked_at IS NULL",
            )?,
            supersede_others: client.prepare(
                "UPDATE certs SET revoked_at = $1, revoke_reason = $2
                 WHERE sid = $3 AND serial <> $4 AND revoked_at IS NULL",
            )?,
            revoke_serial: client.prepare(
                "UPDATE certs SET revoked_at = $1, revoke_reason = $2
                 WHERE serial = $3 AND revoked_at IS NULL",
            )?,
            revoke_sid: client.prepare(
                "UPDATE certs SET revoked_at = $1, revoke_reason = $2
                 WHERE sid = $3 AND revoked_at IS NULL",
            )?,
            next_crl: client.prepare("SELECT nextval('crl_number')")?,
            // Under READ COMMITTED a second transaction updating the same
            // row waits for the first, then re-checks `used_at IS NULL`:
            // one code, one issuance, across hosts too.
            consume_code: client.prepare(
                "UPDATE codes SET used_at = $1, used_serial = $2
                 WHERE sid = $3 AND code_key = $4 AND used_at IS NULL",
            )?,
            // Held to the end of the transaction: a guess from the same
            // source on another host waits here, then counts this one
            // (its next statement sees what was committed meanwhile).
            lock_source: client.prepare(
                "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
            )?,
            prune_guesses: client.prepare("DELETE FROM guesses WHERE at <= $1")?,
            counted_guesses: client.prepare(
                "SELECT sid, at FROM guesses WHERE source = $1 AND at > $2 ORDER BY at",
            )?,
            insert_guess: client
                .prepare("INSERT INTO guesses (sid, source, at) VALUES ($1, $2, $3)")?,
            enrollment_view: client.prepare(
                "SELECT EXISTS (SELECT 1 FROM roster), r.sid IS NOT NULL,
                        c.code_key, c.issued_at, c.used_at
                 FROM (SELECT 1) one
                 LEFT JOIN roster r ON r.sid = $1 AND r.dropped_at IS NULL
                 LEFT JOIN codes c ON c.sid = r.sid",
            )?,
            submission_view: client.prepare(
                "SELECT a.id, a.title, a.opens_at, a.due_at, a.late_until, a.closed_at,
                        e.until,
                        (SELECT value FROM course_settings WHERE name = 'timezone')
                 FROM (SELECT 1) one
                 LEFT JOIN assignments a ON a.id = $2
                 LEFT JOIN extensions e ON e.sid = $1 AND e.assignment = a.id",
            )?,
        })
    }
}

/// "serial 0A" or "receipt 42" from the server's "Key (serial)=(0A)
/// already exists." (the constraint names the table).
pub(super) fn duplicate_of(e: &postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return "a serial or receipt id".to_string();
    };
    let value = db
        .detail()
        .and_then(|d| d.split_once(")=("))
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(v, _)| v.to_string());
    let what = match db.constraint() {
        Some("reports_pkey") => "receipt",
        _ => "serial",
    };
    match value {
        // Receipt ids are stored as signed: show the id the student was given.
        Some(v) if what == "receipt" => match v.parse::<i64>() {
            Ok(id) => format!("receipt {}", id as u64),
            Err(_) => format!("receipt {v}"),
        },
        Some(v) => format!("{what} {v}"),
        None => format!("a {what} of the batch"),
    }
}

/// A batch's rows split into one array per column, as the insert
/// statements take them.
#[derive(Default)]
struct Columns<'a> {
    serial: Vec<&'a str>,
    sid: Vec<&'a str>,
    subject: Vec<&'a str>,
    not_before: Vec<i64>,
    not_after: Vec<i64>,
    der: Vec<&'a [u8]>,
    origin: Vec<&'static str>,
    authorised: Vec<&'static str>,
    vouched: Vec<bool>,
    renews: Vec<Option<&'a str>>,
    receipt_id: Vec<i64>,
    r_sid: Vec<&'a str>,
    r_serial: Vec<&'a str>,
    received_at: Vec<i64>,
    text: Vec<&'a str>,
    r_origin: Vec<&'static str>,
    assignment: Vec<&'a str>,
    late_by: Vec<Option<i64>>,
    file_size: Vec<i64>,
    file_sha256: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(w: &'a Writes<'a>) -> Columns<'a> {
        let mut c = Columns::default();
        for cert in &w.certs {
            c.serial.push(&cert.serial);
            c.sid.push(cert.sid);
            c.subject.push(&cert.subject);
            c.not_before.push(cert.not_before);
            c.not_after.push(cert.not_after);
            c.der.push(cert.der);
            c.origin.push(cert.origin);
            c.authorised.push(cert.authorised);
            c.vouched.push(cert.vouched);
            c.renews.push(cert.renews.as_deref());
        }
        for r in &w.reports {
            c.receipt_id.push(r.receipt_id);
            c.r_sid.push(r.sid);
            c.r_serial.push(&r.serial);
            c.received_at.push(r.received_at);
            c.text.push(r.text);
            c.r_origin.push(r.origin);
            c.assignment.push(r.assignment);
            c.late_by.push(r.late_by);
            c.file_size.push(r.file_size);
            c.file_sha256.push(&r.file_sha256);
        }
        c
    }
}

impl PostgresStore {
    /// Reports, oldest first: every one, or one SID's.
    fn reports_of(&mut self, sid: Option<&str>) -> Result<Vec<ReportRecord>, StoreError> {
        self.run("listing reports", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT receipt_id, sid, serial, received_at, text, origin, assignment,
                            late_by
                     FROM reports WHERE $1::text IS NULL OR sid = $1
                     ORDER BY received_at, seq",
                    &[&sid],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(ReportColumns {
                        receipt_id: r.try_get(0)?,
                        sid: r.try_get(1)?,
                        serial: r.try_get(2)?,
                        received_at: r.try_get(3)?,
                        text: r.try_get(4)?,
                        origin: r.try_get(5)?,
                        assignment: r.try_get(6)?,
                        late_by: r.try_get(7)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })?
        .into_iter()
        .map(ReportColumns::into_record)
        .collect()
    }

    /// File submissions, oldest first: every one, or one SID's.
    fn uploads_of(&mut self, sid: Option<&str>) -> Result<Vec<UploadRecord>, StoreError> {
        self.run("listing uploads", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT receipt_id, upload_id, sid, serial, received_at, assignment,
                     file_name, size, sha256, chunks, late_seconds FROM uploads
                     WHERE $1::text IS NULL OR sid = $1 ORDER BY received_at, seq",
                    &[&sid],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(UploadColumns {
                        receipt_id: r.try_get(0)?,
                        upload_id: r.try_get(1)?,
                        sid: r.try_get(2)?,
                        serial: r.try_get(3)?,
                        received_at: r.try_get(4)?,
                        assignment: r.try_get(5)?,
                        file_name: r.try_get(6)?,
                        size: r.try_get(7)?,
                        sha256: r.try_get(8)?,
                        chunks: r.try_get(9)?,
                        late_seconds: r.try_get(10)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })?
        .into_iter()
        .map(UploadColumns::into_record)
        .collect()
    }
}

/// Each logged row's entry index (`log_index`, where `log_index_of` reads
/// it), once the append has said where the batch's entries start (it
/// locks the head only then, so hosts wait on each other for the append
/// alone): one statement per kind of row the batch holds.
fn set_log_indexes(
    tx: &mut Transaction<'_>,
    w: &Writes<'_>,
    c: &Columns<'_>,
    first: u64,
) -> Result<(), postgres::Error> {
    let at = |leaf: u64| first.saturating_add(leaf) as i64;
    if !w.certs.is_empty() {
        let idx: Vec<i64> = w.certs.iter().map(|x| at(x.leaf)).collect();
        tx.execute(
            "UPDATE certs SET log_index = u.i FROM unnest($1::text[], $2::bigint[]) AS u(s, i)
             WHERE certs.serial = u.s",
            &[&c.serial, &idx],
        )?;
    }
    if !w.reports.is_empty() {
        let idx: Vec<i64> = w.reports.iter().map(|x| at(x.leaf)).collect();
        tx.execute(
            "UPDATE reports SET log_index = u.i FROM unnest($1::bigint[], $2::bigint[]) AS u(r, i)
             WHERE reports.receipt_id = u.r",
            &[&c.receipt_id, &idx],
        )?;
    }
    if !w.uploads.is_empty() {
        let ids: Vec<i64> = w.uploads.iter().map(|u| u.receipt_id as i64).collect();
        let idx: Vec<i64> = w.upload_leaves.iter().map(|&l| at(l)).collect();
        tx.execute(
            "UPDATE uploads SET log_index = u.i FROM unnest($1::bigint[], $2::bigint[]) AS u(r, i)
             WHERE uploads.receipt_id = u.r",
            &[&ids, &idx],
        )?;
    }
    Ok(())
}

impl Storage for PostgresStore {
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        self.commit_logged(batch).map(drop)
    }

    fn commit_logged(
        &mut self,
        batch: &[Record],
    ) -> Result<Option<crate::store::tlog::Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let w = Writes::of(batch);
        let c = Columns::of(&w);
        let now = now_unix();
        let leaves = crate::store::tlog::leaves_of(batch, now);
        // A damaged log aborts the transaction (returned before commit).
        let log_damage = std::cell::RefCell::new(None);
        // Where the leaves went, in the attempt that committed.
        let appended = std::cell::Cell::new(None);
        let outcome = self.run("committing a batch", |conn| {
            appended.set(None);
            let stmts = &conn.stmts;
            let mut tx = conn.client.transaction().map_err(TxFailure::Before)?;
            // Dropping `tx` on any early return rolls back.
            let body = |tx: &mut Transaction<'_>| -> Result<Option<StoreError>, postgres::Error> {
                // Every lock first, in one order: no two hosts wait on
                // each other in a cycle.
                for source in w.guess_sources() {
                    tx.execute(&stmts.lock_source, &[&GUESS_LOCK, &source])?;
                }
                for g in &w.guesses {
                    tx.execute(&stmts.prune_guesses, &[&g.retained_after()])?;
                    let rows = tx.query(&stmts.counted_guesses, &[&g.source, &g.window_start()])?;
                    let counted = rows
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect::<Result<Vec<(String, i64)>, postgres::Error>>()?;
                    if let Err(e) = check_guess(g, &counted) {
                        return Ok(Some(e));
                    }
                    tx.execute(&stmts.insert_guess, &[&g.sid, &g.source, &g.at])?;
                }
                for spend in &w.spends {
                    let n = tx.execute(
                        &stmts.consume_code,
                        &[&now, &spend.serial, &spend.sid, &spend.key],
                    )?;
                    if n == 0 {
                        return Ok(Some(StoreError::CodeUsed {
                            sid: spend.sid.to_string(),
                        }));
                    }
                }
                if !c.serial.is_empty() {
                    tx.execute(
                        &stmts.insert_certs,
                        &[
                            &c.serial,
                            &c.sid,
                            &c.subject,
                            &c.not_before,
                            &c.not_after,
                            &c.der,
                            &c.origin,
                            &now,
                            &c.authorised,
                            &c.vouched,
                            &c.renews,
                        ],
                    )?;
                }
                let superseded = RevocationReason::Superseded.name();
                for s in &w.supersedes {
                    match s {
                        Supersede::Renewed {
                            sid,
                            renews,
                            renews_text,
                        } => {
                            let n = tx.execute(
                                &stmts.supersede_renewed,
                                &[&now, &superseded, renews_text, sid],
                            )?;
                            if n == 0 {
                                return Ok(Some(StoreError::RenewedRevoked {
                                    sid: sid.to_string(),
                                    serial: (*renews).clone(),
                                }));
                            }
                        }
                        Supersede::AllOthers { sid, serial } => {
                            tx.execute(&stmts.supersede_others, &[&now, &superseded, sid, serial])?;
                        }
                    }
                }
                if !c.receipt_id.is_empty() {
                    tx.execute(
                        &stmts.insert_reports,
                        &[
                            &c.receipt_id,
                            &c.r_sid,
                            &c.r_serial,
                            &c.received_at,
                            &c.text,
                            &c.r_origin,
                            &c.assignment,
                            &c.late_by,
                            &c.file_size,
                            &c.file_sha256,
                        ],
                    )?;
                    // One namespace of receipt ids for reports and files:
                    // a receipt id names one submission.
                    if let Some(row) = tx.query_opt(
                        "SELECT receipt_id FROM uploads WHERE receipt_id = ANY($1::int8[]) LIMIT 1",
                        &[&c.receipt_id],
                    )? {
                        let id: i64 = row.try_get(0)?;
                        return Ok(Some(StoreError::Duplicate(format!(
                            "receipt {} (a file's)",
                            receipt_id_of(id)
                        ))));
                    }
                }
                for ch in &w.chunks {
                    tx.execute(
                        "INSERT INTO upload_chunks (upload_id, seq, data, staged_at)
                         VALUES ($1, $2, $3, $4)",
                        &[&ch.upload_id, &(ch.seq as i64), &ch.data, &now],
                    )?;
                }
                for u in &w.uploads {
                    let row = tx.query_one(
                        "SELECT count(*), coalesce(sum(length(data)), 0)::BIGINT
                         FROM upload_chunks WHERE upload_id = $1",
                        &[&u.upload_id],
                    )?;
                    let (count, bytes): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                    if let Err(e) = staged_match(u, count, bytes) {
                        return Ok(Some(e));
                    }
                    let taken: bool = tx
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM reports WHERE receipt_id = $1)",
                            &[&(u.receipt_id as i64)],
                        )?
                        .try_get(0)?;
                    if taken {
                        return Ok(Some(StoreError::Duplicate(format!(
                            "receipt {} (a report's)",
                            u.receipt_id
                        ))));
                    }
                    tx.execute(
                        "INSERT INTO uploads (receipt_id, upload_id, sid, serial, received_at,
                         assignment, file_name, size, sha256, chunks, late_seconds)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &[
                            &(u.receipt_id as i64),
                            &u.upload_id,
                            &u.sid,
                            &u.serial.to_string(),
                            &u.received_at,
                            &u.assignment,
                            &u.file_name,
                            &(u.size as i64),
                            &&u.sha256[..],
                            &(u.chunks as i64),
                            &u.late_seconds,
                        ],
                    )?;
                }
                for id in &w.discards {
                    tx.execute(
                        "DELETE FROM upload_chunks WHERE upload_id = $1
                         AND NOT EXISTS (SELECT 1 FROM uploads WHERE upload_id = $1)",
                        &[id],
                    )?;
                }
                if !leaves.is_empty() {
                    match crate::store::tlog::pg_append(tx, &leaves) {
                        Ok(a) => {
                            let first = a.first;
                            appended.set(Some(a));
                            set_log_indexes(tx, &w, &c, first)?;
                        }
                        Err(AppendError::Engine(e)) => return Err(e),
                        Err(AppendError::Tree(e)) => {
                            *log_damage.borrow_mut() = Some(e);
                            return Ok(None);
                        }
                    }
                }
                Ok(None)
            };
            if let Some(refused) = body(&mut tx).map_err(TxFailure::Before)? {
                return Ok(Some(refused));
            }
            if log_damage.borrow().is_some() {
                // Dropping `tx` rolls back: no record without its leaf.
                return Ok(None);
            }
            tx.commit().map_err(TxFailure::AtCommit)?;
            Ok(None)
        })?;
        if let Some(e) = log_damage.into_inner() {
            return Err(StoreError::Log(e));
        }
        match outcome {
            None => Ok(appended.take()),
            Some(refused) => Err(refused),
        }
    }

    fn cert_status(&mut self, serial: &Serial) -> Result<CertStatus, StoreError> {
        let serial_hex = serial.to_string();
        self.run("reading a certificate's status", |conn| {
            let row = conn
                .client
                .query_opt(&conn.stmts.cert_status, &[&serial_hex])
                .map_err(TxFailure::Before)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let read = || -> Result<_, postgres::Error> {
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ))
            };
            read().map(Some).map_err(TxFailure::Before)
        })
        .and_then(status_of)
    }

    fn revoke_serial(
        &mut self,
        serial: &Serial,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        let serial_hex = serial.to_string();
        let reason = reason.name();
        self.run("revoking a certificate", |conn| {
            in_transaction(conn, |tx, stmts| {
                tx.execute(&stmts.revoke_serial, &[&at, &reason, &serial_hex])
            })
        })
        .map(count)
    }

    fn revoke_sid(
        &mut self,
        sid: &str,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        let reason = reason.name();
        self.run("revoking a SID's certificates", |conn| {
            in_transaction(conn, |tx, stmts| {
                tx.execute(&stmts.revoke_sid, &[&at, &reason, &sid])
            })
        })
        .map(count)
    }

    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        self.run("listing certificates", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT serial, sid, not_before, not_after, origin, revoked_at, revoke_reason, der,
                            authorised, vouched
                     FROM certs ORDER BY issued_at, seq",
                    &[],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(CertColumns {
                        serial: r.try_get(0)?,
                        sid: r.try_get(1)?,
                        not_before: r.try_get(2)?,
                        not_after: r.try_get(3)?,
                        origin: r.try_get(4)?,
                        revoked_at: r.try_get(5)?,
                        reason: r.try_get(6)?,
                        der: r.try_get(7)?,
                        authorised: r.try_get(8)?,
                        vouched: r.try_get(9)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })?
        .into_iter()
        .map(CertColumns::into_row)
        .collect()
    }

    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        self.reports_of(None)
    }

    fn submissions_of(
        &mut self,
        sid: &str,
    ) -> Result<(Vec<ReportRecord>, Vec<UploadRecord>), StoreError> {
        Ok((self.reports_of(Some(sid))?, self.uploads_of(Some(sid))?))
    }

    fn uploads(&mut self) -> Result<Vec<UploadRecord>, StoreError> {
        self.uploads_of(None)
    }

    fn upload_chunk(&mut self, upload_id: i64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let seq = seq as i64;
        self.run("reading an upload's chunk", |conn| {
            let row = conn
                .client
                .query_opt(
                    "SELECT data FROM upload_chunks WHERE upload_id = $1 AND seq = $2",
                    &[&upload_id, &seq],
                )
                .map_err(TxFailure::Before)?;
            row.map(|r| r.try_get(0))
                .transpose()
                .map_err(TxFailure::Before)
        })
    }

    fn staged_chunks(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self.run("counting staged chunks", |conn| {
            conn.client
                .query_one(
                    "SELECT count(*) FROM upload_chunks c
                     WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.upload_id = c.upload_id)",
                    &[],
                )
                .and_then(|r| r.try_get(0))
                .map_err(TxFailure::Before)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn discard_orphan_chunks(&mut self, before: i64) -> Result<u64, StoreError> {
        self.run("discarding abandoned uploads", |conn| {
            conn.client
                .execute(
                    "DELETE FROM upload_chunks WHERE upload_id IN (
                         SELECT c.upload_id FROM upload_chunks c
                         WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.upload_id = c.upload_id)
                         GROUP BY c.upload_id HAVING max(c.staged_at) < $1)",
                    &[&before],
                )
                .map_err(TxFailure::Before)
        })
    }

    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError> {
        self.run("listing revocations", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT serial, revoked_at, revoke_reason FROM certs
                     WHERE revoked_at IS NOT NULL ORDER BY revoked_at, seq",
                    &[],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(RevocationColumns {
                        serial: r.try_get(0)?,
                        revoked_at: r.try_get(1)?,
                        reason: r.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })?
        .into_iter()
        .map(RevocationColumns::into_revocation)
        .collect()
    }

    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError> {
        let (count, latest): (i64, i64) = self.run("reading the revocation mark", |conn| {
            conn.client
                .query_one(
                    "SELECT count(*), coalesce(max(revoked_at), 0)::int8 FROM certs
                     WHERE revoked_at IS NOT NULL",
                    &[],
                )
                .and_then(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .map_err(TxFailure::Before)
        })?;
        Ok(RevocationMark {
            count: count.unsigned_abs(),
            latest,
        })
    }

    fn log_head(&mut self) -> Result<crate::store::tlog::Head, StoreError> {
        self.run("reading the log head", |conn| {
            crate::store::tlog::pg_head(&mut conn.client).map_err(TxFailure::Before)
        })?
        .map_err(StoreError::Log)
    }

    fn log_nodes(
        &mut self,
        ids: &[crate::tlog::NodeId],
    ) -> Result<Vec<crate::tlog::Hash>, StoreError> {
        self.run("reading log hashes", |conn| {
            crate::store::tlog::pg_nodes(&mut conn.client, ids).map_err(TxFailure::Before)
        })?
        .map_err(StoreError::Log)
    }

    fn log_entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.run("reading log entries", |conn| {
            crate::store::tlog::pg_entries(&mut conn.client, from, to).map_err(TxFailure::Before)
        })?
        .map_err(StoreError::Log)
    }

    fn log_index_of(&mut self, record: &str) -> Result<Option<u64>, StoreError> {
        self.run("finding a record's log entry", |conn| {
            crate::store::tlog::pg_index_of(&mut conn.client, record).map_err(TxFailure::Before)
        })
    }

    fn check(&mut self) -> Result<(), StoreError> {
        self.run("checking the database", |conn| {
            conn.client
                .query_one("SELECT 1", &[])
                .map(|_| ())
                .map_err(TxFailure::Before)
        })
    }

    /// `nextval` is outside any transaction's rollback: a number taken is
    /// never handed out again, on any host, whatever happens to the caller.
    /// A retry after a lost connection may skip a number; CRL numbers need
    /// only increase.
    fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self.run("taking a CRL number", |conn| {
            conn.client
                .query_one(&conn.stmts.next_crl, &[])
                .and_then(|row| row.try_get(0))
                .map_err(TxFailure::Before)
        })?;
        // MINVALUE 1: never negative.
        Ok(n.unsigned_abs())
    }

    fn import_roster(&mut self, students: &[Student]) -> Result<RosterChange, StoreError> {
        self.run("importing the roster", |conn| {
            in_transaction(conn, |tx, _| {
                let mut change = RosterChange::default();
                let now = now_unix();
                for s in students {
                    let old = tx.query_opt(
                        "SELECT name, dropped_at, email FROM roster WHERE sid = $1",
                        &[&s.sid],
                    )?;
                    match old {
                        None => {
                            change.count(s, None);
                            tx.execute(
                                "INSERT INTO roster (sid, name, added_at, email)
                                 VALUES ($1, $2, $3, $4)",
                                &[&s.sid, &s.name, &now, &s.email],
                            )?;
                        }
                        Some(row) => {
                            let name: String = row.try_get(0)?;
                            let dropped: Option<i64> = row.try_get(1)?;
                            let email: Option<String> = row.try_get(2)?;
                            change.count(s, Some((&name, dropped.is_some(), email.as_deref())));
                            tx.execute(
                                "UPDATE roster SET name = $2, dropped_at = NULL WHERE sid = $1",
                                &[&s.sid, &s.name],
                            )?;
                        }
                    }
                    if s.email.is_some() {
                        tx.execute(
                            "UPDATE roster SET email = $2 WHERE sid = $1",
                            &[&s.sid, &s.email],
                        )?;
                    }
                }
                Ok(change)
            })
        })
    }

    fn roster(&mut self) -> Result<Vec<RosterEntry>, StoreError> {
        let since = now_unix().saturating_sub(GUESS_RETENTION);
        self.run("reading the roster", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT r.sid, r.name, r.email, r.dropped_at,
                            c.code_key, c.issued_at, c.used_at,
                            (SELECT count(*) FROM guesses g WHERE g.sid = r.sid AND g.at > $1)
                     FROM roster r LEFT JOIN codes c ON c.sid = r.sid ORDER BY r.sid",
                    &[&since],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        raw_code(r, 4)?,
                        r.try_get::<_, i64>(7)?,
                    ))
                })
                .collect::<Result<Vec<RosterColumns>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })?
        .into_iter()
        .map(|(sid, name, email, dropped_at, raw, guesses)| {
            Ok(RosterEntry {
                sid,
                name,
                code: code_state_of(raw)?,
                email,
                dropped_at,
                recent_guesses: guesses.unsigned_abs(),
            })
        })
        .collect()
    }

    fn enrollment_view(&mut self, sid: &str) -> Result<EnrollView, StoreError> {
        self.run("reading the roster", |conn| {
            let r = conn
                .client
                .query_one(&conn.stmts.enrollment_view, &[&sid])
                .map_err(TxFailure::Before)?;
            let read = || -> Result<(bool, bool, Option<CodeColumns>), postgres::Error> {
                Ok((r.try_get(0)?, r.try_get(1)?, raw_code(&r, 2)?))
            };
            read().map_err(TxFailure::Before)
        })
        .and_then(|(roster_on, on_roster, raw)| {
            Ok(EnrollView {
                roster_on,
                on_roster,
                code: code_state_of(raw)?,
            })
        })
    }

    fn store_codes(
        &mut self,
        codes: &[(String, CodeKey)],
        at: i64,
        replace_unused: bool,
    ) -> Result<Vec<String>, StoreError> {
        self.run("storing enrollment codes", |conn| {
            in_transaction(conn, |tx, _| {
                let mut stored = Vec::new();
                for (sid, key) in codes {
                    let n = tx.execute(
                        "INSERT INTO codes (sid, code_key, issued_at) VALUES ($1, $2, $3)
                         ON CONFLICT (sid) DO UPDATE
                         SET code_key = excluded.code_key, issued_at = excluded.issued_at,
                             used_at = NULL, used_serial = NULL
                         WHERE codes.used_at IS NOT NULL OR $4",
                        &[sid, &&key[..], &at, &replace_unused],
                    )?;
                    if n == 1 {
                        stored.push(sid.clone());
                    }
                }
                Ok(stored)
            })
        })
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        self.run("counting records", |conn| {
            let r = conn
                .client
                .query_one(
                    "SELECT (SELECT count(*) FROM certs), (SELECT count(*) FROM reports),
                            (SELECT count(*) FROM roster WHERE dropped_at IS NULL)",
                    &[],
                )
                .map_err(TxFailure::Before)?;
            let read = || -> Result<Counts, postgres::Error> {
                Ok(Counts {
                    certs: r.try_get::<_, i64>(0)?.unsigned_abs(),
                    reports: r.try_get::<_, i64>(1)?.unsigned_abs(),
                    roster: r.try_get::<_, i64>(2)?.unsigned_abs(),
                })
            };
            read().map_err(TxFailure::Before)
        })
    }

    fn census(&mut self, now: i64) -> Result<Census, StoreError> {
        let n = self.run("taking the census", |conn| {
            let r = conn
                .client
                .query_one(CENSUS_SQL, &[&now])
                .map_err(TxFailure::Before)?;
            let mut n = [0i64; 6];
            for (i, v) in n.iter_mut().enumerate() {
                *v = r.try_get(i).map_err(TxFailure::Before)?;
            }
            Ok(n)
        })?;
        Ok(census_of(n))
    }

    fn record_window(&mut self, open: Option<i64>, close: Option<i64>) -> Result<(), StoreError> {
        self.run("recording the submission window", |conn| {
            in_transaction(conn, |tx, _| {
                for (name, value) in [("submissions_open", open), ("submissions_close", close)] {
                    tx.execute(
                        "INSERT INTO settings (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        &[&name, &value],
                    )?;
                }
                Ok(())
            })
        })
    }

    fn recorded_window(&mut self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        self.run("reading the submission window", |conn| {
            let rows = conn
                .client
                .query("SELECT name, value FROM settings", &[])
                .map_err(TxFailure::Before)?;
            let mut window = (None, None);
            for r in &rows {
                let name: String = r.try_get(0).map_err(TxFailure::Before)?;
                let value: Option<i64> = r.try_get(1).map_err(TxFailure::Before)?;
                match name.as_str() {
                    "submissions_open" => window.0 = value,
                    "submissions_close" => window.1 = value,
                    _ => {}
                }
            }
            Ok(window)
        })
    }

    fn put_assignment(&mut self, a: &Assignment) -> Result<(), StoreError> {
        self.run("writing an assignment", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "INSERT INTO assignments (id, title, opens_at, due_at, late_until, closed_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET title = excluded.title,
                         opens_at = excluded.opens_at, due_at = excluded.due_at,
                         late_until = excluded.late_until, closed_at = excluded.closed_at",
                    &[
                        &a.id,
                        &a.title,
                        &a.opens,
                        &a.due,
                        &a.late_until,
                        &a.closed_at,
                    ],
                )
                .map(|_| ())
            })
        })
    }

    fn assignments(&mut self) -> Result<Vec<Assignment>, StoreError> {
        self.run("listing assignments", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT id, title, opens_at, due_at, late_until, closed_at FROM assignments
                     ORDER BY due_at IS NOT NULL, due_at, id",
                    &[],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(assignment_of)
                .collect::<Result<Vec<_>, _>>()
                .map_err(TxFailure::Before)
        })
    }

    fn submission_view(
        &mut self,
        sid: &str,
        assignment: &str,
    ) -> Result<SubmissionView, StoreError> {
        self.run("reading an assignment", |conn| {
            // One round trip: the assignment, her extension and the zone.
            let row = conn
                .client
                .query_one(&conn.stmts.submission_view, &[&sid, &assignment])
                .map_err(TxFailure::Before)?;
            let read = || -> Result<SubmissionView, postgres::Error> {
                let found: Option<String> = row.try_get(0)?;
                Ok(SubmissionView {
                    assignment: match found {
                        Some(_) => Some(assignment_of(&row)?),
                        None => None,
                    },
                    extension: row.try_get(6)?,
                    timezone: row.try_get(7)?,
                })
            };
            read().map_err(TxFailure::Before)
        })
    }

    fn extend(
        &mut self,
        sid: &str,
        assignment: &str,
        until: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        let n = self.run("granting an extension", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "INSERT INTO extensions (sid, assignment, until, granted_at)
                     SELECT $1, id, $3, $4 FROM assignments WHERE id = $2
                     ON CONFLICT (sid, assignment) DO UPDATE
                     SET until = excluded.until, granted_at = excluded.granted_at",
                    &[&sid, &assignment, &until, &at],
                )
            })
        })?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("assignment {assignment:?}")));
        }
        Ok(())
    }

    fn extensions(&mut self) -> Result<Vec<Extension>, StoreError> {
        self.run("listing extensions", |conn| {
            let rows = conn
                .client
                .query(
                    "SELECT sid, assignment, until, granted_at FROM extensions
                     ORDER BY assignment, sid",
                    &[],
                )
                .map_err(TxFailure::Before)?;
            rows.iter()
                .map(|r| {
                    Ok(Extension {
                        sid: r.try_get(0)?,
                        assignment: r.try_get(1)?,
                        until: r.try_get(2)?,
                        granted_at: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(TxFailure::Before)
        })
    }

    fn drop_student(&mut self, sid: &str, at: i64) -> Result<bool, StoreError> {
        self.run("removing a student", |conn| {
            in_transaction(conn, |tx, _| {
                tx.execute(
                    "UPDATE roster SET dropped_at = $2 WHERE sid = $1 AND dropped_at IS NULL",
                    &[&sid, &at],
                )
            })
        })
        .map(|n| n == 1)
    }

    fn set_course_setting(&mut self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.run("writing a course setting", |conn| {
            in_transaction(conn, |tx, _| {
                match value {
                    Some(v) => tx.execute(
                        "INSERT INTO course_settings (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        &[&name, &v],
                    )?,
                    None => tx.execute("DELETE FROM course_settings WHERE name = $1", &[&name])?,
                };
                Ok(())
            })
        })
    }

    fn course_setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        self.run("reading a course setting", |conn| {
            conn.client
                .query_opt(
                    "SELECT value FROM course_settings WHERE name = $1",
                    &[&name],
                )
                .and_then(|row| row.map(|r| r.try_get(0)).transpose())
                .map_err(TxFailure::Before)
        })
    }
}

/// A roster row as read: SID, name, e-mail, removal time, code columns and
/// recent guesses.
type RosterColumns = (
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<CodeColumns>,
    i64,
);

/// An `assignments` row from its first six columns.
fn assignment_of(r: &postgres::Row) -> Result<Assignment, postgres::Error> {
    Ok(Assignment {
        id: r.try_get(0)?,
        title: r.try_get(1)?,
        opens: r.try_get(2)?,
        due: r.try_get(3)?,
        late_until: r.try_get(4)?,
        closed_at: r.try_get(5)?,
    })
}

/// The columns of `codes` from column `at` on (all NULL: no code).
fn raw_code(r: &postgres::Row, at: usize) -> Result<Option<CodeColumns>, postgres::Error> {
    let key: Option<Vec<u8>> = r.try_get(at)?;
    let Some(key) = key else {
        return Ok(None);
    };
    Ok(Some(CodeColumns {
        key,
        issued_at: r.try_get(at + 1)?,
        used_at: r.try_get(at + 2)?,
    }))
}

/// Rows updated, as the trait's count.
fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
