//! A PostgreSQL that stops answering (issue 19): the whole cluster —
//! postmaster and every backend — is stopped with SIGSTOP, as a partition
//! or a frozen host would leave it (no refusal, no reset: silence). The
//! server's loop must wait for it at most a short bound: what needs the
//! store is told "try later" promptly (`/health` 503, OCSP `tryLater`, the
//! wire's store-unavailable refusal), `/crl` serves the CRL made before
//! (valid until its nextUpdate), everything else is served as usual,
//! and after SIGCONT everything works again with every acknowledged record
//! in the database. Every loop is bounded in count and time; the cluster is
//! always continued by a drop guard, so a failing test never leaves it
//! stopped.

mod common;
mod pg;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use certboard::admin::normalise_serial;
use certboard::client::{self, ClientError, KeyType};
use certboard::message::{ErrorCode, Message};
use common::{enroll_key, submit_report, TestResult, TestServer};
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspRequest, OcspResponse, OcspResponseStatus};
use openssl::x509::X509;
use pg::Cluster;

/// "About a second" for an answer that needs the store while the database
/// is stopped, with room for a loaded test machine. The loop itself waits
/// at most 80 ms (`LOOP_STORE_WAIT`); this bounds the whole request.
const PROMPT: Duration = Duration::from_secs(2);

/// The longest a request that needs no store may take while the database
/// is stopped: generous (the loop's own bound is 80 ms), so that only a
/// loop waiting on the network (seconds, or for ever) fails it.
const STALL_BOUND: Duration = Duration::from_secs(1);

/// The cluster helpers' errors (Send + Sync) as the tests' own.
fn pg<T>(r: Result<T, pg::BoxError>) -> Result<T, Box<dyn std::error::Error>> {
    r.map_err(|e| e as Box<dyn std::error::Error>)
}

/// Every process of a cluster, stopped with SIGSTOP until dropped.
struct Stopped {
    pids: Vec<String>,
}

impl Stopped {
    /// Stops the postmaster of the cluster in `dir` first (it then forks
    /// no new backend), then each of its children.
    fn cluster(dir: &Path) -> Result<Stopped, Box<dyn std::error::Error>> {
        let pidfile = std::fs::read_to_string(dir.join("data").join("postmaster.pid"))?;
        let postmaster = pidfile
            .lines()
            .next()
            .ok_or("empty postmaster.pid")?
            .trim()
            .to_string();
        let mut stopped = Stopped { pids: Vec::new() };
        stopped.stop(&postmaster)?;
        for child in children(&postmaster)? {
            stopped.stop(&child)?;
        }
        assert!(stopped.pids.len() > 1, "no backends found");
        Ok(stopped)
    }

    fn stop(&mut self, pid: &str) -> Result<(), Box<dyn std::error::Error>> {
        // Recorded first: the guard continues it even if `kill` fails midway.
        self.pids.push(pid.to_string());
        let ok = Command::new("kill")
            .args(["-STOP", pid])
            .status()?
            .success();
        if !ok {
            return Err(format!("kill -STOP {pid} failed").into());
        }
        Ok(())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in self.pids.iter().rev() {
            let _ = Command::new("kill").args(["-CONT", pid]).status();
        }
    }
}

/// The pids whose parent is `parent`, from /proc.
fn children(parent: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Gone since the listing: not ours to stop.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(parent) {
            found.push(name);
        }
    }
    Ok(found)
}

