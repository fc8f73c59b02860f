//! One behaviour contract for both stores (issue 19): every rule of the
//! `Storage` trait written once, generic over the engine, and run against
//! SQLite and PostgreSQL with one `#[test]` per rule per engine, so the two
//! engines are pinned to the same answers.
//!
//! The PostgreSQL half starts its own throwaway cluster
//! (`scripts/pg-test-cluster.sh`, which installs PostgreSQL when missing):
//! it never skips. What only one engine has (SQLite's backup and schema
//! migration, PostgreSQL's hosts, URLs, TLS and reconnects) stays in
//! `src/store/sqlite.rs` and `tests/postgres.rs`.

mod pg;

use std::sync::{Arc, Barrier};

use certboard::staff;
use certboard::store::{Assignment, SubmissionView, TIMEZONE_SETTING};
use certboard::store::{
    AuditEntry, LoginAttempt, LoginLimits, LoginVerdict, StaffSession, StaffStorage,
};
use certboard::store::{
    Authorisation, Authorised, CertRecord, CertStatus, CodeKey, Guess, GuessBound, GuessLimits,
    Origin, PostgresStore, Record, ReportRecord, RevocationMark, RosterChange, SqliteStore,
    Storage, StoreError, Student,
};
use certboard::store::{RevocationReason, Serial};
use pg::{BoxError, Cluster};

type TestResult = Result<(), BoxError>;

/// A place a store lives, and how to open another connection to it (a
/// second host, an admin command beside the server).
trait Engine: Sized {
    type Store: StaffStorage + Send;
    /// An empty location of its own.
    fn fresh(name: &str) -> Result<Self, BoxError>;
    /// A new connection to it.
    fn open(&self) -> Result<Self::Store, BoxError>;
    /// The `subject` column of the certificate with this serial, read
    /// behind the store's back.
    fn subject(&self, serial: &str) -> Result<String, BoxError>;
    /// Makes every write to `table` fail (a trigger raising an error,
    /// behind the store's back), or, with `fail` false, work again.
    fn fail_writes(&self, table: &str, fail: bool) -> Result<(), BoxError>;
}

struct Sqlite(tempfile::TempDir);

impl Engine for Sqlite {
    type Store = SqliteStore;
    fn fresh(_: &str) -> Result<Self, BoxError> {
        Ok(Sqlite(tempfile::tempdir()?))
    }
    fn open(&self) -> Result<SqliteStore, BoxError> {
        Ok(SqliteStore::open(self.0.path())?)
    }
    fn subject(&self, serial: &str) -> Result<String, BoxError> {
        let c = rusqlite::Connection::open(self.0.path().join(certboard::store::DB_FILE))?;
        Ok(c.query_row(
            "SELECT subject FROM certs WHERE serial = ?1",
            [serial],
            |r| r.get(0),
        )?)
    }
    fn fail_writes(&self, table: &str, fail: bool) -> Result<(), BoxError> {
        let c = rusqlite::Connection::open(self.0.path().join(certboard::store::DB_FILE))?;
        for op in ["INSERT", "UPDATE", "DELETE"] {
            let name = format!("injected_{table}_{}", op.to_lowercase());
            c.execute_batch(&if fail {
                format!(
                    "CREATE TRIGGER {name} BEFORE {op} ON {table} \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
                )
            } else {
                format!("DROP TRIGGER {name};")
            })?;
        }
        Ok(())
    }
}

struct Postgres {
    url: String,
    db: String,
}

impl Engine for Postgres {
    type Store = PostgresStore;
    fn fresh(name: &str) -> Result<Self, BoxError> {
        let url = Cluster::shared()?.fresh_db(name)?;
        let path = url.rsplit('/').next().unwrap_or("");
        let db = path.split('?').next().unwrap_or(path).to_string();
        Ok(Postgres { url, db })
    }
    fn open(&self) -> Result<PostgresStore, BoxError> {
        Ok(PostgresStore::open(&self.url)?)
    }
    fn subject(&self, serial: &str) -> Result<String, BoxError> {
        let mut c = Cluster::shared()?.client(&self.db)?;
        Ok(
            c.query_one("SELECT subject FROM certs WHERE serial = $1", &[&serial])?
                .get(0),
        )
    }
    fn fail_writes(&self, table: &str, fail: bool) -> Result<(), BoxError> {
        let mut c = Cluster::shared()?.client(&self.db)?;
        c.batch_execute(&if fail {
            format!(
                "CREATE OR REPLACE FUNCTION injected_failure() RETURNS trigger
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
                 CREATE TRIGGER injected_{table} BEFORE INSERT OR UPDATE OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION injected_failure();"
            )
        } else {
            format!("DROP TRIGGER injected_{table} ON {table};")
        })?;
        Ok(())
    }
}

/// A serial as the records carry it.
fn sn(hex: &str) -> Serial {
    Serial::parse_hex(hex).expect("a test serial is hex")
}

fn cert(serial: &str, sid: &str) -> Record {
    Record::Cert(CertRecord {
        serial: sn(serial),
        sid: sid.into(),
        not_before: 1_700_000_000,
        not_after: 1_800_000_000,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x07],
        origin: Origin::Certboard,
        authorised: Authorisation::Open,
    })
}

fn coded_cert(serial: &str, sid: &str, key: CodeKey) -> Record {
    match cert(serial, sid) {
        Record::Cert(mut c) => {
            c.authorised = Authorisation::Code(key);
            Record::Cert(c)
        }
        other => other,
    }
}

fn report(receipt_id: u64, sid: &str, serial: &str, received_at: i64) -> Record {
    Record::Report(ReportRecord {
        receipt_id,
        sid: sid.into(),
        serial: sn(serial),
        received_at,
        text: "line one\nline two ✓\n".into(),
        origin: Origin::Legacy,
        assignment: "lab".into(),
        late_by: None,
    })
}

/// Bounds small enough to meet in a test: 2 per SID and 3 in all per
/// source in 100 s.
const LIMITS: GuessLimits = GuessLimits {
    window: 100,
    per_source: 3,
    per_sid_source: 2,
};

fn guess(sid: &str, source: &str, at: i64) -> Record {
    Record::Guess(Guess {
        sid: sid.into(),
        source: source.into(),
        at,
        limits: LIMITS,
    })
}

/// The bound and retry time a refused guess names.
fn over(r: Result<(), StoreError>) -> Option<(GuessBound, i64)> {
    match r {
        Err(StoreError::TooManyGuesses {
            bound, retry_at, ..
        }) => Some((bound, retry_at)),
        _ => None,
    }
}

fn good() -> CertStatus {
    CertStatus::Good {
        origin: Origin::Certboard,
        vouched: false,
    }
}

fn renewed_cert(serial: &str, sid: &str, renews: &str, vouched: bool) -> Record {
    match cert(serial, sid) {
        Record::Cert(mut c) => {
            c.authorised = Authorisation::Renewal {
                renews: sn(renews),
                vouched,
            };
            Record::Cert(c)
        }
        other => other,
    }
}

fn vouched() -> CertStatus {
    CertStatus::Good {
        origin: Origin::Certboard,
        vouched: true,
    }
}

fn superseded(s: &mut impl Storage, serial: &str) -> Result<bool, StoreError> {
    Ok(matches!(
        s.cert_status(&sn(serial))?,
        CertStatus::Revoked {
            reason: Some(RevocationReason::Superseded),
            ..
        }
    ))
}

fn students(list: &[(&str, &str)]) -> Vec<Student> {
    list.iter()
        .map(|(sid, name)| Student {
            sid: sid.to_string(),
            name: name.to_string(),
            email: None,
        })
        .collect()
}

// ---- the rules -------------------------------------------------------

