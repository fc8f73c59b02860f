//! Several certboard hosts on one PostgreSQL database (issue 13), end to
//! end with the real binaries: two server processes (ports 0) on a
//! throwaway cluster, students enrolling on one and submitting on the
//! other, revocation and CRL numbers across hosts, concurrent load, a host
//! killed and the database stopped under load, `migrate` from SQLite, and
//! the refusals at start. Every loop is bounded in count and time.

mod common;
mod pg;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certboard::admin::normalise_serial;
use certboard::client::{self, ClientError, KeyType};
use certboard::message::ErrorCode;
use common::{enroll_key, stdout, submit_report, text, TestResult, TestServer, PASSPHRASE};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use pg::Cluster;

const SERVER: &str = env!("CARGO_BIN_EXE_server");

/// The cluster helpers' errors (Send + Sync) as the tests' own.
trait Pg<T> {
    fn pg(self) -> Result<T, Box<dyn std::error::Error>>;
}

impl<T> Pg<T> for Result<T, pg::BoxError> {
    fn pg(self) -> Result<T, Box<dyn std::error::Error>> {
        self.map_err(|e| e as Box<dyn std::error::Error>)
    }
}

/// A certboard host on the database at `url`. The first host of a test
/// makes the CA root; the others get a copy of its `keys/` (README "More
/// than one host": the same root and key on every host).
fn host(
    url: &str,
    keys_from: Option<&TestServer>,
) -> Result<TestServer, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    if let Some(first) = keys_from {
        copy_keys(first.path(), dir.path())?;
    }
    let server = TestServer::start_in(dir, &["--database", url])?;
    // With --database, nothing goes to the data dir.
    assert!(!server.path().join("data").exists(), "a data dir was made");
    Ok(server)
}

