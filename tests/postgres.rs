//! The PostgreSQL engine against a real server (issue 13): what only several
//! hosts and a database on the network bring (the behaviour both engines
//! share is the contract in `tests/store_contract.rs`): CRL numbers across hosts, two hosts
//! migrating at once, bad URLs and logins, TLS, and the server stopped under
//! a commit and started again.
//!
//! Each test binary starts its own throwaway cluster
//! (`scripts/pg-test-cluster.sh`, which installs PostgreSQL when missing);
//! each test uses a fresh database in it.

mod pg;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use certboard::store::{
    Authorisation, CertRecord, CertStatus, Origin, PgError, PostgresStore, Record, ReportRecord,
    Serial, Storage, StoreError, Unavailable, UrlProblem,
};
use pg::{BoxError, Cluster};

type TestResult = Result<(), BoxError>;

/// A serial as the records carry it.
fn sn(hex: &str) -> Serial {
    Serial::parse_hex(hex).expect("a test serial is hex")
}

fn cert(serial: &str, sid: &str) -> Record {
    Record::Cert(CertRecord {
        sid: sid.into(),
        serial: sn(serial),
        not_before: 1_700_000_000,
        not_after: 1_800_000_000,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x07],
        origin: Origin::Certboard,
        authorised: Authorisation::Open,
    })
}

fn report(receipt_id: u64, sid: &str, serial: &str) -> Record {
    Record::Report(ReportRecord {
        receipt_id,
        sid: sid.into(),
        serial: sn(serial),
        received_at: 1_750_000_000,
        text: "line one\nline two ✓\n".into(),
        origin: Origin::Legacy,
        assignment: "lab".into(),
        late_by: None,
    })
}

fn good() -> CertStatus {
    CertStatus::Good {
        origin: Origin::Certboard,
        vouched: false,
    }
}

/// The columns hold what the SQLite engine's hold (so `migrate` moves
/// values unchanged): Unix seconds and receipt ids as signed integers. The
/// records themselves are the contract's (`tests/store_contract.rs`).
#[test]
fn values_are_stored_as_the_sqlite_engine_stores_them() -> TestResult {
    let url = Cluster::shared()?.fresh_db("reopen")?;
    {
        let mut s = PostgresStore::open(&url)?;
        s.commit(&[
            cert("AA", "1155000001"),
            report(u64::MAX, "1155000001", "AA"),
        ])?;
    }
    let mut c = Cluster::shared()?.client(url_db(&url))?;
    let row = c.query_one(
        "SELECT issued_at, subject FROM certs WHERE serial = 'AA'",
        &[],
    )?;
    let issued_at: i64 = row.get(0);
    assert!(
        (issued_at - certboard::time::now_unix()).abs() < 3600,
        "{issued_at}"
    );
    assert_eq!(row.get::<_, String>(1), "CN=1155000001");
    let id: i64 = c
        .query_one(
            "SELECT receipt_id FROM reports WHERE sid = '1155000001'",
            &[],
        )?
        .get(0);
    assert_eq!(id, -1);
    Ok(())
}

/// The database name at the end of a test URL.
fn url_db(url: &str) -> &str {
    let path = url.rsplit('/').next().unwrap_or("");
    path.split('?').next().unwrap_or(path)
}

#[test]
fn crl_numbers_strictly_increase_across_two_hosts() -> TestResult {
    let url = Cluster::shared()?.fresh_db("crl")?;
    let mut a = PostgresStore::open(&url)?;
    let mut b = PostgresStore::open(&url)?;
    let mut last = 0;
    for i in 0..20 {
        let n = if i % 2 == 0 {
            a.next_crl_number()?
        } else {
            b.next_crl_number()?
        };
        assert!(n > last, "{n} after {last}");
        last = n;
    }
    assert_eq!(last, 20, "no gaps when nothing failed");
    drop(a);
    assert_eq!(PostgresStore::open(&url)?.next_crl_number()?, 21);

    // Two hosts at once: never the same number twice.
    let seen: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || -> Result<Vec<u64>, StoreError> {
                    let mut s = PostgresStore::open(&url)?;
                    (0..50).map(|_| s.next_crl_number()).collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "thread panicked")?
                    .map_err(BoxError::from)
            })
            .collect::<Result<_, BoxError>>()
    })?;
    let mut all = HashSet::new();
    for numbers in &seen {
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        for n in numbers {
            assert!(all.insert(*n), "{n} handed out twice");
        }
    }
    assert_eq!(all.len(), 100);
    Ok(())
}