/// Certificates and reports come back as committed, in order, from a new
/// connection; every field, all 64 bits of a receipt id, and CN = SID.
fn records_survive_reopen<E: Engine>() -> TestResult {
    let e = E::fresh("reopen")?;
    {
        let mut s = e.open()?;
        s.commit(&[
            cert("AA", "1155000001"),
            report(u64::MAX, "1155000001", "AA", 1_750_000_000),
            cert("BB", "1155000002"),
            report(7, "1155000002", "BB", 1_750_000_000),
        ])?;
        s.commit(&[])?;
    }
    let mut s = e.open()?;
    assert_eq!(s.cert_status(&sn("AA"))?, good());
    assert_eq!(s.cert_status(&sn("CC"))?, CertStatus::Unknown);
    let certs = s.certs()?;
    assert_eq!(certs.len(), 2);
    assert_eq!(
        (certs[0].serial.to_string().as_str(), certs[0].sid.as_str()),
        ("AA", "1155000001"),
        "in the order committed"
    );
    assert_eq!(certs[1].serial, sn("BB"));
    assert_eq!(certs[0].not_before, 1_700_000_000);
    assert_eq!(certs[0].not_after, 1_800_000_000);
    assert_eq!(certs[0].der, vec![0x30, 0x03, 0x02, 0x01, 0x07]);
    assert_eq!(certs[0].origin, Origin::Certboard);
    assert_eq!(certs[0].revoked, None);
    let reports = s.reports()?;
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].receipt_id, u64::MAX, "all 64 bits kept");
    assert_eq!(reports[0].sid, "1155000001");
    assert_eq!(reports[0].serial, sn("AA"));
    assert_eq!(reports[0].origin, Origin::Legacy);
    assert_eq!(reports[0].text, "line one\nline two ✓\n");
    assert_eq!(reports[0].received_at, 1_750_000_000);
    assert_eq!(reports[1].receipt_id, 7);
    // CN = SID, whatever the engine.
    assert_eq!(e.subject("AA")?, "CN=1155000001");
    assert_eq!(e.subject("BB")?, "CN=1155000002");
    Ok(())
}

/// Reports are listed by time received, then in the order committed.
fn reports_are_listed_oldest_first<E: Engine>() -> TestResult {
    let e = E::fresh("order")?;
    let mut s = e.open()?;
    s.commit(&[cert("01", "a")])?;
    s.commit(&[report(3, "a", "01", 30), report(1, "a", "01", 10)])?;
    s.commit(&[report(2, "a", "01", 10)])?;
    let ids: Vec<u64> = s.reports()?.iter().map(|r| r.receipt_id).collect();
    assert_eq!(ids, [1, 2, 3]);
    Ok(())
}

/// A batch is one transaction, and a serial or receipt id is never
/// recorded twice (within a batch, across batches, across connections).
fn a_batch_is_all_or_nothing_and_serials_are_never_reused<E: Engine>() -> TestResult {
    let e = E::fresh("dup")?;
    let mut s = e.open()?;
    s.commit(&[cert("01", "a"), report(5, "a", "01", 1)])?;

    let err = s.commit(&[cert("02", "b"), cert("01", "c")]).err();
    assert!(
        matches!(&err, Some(StoreError::Duplicate(what)) if what == "serial 01"),
        "{err:?}"
    );
    assert_eq!(
        s.cert_status(&sn("02"))?,
        CertStatus::Unknown,
        "rolled back"
    );

    // Within one batch too.
    let err = s.commit(&[cert("03", "d"), cert("03", "e")]).err();
    assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
    assert_eq!(s.cert_status(&sn("03"))?, CertStatus::Unknown);

    // A receipt id, alongside a good certificate that must not be kept.
    let err = s.commit(&[cert("04", "f"), report(5, "f", "04", 1)]).err();
    assert!(
        matches!(&err, Some(StoreError::Duplicate(what)) if what == "receipt 5"),
        "{err:?}"
    );
    assert_eq!(s.cert_status(&sn("04"))?, CertStatus::Unknown);

    // The same serial from another connection is refused just the same.
    let mut other = e.open()?;
    let err = other.commit(&[cert("01", "z")]).err();
    assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");

    // The store still works after the refusals, on the same connection.
    s.commit(&[cert("05", "g")])?;
    assert_eq!(s.certs()?.len(), 2);
    assert_eq!(s.reports()?.len(), 1);
    assert_eq!(
        s.counts()?,
        certboard::store::Counts {
            certs: 2,
            reports: 1,
            roster: 0
        }
    );
    Ok(())
}

/// Revocation by serial or SID happens once, is seen at once by another
/// connection, keeps the reason's RFC 5280 name, and is what the CRL is
/// made from.
fn revocation_by_serial_and_sid<E: Engine>() -> TestResult {
    let e = E::fresh("revoke")?;
    let mut a = e.open()?;
    let mut b = e.open()?;
    assert_eq!(a.revocation_mark()?, RevocationMark::default());
    assert!(a.revocations()?.is_empty());
    a.commit(&[cert("01", "a"), cert("02", "a"), cert("03", "b")])?;
    assert_eq!(b.cert_status(&sn("01"))?, good());
    assert_eq!(
        a.revoke_serial(&sn("03"), RevocationReason::KeyCompromise, 10)?,
        1
    );
    assert_eq!(
        b.revoke_serial(&sn("03"), RevocationReason::Superseded, 11)?,
        0,
        "already revoked"
    );
    assert_eq!(
        a.revoke_serial(&sn("FF"), RevocationReason::Superseded, 11)?,
        0,
        "none such"
    );
    assert_eq!(b.revoke_sid("a", RevocationReason::Unspecified, 12)?, 2);
    assert_eq!(a.revoke_sid("a", RevocationReason::Unspecified, 13)?, 0);
    assert_eq!(
        a.revoke_sid("nobody", RevocationReason::Unspecified, 13)?,
        0
    );
    assert_eq!(
        b.cert_status(&sn("03"))?,
        CertStatus::Revoked {
            at: 10,
            reason: Some(RevocationReason::KeyCompromise)
        }
    );
    assert_eq!(
        a.cert_status(&sn("01"))?,
        CertStatus::Revoked {
            at: 12,
            reason: Some(RevocationReason::Unspecified)
        }
    );
    let listed = a.certs()?;
    assert_eq!(
        listed[2].revoked,
        Some((10, Some(RevocationReason::KeyCompromise)))
    );
    assert_eq!(
        listed[0].revoked,
        Some((12, Some(RevocationReason::Unspecified)))
    );
    // What the CRL is made from, in revocation order, as the other sees it.
    let revoked = b.revocations()?;
    let serials: Vec<(Serial, i64)> = revoked.iter().map(|r| (r.serial.clone(), r.at)).collect();
    assert_eq!(serials, [(sn("03"), 10), (sn("01"), 12), (sn("02"), 12)]);
    assert_eq!(revoked[0].reason, Some(RevocationReason::KeyCompromise));
    assert_eq!(revoked[1].reason, Some(RevocationReason::Unspecified));
    assert_eq!(
        b.revocation_mark()?,
        RevocationMark {
            count: 3,
            latest: 12
        }
    );
    b.check()?;
    Ok(())
}

/// CRL numbers start at 1, increase by one, survive a reopen and are
/// shared by every connection.
fn crl_numbers_increase<E: Engine>() -> TestResult {
    let e = E::fresh("crl")?;
    let mut a = e.open()?;
    assert_eq!(a.next_crl_number()?, 1);
    assert_eq!(a.next_crl_number()?, 2);
    drop(a);
    let mut b = e.open()?;
    assert_eq!(b.next_crl_number()?, 3);
    let mut c = e.open()?;
    assert_eq!(c.next_crl_number()?, 4);
    assert_eq!(b.next_crl_number()?, 5);
    Ok(())
}