fn copy_keys(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let keys = to.join("keys");
    std::fs::create_dir(&keys)?;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))?;
    // The log key too: one database has one log, signed by one key
    // (a host without it is refused, PROTOCOL.md §11.2).
    for f in ["ca-key.pem", "ca-cert.pem", "log-key.pem"] {
        std::fs::copy(from.join("keys").join(f), keys.join(f))?;
    }
    for f in ["ca-key.pem", "log-key.pem"] {
        std::fs::set_permissions(keys.join(f), std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    client::make_key(KeyType::Rsa2048)
}

/// The store's form of a certificate's serial.
fn serial_of(der: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let hex = X509::from_der(der)?
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string();
    Ok(normalise_serial(&hex)?)
}

/// Issue 21: a CA host and a Blackboard-only host on one PostgreSQL keep
/// one log. The Blackboard host is refused without the log key (and with
/// another one); with the copy `server blackboard-cert` writes, students
/// enrolled on the CA host submit on the Blackboard host, every record has
/// exactly one entry, the indexes are 0..N-1 without a gap, every receipt
/// carries a proof that verifies against a checkpoint of the one key, and
/// `server log verify` passes, then names a row edited or deleted directly
/// in PostgreSQL.
#[test]
fn a_ca_host_and_a_blackboard_host_keep_one_log() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::shared().pg()?;
    let url = cluster.fresh_db("one_log").pg()?;
    let a = host(&url, None)?;
    let bdir = tempfile::tempdir()?;
    let bkeys = bdir.path().join("keys");
    std::fs::create_dir(&bkeys)?;
    std::fs::set_permissions(&bkeys, std::fs::Permissions::from_mode(0o700))?;
    std::fs::copy(a.root_pem(), bkeys.join("ca-cert.pem"))?;
    let made = a.admin(&["blackboard-cert", "--out", &bkeys.to_string_lossy()])?;
    assert!(made.status.success(), "{}", text(&made));
    assert!(
        stdout(&made).contains("blackboard-log-key.pem"),
        "{}",
        text(&made)
    );
    let log_key = bkeys.join("blackboard-log-key.pem");
    let kept = std::fs::read(&log_key)?;
    // Without the log key: refused, saying what to do.
    std::fs::remove_file(&log_key)?;
    let bb_args = ["--database", url.as_str(), "--role", "blackboard"];
    let refused = run_server(bdir.path(), &bb_args)?;
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(said.contains("no transparency log key"), "{said}");
    assert!(said.contains("server blackboard-cert --out DIR"), "{said}");
    // With another log's key: refused too.
    let other = tempfile::tempdir()?;
    let other_keys = other.path().join("keys");
    std::fs::create_dir(&other_keys)?;
    std::fs::set_permissions(&other_keys, std::fs::Permissions::from_mode(0o700))?;
    certboard::tlog::key::open_log_key(&other_keys, b"another passphrase", "x/log")?;
    certboard::tlog::key::export_host_key(&other_keys, b"another passphrase", &bkeys)?;
    let refused = run_server(bdir.path(), &bb_args)?;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("is not the one the database's log is signed with"),
        "{}",
        text(&refused)
    );
    std::fs::write(&log_key, &kept)?;
    std::fs::set_permissions(&log_key, std::fs::Permissions::from_mode(0o600))?;
    let b = TestServer::start_in(bdir, &bb_args)?;

    let k = key()?;
    let trust = b.trust()?;
    let vkey = {
        let out = a.admin(&["log", "key", "--database", &url])?;
        assert!(out.status.success(), "{}", text(&out));
        stdout(&out).trim().to_string()
    };
    let verifier = certboard::tlog::NoteVerifier::from_key(&vkey)?;
    let mut receipts = Vec::new();
    for i in 0..4 {
        let sid = format!("115500001{i}");
        let cert = enroll_key(a.ca, &sid, &k)?;
        for _ in 0..2 {
            receipts.push(submit_report(b.blackboard, &trust, &sid, &cert, &k)?);
        }
    }
    // Every receipt carries a proof (checked by the client already) whose
    // checkpoint is signed by the one log key.
    for r in &receipts {
        let note = r
            .log_checkpoint
            .as_deref()
            .ok_or("a receipt without a log proof")?;
        certboard::tlog::Checkpoint::open(note, &verifier, verifier.name())?;
        assert!(r.content.log_index.is_some());
    }
    let db = url
        .rsplit_once('/')
        .and_then(|(_, d)| d.split('?').next())
        .ok_or("no database in url")?
        .to_string();
    let mut c = cluster.client(&db).pg()?;
    let idx: Vec<i64> = c
        .query("SELECT idx FROM tlog_entries ORDER BY idx", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        idx,
        (0..12).collect::<Vec<i64>>(),
        "4 certificates, 8 reports"
    );
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT record) FROM tlog_entries", &[])?
        .get(0);
    assert_eq!(distinct, 12, "each record once");
    let head: i64 = c.query_one("SELECT size FROM tlog_head", &[])?.get(0);
    assert_eq!(head, 12);
    let verify = a.admin(&["log", "verify", "--database", &url])?;
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        stdout(&verify).contains("log verified: 12 entries"),
        "{}",
        text(&verify)
    );

    // A report edited behind certboard's back is named.
    c.execute(
        "UPDATE reports SET text = 'rewritten' WHERE receipt_id = $1",
        &[&i64::try_from(receipts[3].receipt_id)?],
    )?;
    let verify = a.admin(&["log", "verify", "--database", &url])?;
    assert!(!verify.status.success(), "{}", text(&verify));
    assert!(
        text(&verify).contains("log verification FAILED"),
        "{}",
        text(&verify)
    );

    // So is a certificate deleted behind its back: the log's first entry.
    let first: String = c
        .query_one("SELECT record FROM tlog_entries WHERE idx = 0", &[])?
        .get(0);
    let serial = first
        .strip_prefix("cert:")
        .ok_or("entry 0 is a certificate")?;
    let deleted = c.execute("DELETE FROM certs WHERE serial = $1", &[&serial])?;
    assert_eq!(deleted, 1, "{first}");
    let verify = a.admin(&["log", "verify", "--database", &url])?;
    assert!(!verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("log entry 0 "), "{}", text(&verify));
    Ok(())
}