#[test]
fn hosts_opening_an_empty_database_together_migrate_once() -> TestResult {
    let cluster = Cluster::shared()?;
    for round in 0..3 {
        let url = cluster.fresh_db("race")?;
        const HOSTS: usize = 4;
        let barrier = Arc::new(Barrier::new(HOSTS));
        let results: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..HOSTS)
                .map(|i| {
                    let (url, barrier) = (url.clone(), Arc::clone(&barrier));
                    scope.spawn(move || -> Result<(), StoreError> {
                        barrier.wait();
                        let mut s = PostgresStore::open(&url)?;
                        s.commit(&[cert(&format!("{round}{i}"), "x")])
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| panic!("a host's thread panicked"))
                })
                .collect()
        });
        for r in &results {
            assert!(r.is_ok(), "round {round}: {results:?}");
        }
        let mut c = cluster.client(url_db(&url))?;
        let rows = c.query("SELECT application, version FROM certboard_schema", &[])?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>(0), "certboard");
        assert_eq!(
            rows[0].get::<_, i32>(1),
            certboard::store::PG_SCHEMA_VERSION
        );
        let n: i64 = c.query_one("SELECT count(*) FROM certs", &[])?.get(0);
        assert_eq!(n, HOSTS as i64);
    }
    Ok(())
}

#[test]
fn foreign_newer_and_missing_schemas_are_refused_untouched() -> TestResult {
    let cluster = Cluster::shared()?;

    // Someone else's database.
    let url = cluster.fresh_db("foreign")?;
    let mut c = cluster.client(url_db(&url))?;
    c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1);")?;
    let err = PostgresStore::open(&url).err();
    assert!(
        matches!(&err, Some(StoreError::Incompatible(m)) if m.contains("not a certboard database")),
        "{err:?}"
    );
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[])?.get(0);
    assert_eq!(n, 1, "their data untouched");
    let ours: bool = c
        .query_one("SELECT to_regclass('certs') IS NOT NULL OR to_regclass('certboard_schema') IS NOT NULL", &[])?
        .get(0);
    assert!(!ours, "nothing of ours created");

    // A version table naming another application.
    let url = cluster.fresh_db("otherapp")?;
    let mut c = cluster.client(url_db(&url))?;
    c.batch_execute(
        "CREATE TABLE certboard_schema (one boolean PRIMARY KEY, application text, version int);
         INSERT INTO certboard_schema VALUES (true, 'elsewhere', 1);",
    )?;
    let err = PostgresStore::open(&url).err();
    assert!(
        matches!(&err, Some(StoreError::Incompatible(m)) if m.contains("elsewhere")),
        "{err:?}"
    );

    // A newer certboard's schema.
    let url = cluster.fresh_db("newer")?;
    PostgresStore::open(&url)?.commit(&[cert("01", "a")])?;
    let mut c = cluster.client(url_db(&url))?;
    c.batch_execute("UPDATE certboard_schema SET version = 99")?;
    let err = PostgresStore::open(&url).err();
    assert!(
        matches!(&err, Some(StoreError::Incompatible(m)) if m.contains("version 99")),
        "{err:?}"
    );
    let v: i32 = c
        .query_one("SELECT version FROM certboard_schema", &[])?
        .get(0);
    assert_eq!(v, 99, "left as it was");

    // An empty database for an admin command: refused, nothing created.
    let url = cluster.fresh_db("empty")?;
    let err = PostgresStore::open_existing(&url).err();
    assert!(
        matches!(&err, Some(StoreError::Incompatible(m)) if m.contains("no certboard store")),
        "{err:?}"
    );
    let mut c = cluster.client(url_db(&url))?;
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )?
        .get(0);
    assert_eq!(tables, 0);
    Ok(())
}