/// An address that changes is counted as such and kept; an import without
/// addresses leaves them as they are.
fn an_email_change_is_counted_and_kept<E: Engine>() -> TestResult {
    let e = E::fresh("roster_email")?;
    let mut s = e.open()?;
    let with = |email: &str| {
        vec![Student {
            sid: "1155000001".into(),
            name: "Lee Siu Ming".into(),
            email: Some(email.into()),
        }]
    };
    assert_eq!(s.import_roster(&with("lee@old.example"))?.added, 1);
    let again = s.import_roster(&with("lee@old.example"))?;
    assert_eq!((again.new_email, again.unchanged), (0, 1));
    let moved = s.import_roster(&with("lee@new.example"))?;
    assert_eq!(
        moved,
        RosterChange {
            added: 0,
            renamed: 0,
            new_email: 1,
            unchanged: 0
        }
    );
    let without = s.import_roster(&students(&[("1155000001", "Lee Siu Ming")]))?;
    assert_eq!((without.new_email, without.unchanged), (0, 1));
    let roster = e.open()?.roster()?;
    assert_eq!(
        roster.first().and_then(|r| r.email.as_deref()),
        Some("lee@new.example")
    );
    Ok(())
}

/// Importing adds and renames, never deletes; the roster comes back by
/// SID with each code's state.
fn the_roster_is_imported_and_listed<E: Engine>() -> TestResult {
    let e = E::fresh("roster")?;
    let mut s = e.open()?;
    assert!(s.roster()?.is_empty());
    let first = students(&[
        ("1155000002", "Chan Tai Man"),
        ("1155000001", "Lee Siu Ming"),
    ]);
    assert_eq!(
        s.import_roster(&first)?,
        RosterChange {
            added: 2,
            renamed: 0,
            new_email: 0,
            unchanged: 0
        }
    );
    let second = students(&[
        ("1155000001", "Lee Siu Ming"),
        ("1155000002", "Chan Tai-man"),
    ]);
    assert_eq!(
        s.import_roster(&second)?,
        RosterChange {
            added: 0,
            renamed: 1,
            new_email: 0,
            unchanged: 1
        }
    );
    assert_eq!(
        s.import_roster(&students(&[("1155000003", "Wong")]))?.added,
        1
    );
    s.store_codes(&[("1155000003".into(), [7; 32])], 40, false)?;
    let roster = e.open()?.roster()?;
    let listed: Vec<(&str, &str)> = roster
        .iter()
        .map(|r| (r.sid.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("1155000001", "Lee Siu Ming"),
            ("1155000002", "Chan Tai-man"),
            ("1155000003", "Wong")
        ],
        "never deleted, by SID"
    );
    assert_eq!(roster[0].code, None);
    let code = roster[2].code.as_ref().ok_or("no code listed")?;
    assert_eq!(
        (code.code_key, code.issued_at, code.used_at),
        ([7; 32], 40, None)
    );
    assert_eq!(roster[2].recent_guesses, 0);
    assert_eq!(s.counts()?.roster, 3);
    Ok(())
}

/// No roster: open enrollment; a roster: only its SIDs, each with its code.
fn the_enrollment_view_follows_the_roster<E: Engine>() -> TestResult {
    let e = E::fresh("view")?;
    let mut s = e.open()?;
    let v = s.enrollment_view("1155000001")?;
    assert!(!v.roster_on && !v.on_roster && v.code.is_none(), "{v:?}");
    s.import_roster(&students(&[("1155000001", "A")]))?;
    let v = e.open()?.enrollment_view("1155000001")?;
    assert!(v.roster_on && v.on_roster && v.code.is_none(), "{v:?}");
    let v = s.enrollment_view("1155000009")?;
    assert!(v.roster_on && !v.on_roster && v.code.is_none(), "{v:?}");
    Ok(())
}

/// A code is spent with the certificate it authorised or not at all;
/// storing codes keeps an unused one unless it is reissued.
fn a_code_is_spent_with_its_certificate_or_not_at_all<E: Engine>() -> TestResult {
    let e = E::fresh("codes")?;
    let mut s = e.open()?;
    s.import_roster(&students(&[("1155000001", "A"), ("1155000002", "B")]))?;
    let key = [1u8; 32];
    assert_eq!(
        s.store_codes(&[("1155000001".into(), key)], 10, false)?,
        vec!["1155000001".to_string()]
    );
    let v = s.enrollment_view("1155000001")?;
    assert_eq!(
        v.code
            .as_ref()
            .map(|c| (c.code_key, c.issued_at, c.used_at)),
        Some((key, 10, None))
    );
    // A key that is not the current code's spends nothing, keeps nothing.
    let err = s.commit(&[coded_cert("0B", "1155000001", [2u8; 32])]);
    assert!(
        matches!(&err, Err(StoreError::CodeUsed { sid }) if sid == "1155000001"),
        "{err:?}"
    );
    assert_eq!(s.cert_status(&sn("0B"))?, CertStatus::Unknown);
    s.commit(&[coded_cert("0A", "1155000001", key)])?;
    assert_eq!(s.cert_status(&sn("0A"))?, vouched());
    let c = e.open()?.enrollment_view("1155000001")?.code;
    assert_eq!(c.as_ref().map(|c| c.used_at.is_some()), Some(true), "spent");
    // A second use fails the whole transaction: the other records too.
    let err = s.commit(&[
        cert("0C", "1155000002"),
        report(9, "1155000002", "0C", 1),
        coded_cert("0D", "1155000001", key),
    ]);
    assert!(
        matches!(&err, Err(StoreError::CodeUsed { sid }) if sid == "1155000001"),
        "{err:?}"
    );
    assert_eq!(s.cert_status(&sn("0C"))?, CertStatus::Unknown);
    assert!(s.reports()?.is_empty());
    // A used code is replaced by a plain store; an unused one only by a
    // reissue.
    assert_eq!(
        s.store_codes(&[("1155000001".into(), [3; 32])], 11, false)?
            .len(),
        1
    );
    assert!(s
        .store_codes(&[("1155000001".into(), [4; 32])], 12, false)?
        .is_empty());
    assert_eq!(
        s.store_codes(&[("1155000001".into(), [4; 32])], 12, true)?
            .len(),
        1
    );
    let c = s.enrollment_view("1155000001")?.code;
    assert_eq!(
        c.map(|c| (c.code_key, c.issued_at, c.used_at)),
        Some(([4; 32], 12, None))
    );
    Ok(())
}

/// Guesses are bounded per (SID, source) and per source in a sliding
/// window, never per SID across sources; a refused guess keeps nothing of
/// its batch and says when a guess fits again; what is counted is listed
/// for the roster's SIDs, whatever the source, and nothing locks a code.
fn guesses_are_bounded_per_source_never_per_sid<E: Engine>() -> TestResult {
    let e = E::fresh("guesses")?;
    let mut s = e.open()?;
    s.import_roster(&students(&[("1155000001", "A"), ("1155000002", "B")]))?;
    s.store_codes(&[("1155000001".into(), [6u8; 32])], 1, false)?;
    let (a, b, t) = ("192.0.2.1", "192.0.2.2", 1_000);
    // Two for one SID from A; the third is refused until the first leaves
    // the window.
    s.commit(&[guess("1155000001", a, t)])?;
    s.commit(&[guess("1155000001", a, t + 10)])?;
    assert_eq!(
        over(s.commit(&[guess("1155000001", a, t + 20)])),
        Some((GuessBound::SidSource, t + 100))
    );
    // Another SID from A fits once, then A's bound in all is met, and a
    // refused guess takes its batch with it.
    s.commit(&[guess("1155000002", a, t + 20)])?;
    assert_eq!(
        over(s.commit(&[cert("0E", "1155000002"), guess("1155000009", a, t + 30)])),
        Some((GuessBound::Source, t + 100))
    );
    assert_eq!(s.cert_status(&sn("0E"))?, CertStatus::Unknown);
    // B is not held back by A, for the same SID: no per-SID ceiling.
    s.commit(&[guess("1155000001", b, t + 30)])?;
    s.commit(&[guess("1155000001", b, t + 31)])?;
    // A SID off the roster is counted like one on it.
    assert!(over(s.commit(&[guess("1155000009", b, t + 32)])).is_none());
    assert_eq!(
        over(s.commit(&[guess("1155000009", b, t + 33)])),
        Some((GuessBound::Source, t + 130))
    );
    // Once the oldest leaves the window, A may guess again.
    s.commit(&[guess("1155000001", a, t + 100)])?;
    // A batch of two from one source with room for one (two SIDs with no
    // guess of their own yet, so only the source's bound applies): the
    // second sees the first, and the batch fails whole.
    assert_eq!(
        over(s.commit(&[
            guess("1155000009", a, t + 111),
            guess("1155000008", a, t + 112)
        ])),
        Some((GuessBound::Source, t + 120)),
        "the second of a batch counts the first"
    );
    s.commit(&[guess("1155000002", a, t + 113)])?;
    // Listed per roster SID, from every source, in the last 24 h (these
    // guesses are from 1970: none). A fresh one is.
    let now = certboard::time::now_unix();
    e.open()?
        .commit(&[guess("1155000002", "198.51.100.1", now)])?;
    let listed: Vec<(String, u64)> = s
        .roster()?
        .into_iter()
        .map(|r| (r.sid, r.recent_guesses))
        .collect();
    assert_eq!(
        listed,
        [("1155000001".to_string(), 0), ("1155000002".to_string(), 1)]
    );
    // The code is still unused and usable: guesses lock nothing.
    s.commit(&[coded_cert("0F", "1155000001", [6u8; 32])])?;
    assert_eq!(s.cert_status(&sn("0F"))?, vouched());
    Ok(())
}