/// One HTTP request over a fresh connection: (status, body).
fn http(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!(
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let status = std::str::from_utf8(all.get(9..12).unwrap_or_default())?.parse()?;
    let start = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?
        + 4;
    Ok((status, all[start..].to_vec()))
}

fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error>> {
    http(addr, &format!("GET {path} HTTP/1.1"), b"")
}

/// The OCSP answer for `cert`: the response status, and the certificate's
/// status when the response is successful.
fn ocsp(
    addr: SocketAddr,
    cert: &X509,
    root: &X509,
) -> Result<(OcspResponseStatus, Option<OcspCertStatus>), Box<dyn std::error::Error>> {
    let id = || OcspCertId::from_cert(MessageDigest::sha1(), cert, root);
    let mut req = OcspRequest::new()?;
    req.add_id(id()?)?;
    let (status, body) = http(
        addr,
        "POST /ocsp HTTP/1.1\r\nContent-Type: application/ocsp-request",
        &req.to_der()?,
    )?;
    assert_eq!(status, 200);
    let resp = OcspResponse::from_der(&body)?;
    let cert_status = match resp.status() {
        OcspResponseStatus::SUCCESSFUL => {
            let id = id()?;
            resp.basic()?.find_status(&id).map(|s| s.status)
        }
        _ => None,
    };
    Ok((resp.status(), cert_status))
}

/// Whether `/health` says 200 and OCSP says `cert` is good, within
/// [`ATTEMPTS`] tries (a read may miss the loop's bound on a loaded machine).
fn served(web: SocketAddr, cert: &X509, root: &X509) -> Result<bool, Box<dyn std::error::Error>> {
    for _ in 0..ATTEMPTS {
        if get(web, "/health")?.0 == 200
            && ocsp(web, cert, root)?
                == (OcspResponseStatus::SUCCESSFUL, Some(OcspCertStatus::GOOD))
        {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

/// How many times a step that needs the store is tried while the
/// database answers.
const ATTEMPTS: usize = 50;

/// `step`, tried again while it is refused with code 19, the store
/// unavailable (a read that missed the loop's bound on a loaded machine,
/// or a commit refused behind a slow one), at most [`ATTEMPTS`] times.
fn eventually<T>(
    mut step: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, Box<dyn std::error::Error>> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match step() {
            Ok(v) => return Ok(v),
            Err(e) if refusal(&e).is_some_and(|(c, _)| c == ErrorCode::StoreUnavailable) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(format!("still refused after {ATTEMPTS} attempts: {last:?}").into())
}

fn refusal(e: &ClientError) -> Option<(ErrorCode, &str)> {
    match e {
        ClientError::Refused { code, reason } => Some((*code, reason.as_str())),
        _ => None,
    }
}

/// The store's form of a certificate's serial.
fn serial_of(cert: &X509) -> Result<String, Box<dyn std::error::Error>> {
    let hex = cert.serial_number().to_bn()?.to_hex_str()?.to_string();
    Ok(normalise_serial(&hex)?)
}

#[test]
fn a_stopped_database_costs_the_loop_one_short_bound_and_everything_comes_back() -> TestResult {
    // Its own cluster: this test stops it.
    let cluster = pg(Cluster::start())?;
    let server = TestServer::start(&["--database", &cluster.url, "--http-listen", "127.0.0.1:0"])?;
    let result = stop_and_continue(&cluster, &server);
    if result.is_err() {
        eprintln!("server log:\n{}", server.log());
    }
    result
}

fn stop_and_continue(cluster: &Cluster, server: &TestServer) -> TestResult {
    let web = server.http_addr()?;
    let root = X509::from_pem(&std::fs::read(server.root_pem())?)?;
    let trust = server.trust()?;

    // Acknowledged before the stop: a certificate and a report. (On a
    // loaded machine a read may miss the loop's 80 ms and be refused as
    // unavailable: a client tries again, and so do these.)
    let key = client::make_key(KeyType::Rsa2048)?;
    let der = eventually(|| enroll_key(server.ca, "1155000001", &key))?;
    let cert = X509::from_der(&der)?;
    let receipt =
        eventually(|| submit_report(server.blackboard, &trust, "1155000001", &der, &key))?;
    assert!(
        served(web, &cert, &root)?,
        "/health or OCSP not served before the stop"
    );

    // The CRL as served before the stop (made, and kept, by the server).
    let (status, crl_before) = get(web, "/crl")?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&crl_before));

    let stopped = Stopped::cluster(cluster.dir())?;

    // What needs the store is told to try later, promptly.
    let t = Instant::now();
    let (status, body) = get(web, "/health")?;
    let health_took = t.elapsed();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("store unavailable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(health_took < PROMPT, "/health took {health_took:?}");

    let t = Instant::now();
    let (status, _) = ocsp(web, &cert, &root)?;
    assert_eq!(status, OcspResponseStatus::TRY_LATER);
    assert!(t.elapsed() < PROMPT, "OCSP took {:?}", t.elapsed());

    // The CRL made before the stop is still valid until its nextUpdate:
    // served as it is, promptly, rather than "try later" (issue 19).
    for _ in 0..3 {
        let t = Instant::now();
        let (status, crl) = get(web, "/crl")?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&crl));
        assert_eq!(crl, crl_before, "not the CRL made before the stop");
        assert!(t.elapsed() < PROMPT, "/crl took {:?}", t.elapsed());
    }
    assert!(
        server.wait_log("serving the last CRL made", 10),
        "the log does not say the CRL is served without the store"
    );

    let other = client::make_key(KeyType::Rsa2048)?;
    let t = Instant::now();
    let err = enroll_key(server.ca, "1155000002", &other).err();
    assert!(
        matches!(err.as_ref().and_then(refusal), Some((ErrorCode::StoreUnavailable, r))
            if r.contains("store unavailable: nothing was acknowledged")
                && r.contains("try again")),
        "{err:?}"
    );
    assert!(
        t.elapsed() < PROMPT,
        "the enrollment took {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let err = submit_report(server.blackboard, &trust, "1155000001", &der, &key).err();
    assert!(
        matches!(err.as_ref().and_then(refusal), Some((ErrorCode::StoreUnavailable, r))
            if r.contains("store unavailable: nothing was acknowledged")
                && r.contains("try again")),
        "{err:?}"
    );
    assert!(
        t.elapsed() < PROMPT,
        "the submission took {:?}",
        t.elapsed()
    );

    // Everything else is served as usual, even while requests that need
    // the store keep coming: the loop's worst stall stays small.
    let mut worst = Duration::ZERO;
    for round in 0..20 {
        if round % 2 == 0 {
            assert_eq!(get(web, "/health")?.0, 503);
        } else {
            assert_eq!(ocsp(web, &cert, &root)?.0, OcspResponseStatus::TRY_LATER);
        }
        let t = Instant::now();
        let (status, body) = get(web, "/metrics")?;
        worst = worst.max(t.elapsed());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // A CA connection whose answer needs no store (a hello of a
        // version this server does not speak) is answered at once too.
        let t = Instant::now();
        let mut conn = client::FramedStream::connect(&server.ca.to_string(), common::NET_TIMEOUT)?;
        conn.send(&Message::CaHello { version: u16::MAX })?;
        let answer = conn.recv();
        worst = worst.max(t.elapsed());
        let said = answer.as_ref().err().and_then(refusal);
        assert!(
            matches!(said, Some((_, r)) if !r.contains("store")),
            "{answer:?}"
        );
    }
    assert!(worst < STALL_BOUND, "worst stall {worst:?}");
    eprintln!("while the database was stopped: /health in {health_took:?}, worst stall {worst:?}");

    // The database answers again: everything comes back by itself.
    drop(stopped);
    let until = Instant::now() + Duration::from_secs(60);
    let mut enrolled = None;
    while enrolled.is_none() && Instant::now() < until {
        let healthy = get(web, "/health")?.0 == 200;
        if healthy {
            match enroll_key(server.ca, "1155000002", &other) {
                Ok(d) => enrolled = Some(d),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let der2 = enrolled.ok_or("the server did not serve again after SIGCONT")?;
    let cert2 = X509::from_der(&der2)?;
    assert!(served(web, &cert2, &root)?, "OCSP not served after SIGCONT");
    eventually(|| submit_report(server.blackboard, &trust, "1155000002", &der2, &other))?;

    // Every acknowledged record is there.
    let mut db = pg(cluster.client("certboard"))?;
    let serials: Vec<String> = db
        .query("SELECT serial FROM certs", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for c in [&cert, &cert2] {
        let s = serial_of(c)?;
        assert!(serials.contains(&s), "{s} missing from {serials:?}");
    }
    let receipts: Vec<i64> = db
        .query(
            "SELECT receipt_id FROM reports WHERE sid = '1155000001'",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(receipts, vec![receipt.receipt_id as i64]);
    let reports: i64 = db.query_one("SELECT count(*) FROM reports", &[])?.get(0);
    assert_eq!(reports, 2);
    Ok(())
}