#[test]
fn bad_urls_logins_and_addresses_give_clear_errors() -> TestResult {
    let cluster = Cluster::shared()?;
    let url = cluster.fresh_db("login")?;
    let db = url_db(&url);

    let err = PostgresStore::open("mysql://u@127.0.0.1/db").err();
    assert!(
        matches!(
            &err,
            Some(StoreError::Postgres(PgError::BadUrl(
                UrlProblem::NotPostgres
            )))
        ),
        "{err:?}"
    );
    let err = PostgresStore::open("postgres://u@127.0.0.1:99999/db").err();
    let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        matches!(&err, Some(StoreError::Postgres(PgError::BadUrl(_)))) && text.contains("port"),
        "{text}"
    );

    let wrong = cluster.url_with("certboard", "not-the-password", db, "sslmode=disable");
    let err = PostgresStore::open(&wrong).err();
    let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        matches!(
            &err,
            Some(StoreError::Postgres(PgError::LoginRefused { .. }))
        ),
        "{err:?}"
    );
    assert!(
        text.contains("login refused") && text.contains("password authentication failed"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password"),
        "no password in messages: {text}"
    );
    let err = PostgresStore::open(&cluster.url_with("nobody", "x", db, "")).err();
    assert!(
        matches!(
            &err,
            Some(StoreError::Postgres(PgError::LoginRefused { .. }))
        ),
        "{err:?}"
    );

    let err =
        PostgresStore::open(&cluster.url_with("certboard", &cluster.password, "no_such_db", ""))
            .err();
    assert!(
        matches!(&err, Some(StoreError::Postgres(PgError::NoDatabase { .. }))),
        "{err:?}"
    );

    // Nothing listens there: unavailable, not a configuration error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let err = PostgresStore::open(&format!("postgres://certboard:x@127.0.0.1:{closed}/db")).err();
    let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        matches!(
            &err,
            Some(StoreError::Unavailable(Unavailable {
                outcome_unknown: false,
                ..
            }))
        ),
        "{err:?}"
    );
    assert!(
        text.starts_with("store unavailable: nothing was acknowledged"),
        "{text}"
    );
    assert!(text.contains("refused"), "the reason is given: {text}");
    Ok(())
}

#[test]
fn tls_is_used_and_checked_as_sslmode_says() -> TestResult {
    let cluster = Cluster::shared()?;
    let url = cluster.fresh_db("tls")?;
    let db = url_db(&url);
    let root = cluster.server_cert();
    let root = root.to_str().ok_or("path")?;
    let pw = &cluster.password;

    // Whether the store's session (named by application_name in the URL)
    // is encrypted, as the server sees it.
    let mut watcher = cluster.client(db)?;
    let mut encrypted = |name: &str| -> Result<Vec<bool>, BoxError> {
        Ok(watcher
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = $1",
                &[&name],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    };
    for (i, (query, tls)) in [
        ("sslmode=disable".to_string(), false),
        ("sslmode=require".to_string(), true),
        (format!("sslmode=verify-ca&sslrootcert={root}"), true),
        (format!("sslmode=verify-full&sslrootcert={root}"), true),
        // libpq's default, prefer: TLS when the server offers it.
        (String::new(), true),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("tls_{i}");
        let q = format!("application_name={name}&{query}");
        let mut s = PostgresStore::open(&cluster.url_with("certboard", pw, db, &q))
            .map_err(|e| format!("{query}: {e}"))?;
        s.next_crl_number()?;
        assert_eq!(encrypted(&name)?, vec![tls], "{query}");
    }
    // verify-full checks the name: localhost is in the certificate too.
    let by_name = format!(
        "postgres://certboard:{pw}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={root}",
        cluster.port
    );
    PostgresStore::open(&by_name)?;

    // A root that did not sign the server's certificate.
    let other = tempfile::tempdir()?;
    let other_root = other.path().join("other.pem");
    let key = openssl::ec::EcKey::generate(
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?.as_ref(),
    )?;
    let key = openssl::pkey::PKey::from_ec_key(key)?;
    let mut name = openssl::x509::X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "localhost")?;
    let name = name.build();
    let mut b = openssl::x509::X509::builder()?;
    b.set_version(2)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(openssl::asn1::Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(openssl::asn1::Asn1Time::days_from_now(1)?.as_ref())?;
    b.sign(&key, openssl::hash::MessageDigest::sha256())?;
    std::fs::write(&other_root, b.build().to_pem()?)?;
    let q = format!("sslmode=verify-ca&sslrootcert={}", other_root.display());
    let err = PostgresStore::open(&cluster.url_with("certboard", pw, db, &q)).err();
    let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        matches!(&err, Some(StoreError::Postgres(PgError::Tls { .. }))),
        "{err:?}"
    );
    assert!(text.contains("certificate verify failed"), "{text}");
    Ok(())
}