/// Count-and-check is atomic: 12 connections (hosts) committing a guess
/// from one source at once, against a bound of 2 per SID: exactly 2 are
/// counted, every other is refused.
fn concurrent_guesses_never_exceed_the_bound<E: Engine + Sync>() -> TestResult {
    let e = E::fresh("guessrace")?;
    e.open()?;
    let barrier = Arc::new(Barrier::new(12));
    let e = &e;
    let outcomes: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..12)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    let mut mine = e.open().map_err(|e| StoreError::Duplicate(e.to_string()))?;
                    barrier.wait();
                    mine.commit(&[guess("1155000001", "192.0.2.9", 5_000 + i)])
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(StoreError::Duplicate("panicked".into())))
            })
            .collect()
    });
    let counted = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::TooManyGuesses { .. })))
        .count();
    assert_eq!((counted, refused), (2, 10), "{outcomes:?}");
    Ok(())
}

/// Two connections committing a certificate with the same code at once:
/// one issues, the other is told the code is used.
fn two_connections_racing_with_one_code_issue_once<E: Engine + Sync>() -> TestResult {
    let e = E::fresh("race")?;
    let mut s = e.open()?;
    s.import_roster(&students(&[("1155000001", "A")]))?;
    let key = [9u8; 32];
    s.store_codes(&[("1155000001".into(), key)], 1, false)?;
    let barrier = Arc::new(Barrier::new(2));
    let e = &e;
    let outcomes: Vec<Result<(), BoxError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ["C1", "C2"]
            .into_iter()
            .map(|serial| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    let mut mine = e.open().map_err(|e| e.to_string())?;
                    barrier.wait();
                    mine.commit(&[coded_cert(serial, "1155000001", key)])?;
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(e) if e.to_string().contains("already used"))),
        "{outcomes:?}"
    );
    assert_eq!(s.certs()?.len(), 1);
    Ok(())
}

/// The submission window is recorded and read back, each end open or not.
fn the_submission_window_is_recorded<E: Engine>() -> TestResult {
    let e = E::fresh("window")?;
    let mut s = e.open()?;
    assert_eq!(s.recorded_window()?, (None, None));
    s.record_window(Some(5), None)?;
    assert_eq!(e.open()?.recorded_window()?, (Some(5), None));
    s.record_window(None, Some(7))?;
    assert_eq!(s.recorded_window()?, (None, Some(7)));
    s.record_window(Some(1), Some(2))?;
    assert_eq!(e.open()?.recorded_window()?, (Some(1), Some(2)));
    Ok(())
}

/// An empty store counts nothing and is healthy.
fn an_empty_store_counts_nothing_and_is_healthy<E: Engine>() -> TestResult {
    let e = E::fresh("empty")?;
    let mut s = e.open()?;
    assert_eq!(s.counts()?, certboard::store::Counts::default());
    assert!(s.certs()?.is_empty());
    assert!(s.reports()?.is_empty());
    s.commit(&[])?;
    s.check()?;
    Ok(())
}

fn hw(id: &str, due: Option<i64>) -> Assignment {
    Assignment {
        id: id.into(),
        title: format!("Homework {id}"),
        opens: Some(100),
        due,
        late_until: due.map(|d| d + 50),
        closed_at: None,
    }
}