/// Every serial in the database, and whether they are unique.
fn db_serials(cluster: &Cluster, url: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let db = url
        .rsplit_once('/')
        .and_then(|(_, d)| d.split('?').next())
        .ok_or("no database in url")?;
    let mut c = cluster.client(db).pg()?;
    let rows = c.query("SELECT serial FROM certs", &[])?;
    let serials: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let distinct: std::collections::HashSet<&String> = serials.iter().collect();
    assert_eq!(distinct.len(), serials.len(), "serials unique");
    Ok(serials)
}

fn db_count(cluster: &Cluster, url: &str, table: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let db = url
        .rsplit_once('/')
        .and_then(|(_, d)| d.split('?').next())
        .ok_or("no database in url")?;
    let mut c = cluster.client(db).pg()?;
    Ok(c.query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0))
}

/// Runs the server binary with `args` in `dir`, for at most 60 s.
fn run_server(dir: &Path, args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    let mut child = Command::new(SERVER)
        .current_dir(dir)
        .args(args)
        .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
        .env_remove("CERTBOARD_DATABASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let until = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            return Err(format!("server {args:?} did not exit within 60 s").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// The CRL number of a PEM CRL, read by `openssl crl`.
fn crl_number(pem: &[u8], dir: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let path = dir.join("crl-under-test.pem");
    std::fs::write(&path, pem)?;
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-crlnumber", "-in"])
        .arg(&path)
        .output()?;
    let shown = String::from_utf8(out.stdout)?;
    let hex = shown
        .trim()
        .strip_prefix("crlNumber=0x")
        .ok_or_else(|| format!("openssl crl said {shown:?}"))?;
    Ok(u64::from_str_radix(hex, 16)?)
}

fn refusal(e: &ClientError) -> Option<(ErrorCode, &str)> {
    match e {
        ClientError::Refused { code, reason } => Some((*code, reason.as_str())),
        _ => None,
    }
}

#[test]
fn a_student_enrolls_on_one_host_and_submits_on_the_other() -> TestResult {
    let cluster = Cluster::shared().pg()?;
    let url = cluster.fresh_db("two_hosts").pg()?;
    let a = host(&url, None)?;
    let b = host(&url, Some(&a))?;
    assert!(a
        .log()
        .contains("store: PostgreSQL postgres://certboard@127.0.0.1:"));
    assert!(
        !a.log().contains(&cluster.password),
        "the password is never logged"
    );

    let k = key()?;
    let alice = enroll_key(a.ca, "1155000001", &k)?;
    let bob = enroll_key(b.ca, "1155000002", &k)?;
    let r1 = submit_report(b.blackboard, &b.trust()?, "1155000001", &alice, &k)?;
    let r2 = submit_report(a.blackboard, &a.trust()?, "1155000002", &bob, &k)?;
    assert_eq!(r1.serial_hex, serial_of(&alice)?);
    assert_ne!(r1.receipt_id, r2.receipt_id);
    // Either host's admin command lists both hosts' work.
    let certs = a.admin(&["certs", "--database", &url])?;
    assert!(certs.status.success(), "{}", text(&certs));
    assert_eq!(
        stdout(&certs).matches("status=good").count(),
        2,
        "{}",
        text(&certs)
    );
    let reports = b.admin(&["reports", "--database", &url])?;
    assert_eq!(stdout(&reports).lines().count(), 2, "{}", text(&reports));

    // Revoked through the admin command: refused at both hosts at once.
    let out = a.admin(&["revoke", "--database", &url, "--sid", "1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    let trust = a.trust()?;
    for bb in [a.blackboard, b.blackboard] {
        let err = submit_report(bb, &trust, "1155000001", &alice, &k).err();
        let reason = err.as_ref().and_then(refusal).map(|(_, r)| r.to_string());
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("has been revoked")),
            "{err:?}"
        );
    }
    // Bob's certificate is untouched.
    submit_report(b.blackboard, &b.trust()?, "1155000002", &bob, &k)?;

    // CRL numbers from both hosts' admin commands strictly increase.
    let mut last = 0;
    for i in 0..6 {
        let h = if i % 2 == 0 { &a } else { &b };
        let out = h.admin(&["crl", "--database", &url])?;
        assert!(out.status.success(), "{}", text(&out));
        let n = crl_number(&out.stdout, h.path())?;
        assert!(n > last, "CRL number {n} after {last}");
        last = n;
    }

    // backup against PostgreSQL: refused, naming pg_dump, without the password.
    let out = a.admin(&["backup", "--database", &url, "--out", "copy.db"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump --format=custom"), "{err}");
    assert!(!err.contains(&cluster.password), "{err}");
    assert!(!a.path().join("copy.db").exists());
    Ok(())
}

/// What the load's clients were told.
#[derive(Debug, Default)]
struct Tally {
    /// Serials of certificates a client received (acknowledged).
    acked: Vec<String>,
    /// Refusals and connection errors.
    errors: Vec<String>,
}

/// `threads` clients, each enrolling `per_thread` SIDs, alternating over
/// `hosts` (read from `targets` at each attempt, so a restarted host's
/// new address is used).
fn load(
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    threads: usize,
    per_thread: usize,
    prefix: &str,
    tally: Arc<Mutex<Tally>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let targets = Arc::clone(&targets);
            let tally = Arc::clone(&tally);
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let Ok(k) = key() else { return };
                for i in 0..per_thread {
                    let ca = {
                        let Ok(hosts) = targets.lock() else { return };
                        hosts[(t + i) % hosts.len()]
                    };
                    let sid = format!("{prefix}{t:02}{i:03}");
                    let result = enroll_key(ca, &sid, &k)
                        .map_err(|e| e.to_string())
                        .and_then(|der| serial_of(&der).map_err(|e| e.to_string()));
                    let Ok(mut tally) = tally.lock() else { return };
                    match result {
                        Ok(serial) => tally.acked.push(serial),
                        Err(e) => tally.errors.push(e),
                    }
                }
            })
        })
        .collect()
}

