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

use certboard::store::{
    CertRecord, CertStatus, CodeKey, Origin, PostgresStore, Record, ReportRecord, RevocationMark,
    RosterChange, SqliteStore, Storage, StoreError, Student,
};
use certboard::store::{RevocationReason, Serial};
use pg::{BoxError, Cluster};

type TestResult = Result<(), BoxError>;

/// A place a store lives, and how to open another connection to it (a
/// second host, an admin command beside the server).
trait Engine: Sized {
    type Store: Storage + Send;
    /// An empty location of its own.
    fn fresh(name: &str) -> Result<Self, BoxError>;
    /// A new connection to it.
    fn open(&self) -> Result<Self::Store, BoxError>;
    /// The `subject` column of the certificate with this serial, read
    /// behind the store's back.
    fn subject(&self, serial: &str) -> Result<String, BoxError>;
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
        consumes_code: None,
        renewal: false,
    })
}

fn coded_cert(serial: &str, sid: &str, key: CodeKey) -> Record {
    match cert(serial, sid) {
        Record::Cert(mut c) => {
            c.consumes_code = Some(key);
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
    })
}

fn wrong(sid: &str, code_key: CodeKey) -> Record {
    Record::WrongCode {
        sid: sid.into(),
        code_key,
    }
}

fn good() -> CertStatus {
    CertStatus::Good {
        origin: Origin::Certboard,
    }
}

fn students(list: &[(&str, &str)]) -> Vec<Student> {
    list.iter()
        .map(|(sid, name)| Student {
            sid: sid.to_string(),
            name: name.to_string(),
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
        (code.code_key, code.issued_at, code.used_at, code.wrong),
        ([7; 32], 40, None, 0)
    );
    assert!(!code.locked());
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
/// wrong codes count toward the lock; storing codes keeps an unused one
/// unless it is reissued.
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
            .map(|c| (c.code_key, c.issued_at, c.used_at, c.wrong)),
        Some((key, 10, None, 0))
    );
    // Wrong codes count, toward the lock.
    for _ in 0..2 {
        s.commit(&[wrong("1155000001", key)])?;
    }
    assert_eq!(
        s.enrollment_view("1155000001")?.code.map(|c| c.wrong),
        Some(2)
    );
    // A wrong code against another key (an old code) counts nothing.
    s.commit(&[wrong("1155000001", [8; 32])])?;
    assert_eq!(
        s.enrollment_view("1155000001")?.code.map(|c| c.wrong),
        Some(2)
    );
    // A key that is not the current code's spends nothing, keeps nothing.
    let err = s.commit(&[coded_cert("0B", "1155000001", [2u8; 32])]);
    assert!(
        matches!(&err, Err(StoreError::CodeUsed { sid }) if sid == "1155000001"),
        "{err:?}"
    );
    assert_eq!(s.cert_status(&sn("0B"))?, CertStatus::Unknown);
    s.commit(&[coded_cert("0A", "1155000001", key)])?;
    assert_eq!(s.cert_status(&sn("0A"))?, good());
    let c = e.open()?.enrollment_view("1155000001")?.code;
    assert_eq!(
        c.as_ref().map(|c| (c.used_at.is_some(), c.wrong)),
        Some((true, 0)),
        "spent, and the count cleared"
    );
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
    // Wrong codes against a spent code count nothing.
    s.commit(&[wrong("1155000001", key)])?;
    assert_eq!(
        s.enrollment_view("1155000001")?.code.map(|c| c.wrong),
        Some(0)
    );
    // A used code is replaced by a plain store; an unused one only by a
    // reissue, which also clears the count.
    assert_eq!(
        s.store_codes(&[("1155000001".into(), [3; 32])], 11, false)?
            .len(),
        1
    );
    s.commit(&[wrong("1155000001", [3; 32])])?;
    assert!(s
        .store_codes(&[("1155000001".into(), [4; 32])], 12, false)?
        .is_empty());
    assert_eq!(
        s.enrollment_view("1155000001")?.code.map(|c| c.wrong),
        Some(1)
    );
    assert_eq!(
        s.store_codes(&[("1155000001".into(), [4; 32])], 12, true)?
            .len(),
        1
    );
    let c = s.enrollment_view("1155000001")?.code;
    assert_eq!(
        c.map(|c| (c.code_key, c.issued_at, c.wrong, c.used_at)),
        Some(([4; 32], 12, 0, None))
    );
    Ok(())
}

/// Five wrong codes in a row lock the SID; a reissue unlocks it.
fn wrong_codes_lock_until_reissued<E: Engine>() -> TestResult {
    let e = E::fresh("lock")?;
    let mut s = e.open()?;
    s.import_roster(&students(&[("1155000001", "A")]))?;
    let key = [6u8; 32];
    s.store_codes(&[("1155000001".into(), key)], 1, false)?;
    let batch: Vec<Record> = (0..certboard::store::LOCK_AFTER)
        .map(|_| wrong("1155000001", key))
        .collect();
    s.commit(&batch)?;
    let code = s.enrollment_view("1155000001")?.code.ok_or("no code")?;
    assert!(code.locked(), "{code:?}");
    s.store_codes(&[("1155000001".into(), [7; 32])], 2, true)?;
    let code = s.enrollment_view("1155000001")?.code.ok_or("no code")?;
    assert!(!code.locked(), "{code:?}");
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
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ["C1", "C2"]
            .into_iter()
            .map(|serial| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    let mut mine = e.open().map_err(|e| e.to_string())?;
                    barrier.wait();
                    mine.commit(&[coded_cert(serial, "1155000001", key)])
                        .map_err(|e| e.to_string())
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
            .any(|o| matches!(o, Err(e) if e.contains("already used"))),
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
    the_enrollment_view_follows_the_roster,
    a_code_is_spent_with_its_certificate_or_not_at_all,
    wrong_codes_lock_until_reissued,
    two_connections_racing_with_one_code_issue_once,
    the_submission_window_is_recorded,
    an_empty_store_counts_nothing_and_is_healthy,
    uploads_become_visible_only_when_complete,
);