/// Assignments are created, replaced whole by an edit, listed by due time
/// (none first), and read per submission with her extension and the
/// course's zone, by every connection at once (the running server's next
/// submission sees an edit made by an admin command).
fn assignments_and_extensions_are_read_per_submission<E: Engine>() -> TestResult {
    let e = E::fresh("assignments")?;
    let mut admin = e.open()?;
    let mut server = e.open()?;
    assert!(admin.assignments()?.is_empty());
    assert_eq!(
        server.submission_view("s1", "hw1")?,
        SubmissionView::default()
    );
    admin.put_assignment(&hw("hw2", Some(2000)))?;
    admin.put_assignment(&hw("hw1", Some(1000)))?;
    admin.put_assignment(&hw("lab", None))?;
    let ids: Vec<String> = admin.assignments()?.into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["lab", "hw1", "hw2"]);
    let v = server.submission_view("s1", "hw1")?;
    assert_eq!(v.assignment, Some(hw("hw1", Some(1000))));
    assert_eq!((v.extension, v.timezone), (None, None));
    // An edit replaces every field; the other connection reads it next.
    let moved = Assignment {
        title: "Moved".into(),
        due: Some(5000),
        late_until: None,
        closed_at: Some(6000),
        ..hw("hw1", None)
    };
    admin.put_assignment(&moved)?;
    assert_eq!(server.submission_view("s1", "hw1")?.assignment, Some(moved));
    // Extensions: per student, replaced by a later one, only for an
    // assignment that exists.
    admin.extend("s1", "hw1", 7000, 10)?;
    admin.extend("s1", "hw1", 8000, 11)?;
    admin.extend("s2", "hw2", 9000, 12)?;
    assert!(matches!(
        admin.extend("s1", "nope", 1, 1),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(server.submission_view("s1", "hw1")?.extension, Some(8000));
    assert_eq!(server.submission_view("s2", "hw1")?.extension, None);
    let listed: Vec<(String, String, i64, i64)> = admin
        .extensions()?
        .into_iter()
        .map(|x| (x.sid, x.assignment, x.until, x.granted_at))
        .collect();
    assert_eq!(
        listed,
        [
            ("s1".into(), "hw1".into(), 8000, 11),
            ("s2".into(), "hw2".into(), 9000, 12)
        ]
    );
    // The course's zone, set and cleared.
    admin.set_course_setting(TIMEZONE_SETTING, Some("Asia/Hong_Kong"))?;
    assert_eq!(
        server.submission_view("s1", "hw2")?.timezone.as_deref(),
        Some("Asia/Hong_Kong")
    );
    // The zone is read with or without the assignment.
    let none = server.submission_view("s1", "nope")?;
    assert_eq!(
        (none.assignment, none.extension, none.timezone.as_deref()),
        (None, None, Some("Asia/Hong_Kong"))
    );
    admin.set_course_setting(TIMEZONE_SETTING, Some("UTC"))?;
    assert_eq!(
        e.open()?.course_setting(TIMEZONE_SETTING)?.as_deref(),
        Some("UTC")
    );
    admin.set_course_setting(TIMEZONE_SETTING, None)?;
    assert_eq!(server.course_setting(TIMEZONE_SETTING)?, None);
    Ok(())
}

/// A report keeps its assignment and how late it came.
fn reports_keep_their_assignment_and_lateness<E: Engine>() -> TestResult {
    let e = E::fresh("late")?;
    let mut s = e.open()?;
    s.commit(&[cert("0A", "s1")])?;
    let Record::Report(mut r) = report(1, "s1", "0A", 10) else {
        unreachable!()
    };
    r.assignment = "hw1".into();
    r.late_by = Some(125);
    s.commit(&[Record::Report(r.clone()), report(2, "s1", "0A", 11)])?;
    let got = e.open()?.reports()?;
    assert_eq!(got[0], r);
    assert_eq!((got[1].assignment.as_str(), got[1].late_by), ("lab", None));
    Ok(())
}

/// A removed student leaves the roster's count and may not enroll (the
/// roster stays on: nobody else may enroll openly), her records stay; an
/// import that lists her puts her back. E-mails are kept, and an import
/// without them leaves them as they were.
fn a_removed_student_leaves_the_count_and_her_records_stay<E: Engine>() -> TestResult {
    let e = E::fresh("drop")?;
    let mut s = e.open()?;
    let mut list = students(&[("s1", "One"), ("s2", "Two")]);
    list[0].email = Some("one@example.edu".into());
    s.import_roster(&list)?;
    s.commit(&[cert("0A", "s1"), report(1, "s1", "0A", 10)])?;
    s.store_codes(&[("s1".into(), [5; 32])], 20, false)?;
    assert!(s.enrollment_view("s1")?.code.is_some());
    assert!(s.drop_student("s1", 77)?);
    assert!(!s.drop_student("s1", 78)?, "already removed");
    assert!(!s.drop_student("nobody", 78)?);
    assert_eq!(s.counts()?.roster, 1);
    let view = e.open()?.enrollment_view("s1")?;
    assert!(view.roster_on && !view.on_roster, "{view:?}");
    // Exactly as a SID never on it (her code not seen), so nothing tells
    // them apart; the census counts her out too.
    assert_eq!(view, e.open()?.enrollment_view("nobody")?);
    assert_eq!(s.census(0)?.roster, 1);
    let roster = s.roster()?;
    assert_eq!(roster[0].dropped_at, Some(77));
    assert_eq!(roster[0].email.as_deref(), Some("one@example.edu"));
    assert_eq!(
        (roster[1].dropped_at, roster[1].email.as_deref()),
        (None, None)
    );
    assert_eq!(s.reports()?.len(), 1);
    assert_eq!(s.cert_status(&sn("0A"))?, good());
    // Imported again (without e-mails): back on, e-mail kept.
    let change = s.import_roster(&students(&[("s1", "One")]))?;
    assert_eq!(change.added, 1);
    assert!(e.open()?.enrollment_view("s1")?.on_roster);
    let back = &s.roster()?[0];
    assert_eq!(
        (back.dropped_at, back.email.as_deref()),
        (None, Some("one@example.edu"))
    );
    Ok(())
}

/// A new certificate revokes what it replaces as superseded, in its own
/// transaction (issue 20, gap 7): a renewal the certificate it renews (and
/// commits only if that one is still unrevoked: nothing grows from a
/// revoked certificate, nor twice from one); a code enrollment every other
/// certificate of the SID (an impostor's from open enrollment, a lost
/// laptop's). What vouches for each is recorded and read back.
fn a_new_certificate_supersedes_what_it_replaces<E: Engine>() -> TestResult {
    let e = E::fresh("supersede")?;
    let mut s = e.open()?;
    let (her, other) = ("1155000001", "1155000002");
    // Open enrollment (an impostor, say), then a renewal of it.
    s.commit(&[cert("01", her), cert("0F", other)])?;
    s.commit(&[renewed_cert("02", her, "01", false)])?;
    assert!(superseded(&mut s, "01")?);
    assert_eq!(s.cert_status(&sn("02"))?, good(), "not vouched");
    // Renewing "01" again: refused whole, the other record too.
    let err = s.commit(&[
        report(1, other, "0F", 5),
        renewed_cert("03", her, "01", false),
    ]);
    assert!(
        matches!(&err, Err(StoreError::RenewedRevoked { sid, serial })
            if sid == her && *serial == sn("01")),
        "{err:?}"
    );
    assert_eq!(s.cert_status(&sn("03"))?, CertStatus::Unknown);
    assert!(s.reports()?.is_empty());
    // Her code: every other certificate of hers is superseded, nobody else's.
    s.import_roster(&students(&[(her, "A"), (other, "B")]))?;
    let key = [7u8; 32];
    s.store_codes(&[(her.into(), key)], 10, false)?;
    s.commit(&[coded_cert("04", her, key)])?;
    assert!(superseded(&mut s, "02")?);
    assert_eq!(s.cert_status(&sn("04"))?, vouched());
    assert_eq!(s.cert_status(&sn("0F"))?, good());
    // A renewal of a vouched certificate is vouched.
    s.commit(&[renewed_cert("05", her, "04", true)])?;
    assert!(superseded(&mut s, "04")?);
    assert_eq!(s.cert_status(&sn("05"))?, vouched());
    // Revoked by the operator: it renews no more.
    s.revoke_serial(&sn("05"), RevocationReason::KeyCompromise, 20)?;
    let err = s.commit(&[renewed_cert("06", her, "05", true)]);
    assert!(
        matches!(&err, Err(StoreError::RenewedRevoked { .. })),
        "{err:?}"
    );
    // Listed as issued, from another connection.
    let rows = e.open()?.certs()?;
    let kinds: Vec<(String, Authorised, bool)> = rows
        .iter()
        .map(|c| (c.serial.to_string(), c.authorised, c.vouched))
        .collect();
    assert_eq!(
        kinds,
        [
            ("01".to_string(), Authorised::Open, false),
            ("0F".to_string(), Authorised::Open, false),
            ("02".to_string(), Authorised::Renewal, false),
            ("04".to_string(), Authorised::Code, true),
            ("05".to_string(), Authorised::Renewal, true),
        ]
    );
    let superseded_n = s
        .revocations()?
        .iter()
        .filter(|r| r.reason == Some(RevocationReason::Superseded))
        .count();
    assert_eq!(superseded_n, 3);
    Ok(())
}

/// The census counts certificates current at the time given (unrevoked,
/// notAfter later), revoked ones, students holding a current one (each
/// once), reports and the roster, as every engine counts them.
fn the_census_counts_what_is_current_at_the_time_given<E: Engine>() -> TestResult {
    let e = E::fresh("census")?;
    let mut s = e.open()?;
    assert_eq!(
        s.census(1_750_000_000)?,
        certboard::store::Census::default()
    );
    s.import_roster(&students(&[("1155000001", "A"), ("1155000002", "B")]))?;
    // Two current for one student, one revoked, one expired.
    let expired = match cert("04", "1155000003") {
        Record::Cert(mut c) => {
            c.not_after = 1_700_000_100;
            Record::Cert(c)
        }
        other => other,
    };
    s.commit(&[
        cert("01", "1155000001"),
        cert("02", "1155000001"),
        cert("03", "1155000002"),
        expired,
        report(1, "1155000001", "01", 1_700_000_050),
    ])?;
    s.revoke_serial(&sn("03"), RevocationReason::Superseded, 1_700_000_060)?;
    let at = 1_750_000_000;
    assert_eq!(
        s.census(at)?,
        certboard::store::Census {
            certs: 4,
            certs_current: 2,
            certs_revoked: 1,
            students_current: 1,
            reports: 1,
            roster: 2,
        }
    );
    // Before the fourth expired: current too. After all expired: none.
    assert_eq!(s.census(1_700_000_099)?.certs_current, 3);
    assert_eq!(s.census(1_700_000_099)?.students_current, 2);
    let late = s.census(1_800_000_000)?;
    assert_eq!((late.certs_current, late.students_current), (0, 0));
    Ok(())
}

/// Every certificate and report committed has exactly one leaf, in
/// commit order, and the stored head is the root of those leaves; a batch
/// refused (a duplicate serial) leaves the log as it was.
fn every_record_has_its_leaf_and_the_head_is_their_root<E: Engine>() -> TestResult {
    use certboard::tlog::{merkle, Leaf, NodeId};
    let e = E::fresh("log")?;
    let mut s = e.open()?;
    assert_eq!(s.log_head()?.size, 0);
    assert_eq!(s.log_head()?.root, merkle::empty_root());
    s.commit(&[cert("0A", "1155000001"), cert("0B", "1155000002")])?;
    s.commit(&[report(7, "1155000001", "0A", 100)])?;
    assert!(s.commit(&[cert("0C", "x"), cert("0A", "y")]).is_err());
    let head = s.log_head()?;
    assert_eq!(head.size, 3);
    let entries = s.log_entries(0, 3)?;
    let leaves: Vec<Leaf> = entries
        .iter()
        .map(|e| Leaf::decode(e))
        .collect::<Result<_, _>>()?;
    assert!(
        matches!(&leaves[0], Leaf::Cert { serial, sid, .. } if serial == "0A" && sid == "1155000001")
    );
    assert!(matches!(&leaves[1], Leaf::Cert { serial, .. } if serial == "0B"));
    assert!(matches!(&leaves[2], Leaf::Submission { receipt_id: 7, serial, .. } if serial == "0A"));
    let root = merkle::root(head.size, |ids: &[NodeId]| s.log_nodes(ids))?;
    assert_eq!(root, head.root);
    for index in 0..3 {
        let proof = merkle::inclusion_proof(index, 3, |ids: &[NodeId]| s.log_nodes(ids))?;
        assert!(merkle::verify_inclusion(
            &merkle::leaf_hash(&entries[index as usize]),
            index,
            3,
            &proof,
            &head.root
        ));
    }
    assert!(s.log_entries(2, 4).is_err());
    // An entry and nodes read together are what each read gives alone.
    let ids = [NodeId { level: 0, index: 0 }, NodeId { level: 1, index: 0 }];
    let (entry, nodes) = s.log_entry_and_nodes(2, &ids)?;
    assert_eq!(entry, entries[2]);
    assert_eq!(nodes, s.log_nodes(&ids)?);
    assert!(s.log_entry_and_nodes(3, &ids).is_err(), "no entry 3");
    assert!(
        s.log_entry_and_nodes(0, &[NodeId { level: 5, index: 0 }])
            .is_err(),
        "no such node"
    );
    Ok(())
}

/// An append hands each receipt's leaf (a report's, a file's) its
/// inclusion path in the tree it leaves, the path the stored hashes give
/// and one that verifies against the new root, at every size the batches
/// reach (leaves on a full subtree's edge and inside one); a certificate's
/// leaf gets none (its answer reads its entry anyway).
fn an_append_hands_each_receipt_its_inclusion_path<E: Engine>() -> TestResult {
    use certboard::tlog::{merkle, NodeId};
    let e = E::fresh("logpaths")?;
    let mut s = e.open()?;
    s.commit(&[cert("0A", "1155000001")])?;
    let mut receipt = 1u64;
    // Batches of 1, 2, 3, 1, 5 and 4 leaves after the first: sizes 1 to 17.
    for (i, n) in [1usize, 2, 3, 1, 5, 4].into_iter().enumerate() {
        let mut batch = Vec::new();
        if i == 2 {
            batch.push(cert("0B", "1155000002"));
        }
        while batch.len() < n {
            batch.push(report(receipt, "1155000001", "0A", 100 + receipt as i64));
            receipt += 1;
        }
        let a = s
            .commit_logged(&batch)?
            .ok_or("the batch appended nothing")?;
        assert_eq!(a.paths.len(), n);
        assert_eq!(a.root, s.log_head()?.root);
        let entries = s.log_entries(a.first, a.size)?;
        for (k, path) in a.paths.iter().enumerate() {
            let index = a.first + k as u64;
            let Some(path) = path else {
                assert!(i == 2 && k == 0, "only the certificate's leaf has no path");
                continue;
            };
            let read = merkle::inclusion_proof(index, a.size, |ids: &[NodeId]| s.log_nodes(ids))?;
            assert_eq!(path, &read, "entry {index} of {}", a.size);
            assert!(merkle::verify_inclusion(
                &merkle::leaf_hash(&entries[k]),
                index,
                a.size,
                path,
                &a.root
            ));
        }
    }
    assert_eq!(s.log_head()?.size, 17);
    Ok(())
}

/// Each logged record's own row names its entry (`log_index_of`), in
/// batch order across kinds, where the commit said it put them
/// (`commit_logged`); a record with no leaf, a refused batch and a key of
/// no record name none. A receipt id keeps all 64 bits in its key.
fn a_record_names_its_own_entry<E: Engine>() -> TestResult {
    use certboard::store::tlog::{cert_record_key, report_record_key, upload_record_key};
    let e = E::fresh("logindex")?;
    let mut s = e.open()?;
    let first = s.commit_logged(&[cert("0A", "1155000001")])?;
    assert_eq!(first.map(|a| (a.first, a.size)), Some((0, 1)));
    let a = s
        .commit_logged(&[
            guess("1155000001", "10.0.0.1", 1_700_000_000),
            chunk(5, 0, b"x"),
            report(7, "1155000001", "0A", 100),
            cert("0B", "1155000002"),
            upload(8, 5, 1, 1),
        ])?
        .ok_or("the batch appended nothing")?;
    assert_eq!((a.first, a.size), (1, 4));
    assert_eq!(a.root, s.log_head()?.root);
    let none = s.commit_logged(&[guess("1155000002", "10.0.0.2", 1_700_000_001)])?;
    assert_eq!(none, None, "a guess has no leaf");
    assert!(s.commit(&[cert("0C", "x"), cert("0A", "y")]).is_err());
    let big = u64::MAX - 1;
    s.commit(&[report(big, "1155000001", "0A", 101)])?;
    let entries = s.log_entries(0, 5)?;
    for (key, index) in [
        (cert_record_key("0A"), 0u64),
        (report_record_key(7), 1),
        (cert_record_key("0B"), 2),
        (upload_record_key(8), 3),
        (report_record_key(big), 4),
    ] {
        assert_eq!(s.log_index_of(&key)?, Some(index), "{key}");
        let leaf = certboard::tlog::Leaf::decode(&entries[index as usize])?;
        let named = match leaf {
            certboard::tlog::Leaf::Cert { serial, .. } => cert_record_key(&serial),
            certboard::tlog::Leaf::Submission { receipt_id, .. } if index == 3 => {
                upload_record_key(receipt_id)
            }
            certboard::tlog::Leaf::Submission { receipt_id, .. } => report_record_key(receipt_id),
        };
        assert_eq!(named, key, "entry {index}");
    }
    for key in [
        cert_record_key("0C"),
        report_record_key(8),
        upload_record_key(7),
        "nothing:1".to_string(),
        "report:x".to_string(),
    ] {
        assert_eq!(s.log_index_of(&key)?, None, "{key}");
    }
    // Another connection (another host, an admin command) reads the same.
    let mut other = e.open()?;
    assert_eq!(other.log_index_of(&upload_record_key(8))?, Some(3));
    Ok(())
}

/// Connections committing at once (hosts on one PostgreSQL) make one log:
/// indexes 0..n with no gap, each record once, one tree.
fn concurrent_commits_make_one_gapless_log<E: Engine + Sync>() -> TestResult {
    use certboard::tlog::{merkle, Leaf};
    let e = E::fresh("lograce")?;
    let workers = 4;
    let each = 6;
    let barrier = Arc::new(Barrier::new(workers));
    let e = &e;
    std::thread::scope(|scope| -> TestResult {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || -> Result<(), BoxError> {
                    let mut mine = e.open().map_err(|e| e.to_string())?;
                    barrier.wait();
                    for i in 0..each {
                        let serial = format!("{:X}", 0x100 + w * 16 + i);
                        mine.commit(&[cert(&serial, "1155000001")])
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a worker panicked")??;
        }
        Ok(())
    })?;
    let mut s = e.open()?;
    let n = (workers * each) as u64;
    let head = s.log_head()?;
    assert_eq!(head.size, n);
    let mut serials: Vec<String> = s
        .log_entries(0, n)?
        .iter()
        .map(|e| match Leaf::decode(e) {
            Ok(Leaf::Cert { serial, .. }) => serial,
            other => format!("{other:?}"),
        })
        .collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), workers * each);
    let root = merkle::root(n, |ids: &[certboard::tlog::NodeId]| s.log_nodes(ids))?;
    assert_eq!(root, head.root);
    Ok(())
}