fn join(handles: Vec<std::thread::JoinHandle<()>>) -> TestResult {
    for h in handles {
        h.join().map_err(|_| "a load thread panicked")?;
    }
    Ok(())
}

/// Waits (bounded) until the load has had `n` acknowledgments.
fn wait_acked(tally: &Mutex<Tally>, n: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if tally
            .lock()
            .map(|t| t.acked.len() + t.errors.len())
            .unwrap_or(0)
            >= n
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_all_recorded(acked: &[String], in_db: &[String]) {
    let db: std::collections::HashSet<&String> = in_db.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|s| !db.contains(s)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the database: {lost:?}"
    );
}

#[test]
fn concurrent_enrollments_on_both_hosts_are_all_recorded_once() -> TestResult {
    let cluster = Cluster::shared().pg()?;
    let url = cluster.fresh_db("concurrent").pg()?;
    let a = host(&url, None)?;
    let b = host(&url, Some(&a))?;
    let targets = Arc::new(Mutex::new(vec![a.ca, b.ca]));
    let tally = Arc::new(Mutex::new(Tally::default()));
    join(load(targets, 4, 10, "c", Arc::clone(&tally)))?;
    let tally = tally.lock().map_err(|_| "poisoned")?;
    assert!(tally.errors.is_empty(), "{:?}", tally.errors);
    assert_eq!(tally.acked.len(), 40);
    let in_db = db_serials(cluster, &url)?;
    assert_all_recorded(&tally.acked, &in_db);
    assert_eq!(in_db.len(), 40, "nothing recorded twice or unacknowledged");
    Ok(())
}