/// Waits until some session of `db` waits on a lock (bounded).
fn wait_for_lock_waiter(client: &mut postgres::Client, db: &str) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..400 {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db],
            )?
            .get(0);
        if n > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the commit never waited on the lock".into())
}

/// Calls `f` until it succeeds, for at most 200 tries and 60 s.
fn until_ok<T>(mut f: impl FnMut() -> Result<T, StoreError>) -> Result<(T, usize), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failures = 0;
    loop {
        match f() {
            Ok(v) => return Ok((v, failures)),
            Err(StoreError::Unavailable(_)) if failures < 200 && Instant::now() < deadline => {
                failures += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("after {failures} failures: {e}").into()),
        }
    }
}

#[test]
fn the_server_stopped_under_a_commit_then_started_again() -> TestResult {
    // Its own cluster: stopping the shared one would fail other tests.
    let cluster = Cluster::start()?;
    let url = cluster.fresh_db("restart")?;
    let db = url_db(&url).to_string();
    let mut store = PostgresStore::open(&url)?;
    store.commit(&[cert("01", "a")])?;

    // Another session holds a lock the insert needs, so the commit is
    // surely in flight (waiting inside its transaction) when the server stops.
    let mut blocker = cluster.client(&db)?;
    let mut watcher = cluster.client(&db)?;
    blocker.batch_execute("BEGIN; LOCK TABLE certs IN SHARE ROW EXCLUSIVE MODE;")?;
    let outcome = std::thread::scope(|scope| -> Result<_, BoxError> {
        let commit = scope.spawn(|| store.commit(&[cert("02", "b"), report(9, "b", "02")]));
        wait_for_lock_waiter(&mut watcher, &db)?;
        cluster.halt()?;
        commit
            .join()
            .map_err(|_| BoxError::from("commit thread panicked"))
    })?;
    match &outcome {
        Err(StoreError::Unavailable(u)) => {
            assert!(!u.outcome_unknown, "it failed before COMMIT: {u}");
            assert!(
                u.to_string()
                    .starts_with("store unavailable: nothing was acknowledged"),
                "{u}"
            );
        }
        other => return Err(format!("expected unavailable, got {other:?}").into()),
    }

    // While the server is down: refused at once, never a hang, never Ok.
    for _ in 0..3 {
        let err = store.cert_status(&sn("01")).err();
        assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
        let err = store.commit(&[cert("03", "c")]).err();
        assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
    }

    // Started again: the same store serves without being recreated.
    cluster.resume()?;
    until_ok(|| store.commit(&[cert("04", "d")]))?;
    assert_eq!(store.cert_status(&sn("04"))?, good());
    assert_eq!(
        store.cert_status(&sn("01"))?,
        good(),
        "committed before: kept"
    );
    assert_eq!(
        store.cert_status(&sn("02"))?,
        CertStatus::Unknown,
        "the interrupted batch left nothing"
    );
    assert_eq!(store.cert_status(&sn("03"))?, CertStatus::Unknown);
    assert!(store.reports()?.is_empty());

    // A restart while the store is idle: its old connection is dead, and
    // the next call quietly uses a new one (nothing was sent on the old
    // one that could have been kept).
    cluster.halt()?;
    cluster.resume()?;
    assert_eq!(store.cert_status(&sn("04"))?, good());
    store.commit(&[cert("05", "e")])?;
    assert_eq!(store.next_crl_number()?, 1);
    assert_eq!(store.certs()?.len(), 3);
    Ok(())
}