fn chunk(upload_id: i64, seq: u64, data: &[u8]) -> Record {
    Record::Chunk(certboard::store::ChunkRecord {
        upload_id,
        seq,
        data: data.to_vec(),
    })
}

fn upload(receipt_id: u64, upload_id: i64, chunks: u64, size: u64) -> Record {
    Record::Upload(certboard::store::UploadRecord {
        receipt_id,
        upload_id,
        sid: "1155000001".into(),
        serial: sn("0A"),
        received_at: 1_700_000_000,
        assignment: "lab".into(),
        file_name: "report.pdf".into(),
        size,
        sha256: [7; 32],
        chunks,
        late_seconds: 0,
    })
}

/// Staged chunks are no file until an upload row names them, in one
/// transaction that checks they are exactly the ones it counts; an
/// abandoned upload's chunks are deleted, a recorded one's never; orphans
/// older than the cut are removed, newer ones (another host's upload in
/// progress) kept.
fn uploads_become_visible_only_when_complete<E: Engine>() -> TestResult {
    let e = E::fresh("uploads")?;
    let mut s = e.open()?;
    let big = vec![0xA5u8; certboard::store::MAX_CHUNK_ROW];
    s.commit(&[chunk(1, 0, &big), chunk(1, 1, b"tail")])?;
    s.commit(&[chunk(2, 0, b"abandoned")])?;
    assert!(s.uploads()?.is_empty());
    assert_eq!(s.staged_chunks()?, 3);
    // A record naming more chunks than are staged is refused whole.
    assert!(s.commit(&[upload(9, 1, 3, 65_540)]).is_err());
    assert!(s.uploads()?.is_empty());
    let size = big.len() as u64 + 4;
    s.commit(&[upload(9, 1, 2, size)])?;
    // The file has one leaf, a submission of its hash and size (its
    // chunks none), written with it; the refused batches wrote none.
    assert_eq!(s.log_head()?.size, 1);
    let leaf = certboard::tlog::Leaf::decode(&s.log_entries(0, 1)?[0])?;
    assert!(
        matches!(&leaf, certboard::tlog::Leaf::Submission { receipt_id: 9, sha256, size: z, assignment, .. }
            if *sha256 == [7; 32] && *z == size && assignment == "lab"),
        "{leaf:?}"
    );
    assert_eq!(
        s.log_index_of(&certboard::store::tlog::upload_record_key(9))?,
        Some(0)
    );
    // A second record for the same receipt is refused.
    assert!(s.commit(&[chunk(3, 0, b"x"), upload(9, 3, 1, 1)]).is_err());
    let listed = s.uploads()?;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].receipt_id, listed[0].size), (9, size));
    assert_eq!(listed[0].file_name, "report.pdf");
    assert_eq!(listed[0].sha256, [7; 32]);
    assert_eq!(s.upload_chunk(1, 0)?, Some(big));
    assert_eq!(s.upload_chunk(1, 1)?.as_deref(), Some(&b"tail"[..]));
    assert_eq!(s.upload_chunk(1, 2)?, None);
    // Discarding a recorded upload deletes nothing; an abandoned one goes.
    s.commit(&[Record::DiscardUpload { upload_id: 1 }])?;
    assert!(s.upload_chunk(1, 1)?.is_some());
    assert_eq!(s.staged_chunks()?, 1);
    s.commit(&[Record::DiscardUpload { upload_id: 2 }])?;
    assert_eq!(s.staged_chunks()?, 0);
    // Orphans: only those staged before the cut go.
    s.commit(&[chunk(4, 0, b"crashed")])?;
    assert_eq!(s.discard_orphan_chunks(0)?, 0);
    assert_eq!(s.staged_chunks()?, 1);
    assert_eq!(s.discard_orphan_chunks(i64::MAX)?, 1);
    assert_eq!(s.staged_chunks()?, 0);
    assert!(s.upload_chunk(1, 0)?.is_some(), "a recorded file survives");
    drop(s);
    assert_eq!(e.open()?.uploads()?.len(), 1);
    Ok(())
}