#[test]
fn a_host_killed_under_load_loses_nothing_acknowledged() -> TestResult {
    let cluster = Cluster::shared().pg()?;
    let url = cluster.fresh_db("sigkill").pg()?;
    let a = host(&url, None)?;
    let b = host(&url, Some(&a))?;
    let targets = Arc::new(Mutex::new(vec![a.ca, b.ca]));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handles = load(Arc::clone(&targets), 4, 10, "k", Arc::clone(&tally));
    wait_acked(&tally, 8);
    // SIGKILL, mid-load; the clients on A get connection errors meanwhile.
    let dir = a.crash()?;
    let a = TestServer::start_in(dir, &["--database", &url])?;
    if let Ok(mut t) = targets.lock() {
        t[0] = a.ca;
    }
    join(handles)?;
    // The restarted host serves, on the same records.
    let k = key()?;
    let der = enroll_key(a.ca, "k-after", &k)?;
    submit_report(b.blackboard, &b.trust()?, "k-after", &der, &k)?;

    let tally = tally.lock().map_err(|_| "poisoned")?;
    let in_db = db_serials(cluster, &url)?;
    assert_all_recorded(&tally.acked, &in_db);
    assert!(in_db.contains(&serial_of(&der)?));
    drop(b);
    Ok(())
}