/// Staff accounts: a name is taken once; a session is found by its token
/// hash until it expires, and goes with its account; the audit log lists
/// newest first.
fn staff_accounts_sessions_and_audit<E: Engine>() -> TestResult {
    let e = E::fresh("staff_accounts")?;
    let mut s = e.open()?;
    assert!(s.staff_accounts()?.is_empty());
    s.add_staff("ta1", "$argon2id$x", 100)?;
    assert!(matches!(
        s.add_staff("ta1", "$argon2id$y", 101),
        Err(StoreError::Duplicate(_))
    ));
    s.add_staff("prof", "$argon2id$z", 90)?;
    let accounts: Vec<(String, i64)> = s
        .staff_accounts()?
        .into_iter()
        .map(|a| (a.name, a.created_at))
        .collect();
    assert_eq!(
        accounts,
        vec![("prof".to_string(), 90), ("ta1".to_string(), 100)],
        "every account, by name, the refused duplicate not among them"
    );
    assert_eq!(s.staff_password("ta1")?.as_deref(), Some("$argon2id$x"));
    assert_eq!(s.staff_password("nobody")?, None);
    let session = StaffSession {
        token_hash: "h1".into(),
        name: "ta1".into(),
        csrf: "c1".into(),
        created_at: 100,
        expires_at: 200,
    };
    s.start_staff_session(&session)?;
    assert_eq!(s.staff_session("h1", 150)?, Some(session.clone()));
    assert_eq!(s.staff_session("h1", 200)?, None, "expired");
    assert_eq!(s.staff_session("h2", 150)?, None);
    assert!(s.end_staff_session("h1")?);
    assert_eq!(s.staff_session("h1", 150)?, None);
    s.start_staff_session(&session)?;
    assert!(s.remove_staff("ta1")?);
    assert!(!s.remove_staff("ta1")?);
    let names: Vec<String> = s.staff_accounts()?.into_iter().map(|a| a.name).collect();
    assert_eq!(names, vec!["prof".to_string()]);
    assert_eq!(
        e.open()?.staff_session("h1", 150)?,
        None,
        "her sessions went with her"
    );
    for (i, action) in ["login", "revoke", "logout"].iter().enumerate() {
        s.audit(&AuditEntry {
            id: 0,
            at: 100 + i as i64,
            who: "ta1".into(),
            action: (*action).into(),
            target: "1155000001".into(),
            detail: String::new(),
        })?;
    }
    let log = e.open()?.audit_log(2)?;
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["logout", "revoke"]);
    assert!(log[0].id > log[1].id);
    Ok(())
}