#[test]
fn the_database_stopped_under_load_loses_nothing_and_both_hosts_serve_again() -> TestResult {
    // Its own cluster: this test stops it.
    let cluster = Cluster::start().pg()?;
    let url = cluster.url.clone();
    let a = host(&url, None)?;
    let b = host(&url, Some(&a))?;
    // A certificate made before the stop, to submit while it is down.
    let k = key()?;
    let early = enroll_key(a.ca, "p-early", &k)?;

    let targets = Arc::new(Mutex::new(vec![a.ca, b.ca]));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handles = load(Arc::clone(&targets), 4, 10, "p", Arc::clone(&tally));
    wait_acked(&tally, 6);
    cluster.halt().pg()?;

    // While it is down: both hosts stay up and refuse, saying so.
    for h in [&a, &b] {
        let err = enroll_key(h.ca, "p-down", &k).err();
        let said = err.as_ref().and_then(refusal);
        assert!(
            matches!(said, Some((ErrorCode::StoreUnavailable, r)) if r.contains("store unavailable"))
                || matches!(said, Some((ErrorCode::Internal, r))
                    if r.contains("may or may not have been recorded")),
            "{err:?}"
        );
        let err = submit_report(h.blackboard, &h.trust()?, "p-early", &early, &k).err();
        let said = err.as_ref().and_then(refusal);
        assert!(
            matches!(said, Some((ErrorCode::StoreUnavailable, r)) if r.contains("store unavailable: nothing was acknowledged")),
            "{err:?}"
        );
    }
    cluster.resume().pg()?;
    join(handles)?;

    // Both serve again without a restart (after the engine's back-off).
    for (enroll_on, submit_on) in [(&a, &b), (&b, &a)] {
        let sid = format!("p-back-{}", enroll_on.ca.port());
        let mut done = None;
        let until = Instant::now() + Duration::from_secs(30);
        let trust = submit_on.trust()?;
        while done.is_none() && Instant::now() < until {
            match enroll_key(enroll_on.ca, &sid, &k).and_then(|der| {
                submit_report(submit_on.blackboard, &trust, &sid, &der, &k).map(|r| (der, r))
            }) {
                Ok(x) => done = Some(x),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        let (der, _) = done.ok_or("a host did not serve again after the database came back")?;
        let tally = tally.lock().map_err(|_| "poisoned")?;
        let in_db = db_serials(&cluster, &url)?;
        assert!(in_db.contains(&serial_of(&der)?));
        assert_all_recorded(&tally.acked, &in_db);
    }
    // Every error the load saw was the truth: a refusal of the store, or a
    // connection the server answered with such a refusal; never a
    // certificate that is not in the database (checked above).
    let tally = tally.lock().map_err(|_| "poisoned")?;
    for e in &tally.errors {
        assert!(
            e.contains("store unavailable") || e.contains("may or may not have been recorded"),
            "{e}"
        );
    }
    assert!(a.log().contains("reconnected") && b.log().contains("reconnected"));
    Ok(())
}

#[test]
fn migrate_moves_a_sqlite_store_and_the_students_carry_on() -> TestResult {
    let cluster = Cluster::shared().pg()?;
    let url = cluster.fresh_db("migrate").pg()?;
    let old = TestServer::start(&[])?;
    let root = old.root_pem();
    let root = root.to_str().ok_or("path")?;
    let out = old.client(&["--ca-cert", root, "1155000011", "1155000012", "1155000013"])?;
    assert!(out.status.success(), "{}", text(&out));
    let revoked = old.admin(&[
        "revoke",
        "--sid",
        "1155000013",
        "--reason",
        "key-compromise",
    ])?;
    assert!(revoked.status.success(), "{}", text(&revoked));
    for _ in 0..2 {
        assert!(old.admin(&["crl"])?.status.success());
    }
    // A roster with a fourth student who has not enrolled yet, and codes.
    let roster = old.path().join("roster.csv");
    std::fs::write(
        &roster,
        "sid,name\n1155000011,A\n1155000012,B\n1155000013,C\n1155000014,D\n",
    )?;
    // Over their open-enrollment certificates: kept, unvouched.
    let imported = old.admin(&[
        "roster",
        "import",
        roster.to_str().ok_or("path")?,
        "--keep-unverified",
    ])?;
    assert!(imported.status.success(), "{}", text(&imported));
    let codes_file = old.path().join("codes.csv");
    let codes = old.admin(&[
        "roster",
        "codes",
        "--out",
        codes_file.to_str().ok_or("path")?,
    ])?;
    assert!(codes.status.success(), "{}", text(&codes));
    let code_14 = std::fs::read_to_string(&codes_file)?
        .lines()
        .find_map(|l| l.strip_prefix("1155000014,").map(str::to_string))
        .ok_or("no code for 1155000014")?;
    // Stopped cleanly (SIGTERM) before the copy; the copy needs only the dirs.
    let dir = stop_keeping_dir(old)?;
    let out = run_server(dir.path(), &["migrate", "--data-dir", "data", "--to", &url])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("certs=3 reports=3 roster=4 codes=4 ")
            && stdout(&out).contains(" crl_number=2"),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains(&cluster.password));
    // A second copy into the now full database is refused, nothing added.
    let again = run_server(dir.path(), &["migrate", "--data-dir", "data", "--to", &url])?;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        text(&again)
    );
    assert_eq!(db_count(cluster, &url, "certs")?, 3);

    // The server on PostgreSQL knows those students: their certificates
    // chain, but came from open enrollment before the roster (kept
    // unvouched, which the copy carried), so they no longer submit; the
    // revocation holds, the CRL numbers go on.
    let srv = TestServer::start_in(dir, &["--database", &url])?;
    let out = srv.client(&[
        "--ca-cert",
        root_of(&srv)?.as_str(),
        "--resubmit",
        "1155000011",
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not vouched for"), "{}", text(&out));
    let out = srv.client(&["--ca-cert", root_of(&srv)?.as_str(), "1155000013"])?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("has been revoked (keyCompromise)"),
        "{}",
        text(&out)
    );
    // The roster and her code came along: the fourth student enrolls with
    // it (once); a stranger without a code hears what any SID would.
    let root = root_of(&srv)?;
    let code_file = srv.path().join("code-1155000014.txt");
    std::fs::write(&code_file, &code_14)?;
    let code_file = code_file.to_string_lossy();
    let out = srv.client(&["--ca-cert", &root, "--code-file", &code_file, "1155000014"])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = srv.client(&["--ca-cert", &root, "1155000099"])?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("enrollment code required"),
        "{}",
        text(&out)
    );
    assert_eq!(db_count(cluster, &url, "reports")?, 4);
    let crl = srv.admin(&["crl", "--database", &url])?;
    assert_eq!(crl_number(&crl.stdout, srv.path())?, 3);
    Ok(())
}

/// SIGTERM, a clean exit, and the directory handed back.
fn stop_keeping_dir(
    mut server: TestServer,
) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    assert!(server.child.wait()?.success(), "{}", server.log());
    // Already exited: crash() only hands back the directory.
    server.crash()
}

fn root_of(server: &TestServer) -> Result<String, Box<dyn std::error::Error>> {
    Ok(server.root_pem().to_str().ok_or("path")?.to_string())
}

/// A start that must fail: its stderr, and a check that nothing was made.
fn refused_start(url: &str) -> Result<String, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let out = run_server(
        dir.path(),
        &[
            "--database",
            url,
            "--ca-listen",
            "127.0.0.1:0",
            "--blackboard-listen",
            "127.0.0.1:0",
            "--ca-key-type",
            "p256",
        ],
    )?;
    assert!(!out.status.success(), "started on {url}: {}", text(&out));
    let made: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    assert!(made.is_empty(), "a failed start wrote {made:?}");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_urls_wrong_passwords_and_foreign_databases_are_refused_at_start() -> TestResult {
    let cluster = Cluster::shared().pg()?;
    let err = refused_start("mysql://u@h/db")?;
    assert!(
        err.contains("bad database url: it must start with postgres://"),
        "{err}"
    );
    let err = refused_start("postgres://u@h:notaport/db")?;
    assert!(err.contains("bad database url"), "{err}");

    let wrong = cluster.url_with(
        "certboard",
        "not-the-password",
        "certboard",
        "sslmode=disable",
    );
    let err = refused_start(&wrong)?;
    assert!(err.contains("login refused"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    let missing = cluster.url_with("certboard", &cluster.password, "no_such_db", "");
    let err = refused_start(&missing)?;
    assert!(err.contains("no such database"), "{err}");

    // A database holding someone else's tables is left as it was.
    let foreign = cluster.fresh_db("foreign").pg()?;
    let db = foreign
        .rsplit_once('/')
        .and_then(|(_, d)| d.split('?').next())
        .ok_or("db")?;
    cluster
        .client(db)
        .pg()?
        .batch_execute("CREATE TABLE invoices (id INT)")?;
    let err = refused_start(&foreign)?;
    assert!(err.contains("is not a certboard database"), "{err}");
    let tables: i64 = cluster
        .client(db)
        .pg()?
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )?
        .get(0);
    assert_eq!(tables, 1, "nothing written");
    // Nor does migrate touch it.
    let dir = tempfile::tempdir()?;
    let out = run_server(dir.path(), &["migrate", "--to", &foreign])?;
    assert!(!out.status.success(), "{}", text(&out));

    // An admin command never creates a store behind a mistyped URL.
    let empty = cluster.fresh_db("empty").pg()?;
    let out = run_server(dir.path(), &["certs", "--database", &empty])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no certboard store"),
        "{}",
        text(&out)
    );
    assert_eq!(
        db_count(
            cluster,
            &empty,
            "pg_tables WHERE schemaname = current_schema()"
        )?,
        0
    );
    // Unreachable: a clear error, not a hang.
    let closed = format!(
        "postgres://certboard:x@127.0.0.1:{}/certboard",
        closed_port()?
    );
    let err = refused_start(&closed)?;
    assert!(err.contains("store unavailable"), "{err}");
    Ok(())
}

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr().map(|a| a.port())
}

#[test]
fn the_two_hosts_example_runs() -> TestResult {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/two-hosts.sh"
        ))
        .env("CERTBOARD_SERVER", SERVER)
        .env("CERTBOARD_CLIENT", env!("CARGO_BIN_EXE_client"))
        .stdin(Stdio::null())
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("enrolled on host A, submitted on host B"),
        "{said}"
    );
    Ok(())
}

/// A table migrate does not know (say, a newer build's) is refused, not
/// skipped: nothing is copied.
#[test]
fn migrate_refuses_a_table_it_cannot_copy() -> TestResult {
    let cluster = Cluster::shared().pg()?;
    let url = cluster.fresh_db("unknown_table").pg()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    drop(certboard::store::SqliteStore::open(&data)?);
    let db = rusqlite::Connection::open(data.join(certboard::store::DB_FILE))?;
    db.execute_batch("CREATE TABLE grades (sid TEXT PRIMARY KEY)")?;
    drop(db);
    let out = run_server(dir.path(), &["migrate", "--to", &url])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("table \"grades\" that this build cannot copy"),
        "{err}"
    );
    let tables = db_count(
        cluster,
        &url,
        "pg_tables WHERE schemaname = current_schema()",
    )?;
    assert_eq!(tables, 0, "nothing written");
    Ok(())
}