/// A staff action never happens unaudited (`staff::audited`): its entry is
/// written first, so an entry the store refuses refuses the action, and an
/// action the store refuses is recorded as failed; a done one as done,
/// settled in place (`settle_audit`), one entry per action.
fn a_staff_action_is_never_unaudited<E: Engine>() -> TestResult {
    let e = E::fresh("staff_audited")?;
    let mut s = e.open()?;
    s.import_roster(&students(&[("1155000001", "A"), ("1155000002", "B")]))?;
    let entry = |sid: &str| AuditEntry {
        id: 0,
        at: 100,
        who: "ta1".into(),
        action: "drop".into(),
        target: sid.into(),
        detail: "remove from the roster".into(),
    };
    let drop = |sid: &'static str| {
        move |st: &mut dyn StaffStorage| {
            certboard::admin::remove_student(st, sid)?;
            Ok(((), String::new()))
        }
    };
    let newest = |e: &E| -> Result<AuditEntry, BoxError> {
        e.open()?
            .audit_log(1)?
            .into_iter()
            .next()
            .ok_or_else(|| "no audit entry".into())
    };

    // Done: one entry, settled.
    staff::audited(&mut s, &entry("1155000001"), drop("1155000001"))?;
    let done = newest(&e)?;
    assert_eq!(done.detail, "remove from the roster; done");
    assert_eq!(e.open()?.audit_log(10)?.len(), 1, "one entry per action");
    assert!(!s.drop_student("1155000001", 101)?, "she was dropped");

    // The entry cannot be written: the action is not done.
    e.fail_writes("staff_audit", true)?;
    let refused = staff::audited(&mut s, &entry("1155000002"), drop("1155000002"));
    assert!(refused.is_err(), "{refused:?}");
    e.fail_writes("staff_audit", false)?;
    assert_eq!(e.open()?.audit_log(10)?.len(), 1, "no entry");

    // The action cannot be written: its entry says it failed.
    e.fail_writes("roster", true)?;
    let failed = staff::audited(&mut s, &entry("1155000002"), drop("1155000002"));
    assert!(failed.is_err(), "{failed:?}");
    e.fail_writes("roster", false)?;
    let entry2 = newest(&e)?;
    assert_eq!(entry2.target, "1155000002");
    assert!(
        entry2
            .detail
            .starts_with("remove from the roster; failed: "),
        "{}",
        entry2.detail
    );
    assert!(s.drop_student("1155000002", 102)?, "she was never dropped");

    // An intent whose outcome never came stays marked so; settling names
    // an existing entry only.
    let id = s.audit(&AuditEntry {
        detail: format!("remove from the roster; {}", staff::PENDING),
        ..entry("1155000003")
    })?;
    assert!(newest(&e)?.detail.ends_with(staff::PENDING));
    assert!(s.settle_audit(id, "remove from the roster; done")?);
    assert_eq!(newest(&e)?.detail, "remove from the roster; done");
    assert_eq!(newest(&e)?.id, id);
    assert!(!s.settle_audit(id + 1000, "x")?);
    Ok(())
}

/// Login attempts are bounded per (account, source) and per source, never
/// per account alone: another address still gets in.
fn login_attempts_are_bounded_per_source_never_per_account<E: Engine>() -> TestResult {
    let e = E::fresh("staff_attempts")?;
    let mut s = e.open()?;
    let limits = LoginLimits {
        window: 600,
        per_source: 4,
        per_account_source: 2,
    };
    let at = |name: &str, source: &str, t: i64| LoginAttempt {
        name: name.into(),
        source: source.into(),
        at: t,
        limits,
    };
    assert_eq!(
        s.count_login_attempt(&at("ta1", "10.0.0.1", 1000))?,
        LoginVerdict::Counted
    );
    assert_eq!(
        s.count_login_attempt(&at("ta1", "10.0.0.1", 1001))?,
        LoginVerdict::Counted
    );
    assert_eq!(
        s.count_login_attempt(&at("ta1", "10.0.0.1", 1002))?,
        LoginVerdict::Throttled { retry_at: 1600 }
    );
    // Her own address is not held back by another's attempts.
    assert_eq!(
        s.count_login_attempt(&at("ta1", "10.0.0.2", 1002))?,
        LoginVerdict::Counted
    );
    assert_eq!(
        s.count_login_attempt(&at("ta2", "10.0.0.1", 1003))?,
        LoginVerdict::Counted
    );
    assert_eq!(
        s.count_login_attempt(&at("ta3", "10.0.0.1", 1004))?,
        LoginVerdict::Counted
    );
    assert!(matches!(
        s.count_login_attempt(&at("ta4", "10.0.0.1", 1005))?,
        LoginVerdict::Throttled { .. }
    ));
    // A success forgets that pair's attempts; the window frees the rest.
    s.forget_login_attempts("ta1", "10.0.0.2")?;
    assert_eq!(
        s.count_login_attempt(&at("ta1", "10.0.0.1", 1601))?,
        LoginVerdict::Counted
    );
    Ok(())
}

/// A receipt id names one submission: a report and a file never share
/// one, whichever came first or in one batch (the refused batch records
/// nothing); `submissions_of` reads one student's of each kind.
fn a_receipt_id_names_one_submission<E: Engine>() -> TestResult {
    let e = E::fresh("receipt_ids")?;
    let mut s = e.open()?;
    s.commit(&[report(11, "1155000001", "0A", 1_700_000_000)])?;
    s.commit(&[chunk(1, 0, b"x")])?;
    let refused = s.commit(&[upload(11, 1, 1, 1)]);
    assert!(
        matches!(refused, Err(StoreError::Duplicate(_))),
        "{refused:?}"
    );
    assert!(s.uploads()?.is_empty());
    s.commit(&[upload(12, 1, 1, 1)])?;
    let refused = s.commit(&[report(12, "1155000001", "0A", 1_700_000_001)]);
    assert!(
        matches!(refused, Err(StoreError::Duplicate(_))),
        "{refused:?}"
    );
    s.commit(&[chunk(2, 0, b"y")])?;
    let refused = s.commit(&[
        report(13, "1155000001", "0A", 1_700_000_002),
        upload(13, 2, 1, 1),
    ]);
    assert!(
        matches!(refused, Err(StoreError::Duplicate(_))),
        "{refused:?}"
    );
    assert_eq!(s.reports()?.len(), 1);
    assert_eq!(s.uploads()?.len(), 1);
    assert_eq!(s.log_head()?.size, 2, "no leaf for a refused batch");
    s.commit(&[report(14, "1155000002", "0B", 1_700_000_003)])?;
    let (reports, uploads) = s.submissions_of("1155000001")?;
    let ids: Vec<u64> = reports.iter().map(|r| r.receipt_id).collect();
    assert_eq!(ids, vec![11]);
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].receipt_id, 12);
    let (reports, uploads) = s.submissions_of("1155000002")?;
    assert_eq!((reports.len(), uploads.len()), (1, 0));
    Ok(())
}

/// One `#[test]` per rule per engine.
macro_rules! contract {
    ($($rule:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $rule() -> super::TestResult { super::$rule::<super::Sqlite>() } )*
        }
        mod postgres {
            $( #[test] fn $rule() -> super::TestResult { super::$rule::<super::Postgres>() } )*
        }
    };
}

contract!(
    records_survive_reopen,
    reports_are_listed_oldest_first,
    a_batch_is_all_or_nothing_and_serials_are_never_reused,
    revocation_by_serial_and_sid,
    crl_numbers_increase,
    the_roster_is_imported_and_listed,
    an_email_change_is_counted_and_kept,
    the_enrollment_view_follows_the_roster,
    a_code_is_spent_with_its_certificate_or_not_at_all,
    guesses_are_bounded_per_source_never_per_sid,
    concurrent_guesses_never_exceed_the_bound,
    two_connections_racing_with_one_code_issue_once,
    the_submission_window_is_recorded,
    an_empty_store_counts_nothing_and_is_healthy,
    assignments_and_extensions_are_read_per_submission,
    reports_keep_their_assignment_and_lateness,
    a_removed_student_leaves_the_count_and_her_records_stay,
    a_new_certificate_supersedes_what_it_replaces,
    the_census_counts_what_is_current_at_the_time_given,
    every_record_has_its_leaf_and_the_head_is_their_root,
    concurrent_commits_make_one_gapless_log,
    a_record_names_its_own_entry,
    an_append_hands_each_receipt_its_inclusion_path,
    uploads_become_visible_only_when_complete,
    staff_accounts_sessions_and_audit,
    login_attempts_are_bounded_per_source_never_per_account,
    a_staff_action_is_never_unaudited,
    a_receipt_id_names_one_submission,
);
