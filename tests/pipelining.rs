//! Pipelining must not let one client hold the loop (issue 19): 64
//! connections each pipeline 100 valid OCSP POSTs (each a CA signature,
//! RSA-2048, the server's default CA key)
//! while an honest student enrolls and submits. The student is served
//! within a generous bound, and every pipelined request is still answered,
//! in order. With `--nocapture` the test prints the student's time with
//! and without the load, and the time of enrollments alone (a key made
//! beforehand, a new connection, `CaHello`, one CSR), unloaded and one
//! after the other while the load lasts (bench/pipelining.sh records
//! them).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{enroll_csr, text, Launch, TestResult, TestServer, NET_TIMEOUT};

const CONNECTIONS: usize = 64;
const PIPELINED: usize = 100;
/// Enrollments timed on the idle server.
const UNLOADED_PROBES: u64 = 15;
/// Most enrollments timed while the load lasts (a bound on the loop).
const LOADED_PROBES: u64 = 400;

/// One enrollment on a new CA connection with a key made beforehand, timed.
fn probe(
    server: &TestServer,
    sid: u64,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let csr = certboard::client::make_csr(&sid.to_string(), key)?;
    let started = Instant::now();
    let mut conn = certboard::client::FramedStream::connect(&server.ca.to_string(), NET_TIMEOUT)?;
    enroll_csr(&mut conn, csr)?;
    Ok(started.elapsed())
}

/// The median and the 90th percentile (nearest rank) of `times`, in ms.
fn median_p90(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |p: usize| {
        let rank = (times.len() * p).div_ceil(100).clamp(1, times.len().max(1));
        times.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(50), at(90))
}

/// A student's whole exchange (enrollment, then a submission), timed.
fn honest_student(server: &TestServer, sid: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let out = server.client(&[sid])?;
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    Ok(took)
}

/// The serial a pipelined request asks about: unique per connection and
/// request, four bytes, positive.
fn serial(conn: usize, request: usize) -> [u8; 4] {
    let [hi, lo] = u16::try_from(request).unwrap_or(u16::MAX).to_be_bytes();
    [0x11, u8::try_from(conn).unwrap_or(u8::MAX), hi, lo]
}

/// An OCSP request (from `openssl ocsp`) for the serial 0x11223344, whose
/// four serial bytes each pipelined request replaces with its own.
fn request_template(server: &TestServer) -> Result<(Vec<u8>, usize), Box<dyn std::error::Error>> {
    let path = server.path().join("template-req.der");
    let out = Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(server.root_pem())
        .args(["-serial", "0x11223344", "-no_nonce", "-reqout"])
        .arg(&path)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let der = std::fs::read(&path)?;
    let at = der
        .windows(6)
        .position(|w| w == [0x02, 0x04, 0x11, 0x22, 0x33, 0x44])
        .ok_or("no serial in the OCSP request")?;
    Ok((der, at + 2))
}

/// One connection's 100 requests, pipelined in one write.
fn pipelined(template: &(Vec<u8>, usize), conn: usize, http: SocketAddr) -> Vec<u8> {
    let (der, at) = template;
    let mut all = Vec::new();
    for i in 0..PIPELINED {
        let mut body = der.clone();
        body[*at..*at + 4].copy_from_slice(&serial(conn, i));
        all.extend_from_slice(
            format!(
                "POST /ocsp HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/ocsp-request\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        all.extend_from_slice(&body);
    }
    all
}

/// One HTTP response: its status and body.
type Answer = (u16, Vec<u8>);

/// Splits a stream of HTTP responses.
fn responses(mut all: &[u8]) -> Result<Vec<Answer>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    while !all.is_empty() {
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("a response head without its end")?;
        let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
        let status: u16 = head.get(9..12).ok_or("no status")?.parse()?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .ok_or("no content-length")?
            .trim()
            .parse()?;
        let body = all.get(end + 4..end + 4 + len).ok_or("a short body")?;
        out.push((status, body.to_vec()));
        all = &all[end + 4 + len..];
    }
    Ok(out)
}

#[test]
fn an_honest_student_is_served_while_64_connections_pipeline_ocsp() -> TestResult {
    // The default CA key: each OCSP answer is an RSA-2048 signature, the
    // costliest turn a pipelining client can ask for.
    let how = Launch {
        ca_key_type: Some("rsa2048"),
        ..Launch::default()
    };
    let server = TestServer::launch(
        tempfile::tempdir()?,
        &["--http-listen", "127.0.0.1:0"],
        &how,
    )?;
    let http = server.http_addr()?;
    let unloaded = honest_student(&server, "1155000040")?;
    let key = openssl::rsa::Rsa::generate(2048).and_then(openssl::pkey::PKey::from_rsa)?;
    let mut sid = 1_155_100_000u64;
    let mut unloaded_probes = Vec::new();
    for _ in 0..UNLOADED_PROBES {
        sid += 1;
        unloaded_probes.push(probe(&server, sid, &key)?);
    }
    let template = Arc::new(request_template(&server)?);

    let sent = Arc::new(Barrier::new(CONNECTIONS + 1));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for conn in 0..CONNECTIONS {
        let template = Arc::clone(&template);
        let sent = Arc::clone(&sent);
        let finished = Arc::clone(&finished);
        load.push(std::thread::spawn(
            move || -> Result<Vec<Answer>, Box<dyn std::error::Error + Send + Sync>> {
                let run = || -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let mut s = TcpStream::connect(http)?;
                    s.set_read_timeout(Some(Duration::from_secs(120)))?;
                    s.write_all(&pipelined(&template, conn, http))?;
                    Ok(s)
                };
                let got = run();
                sent.wait();
                let read = |s: Result<TcpStream, _>| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let mut all = Vec::new();
                    s?.read_to_end(&mut all)?;
                    Ok(responses(&all).map_err(|e| e.to_string())?)
                };
                let answers = read(got);
                finished.fetch_add(1, Ordering::Relaxed);
                answers
            },
        ));
    }
    // Every connection has its 100 requests in; the loop is busy with them.
    sent.wait();
    let loaded = honest_student(&server, "1155000041")?;
    // Then enrollments alone, one after the other, while the load lasts.
    let mut loaded_probes = Vec::new();
    while finished.load(Ordering::Relaxed) < CONNECTIONS
        && (loaded_probes.len() as u64) < LOADED_PROBES
    {
        sid += 1;
        loaded_probes.push(probe(&server, sid, &key)?);
    }

    for (conn, handle) in load.into_iter().enumerate() {
        let got = handle
            .join()
            .map_err(|_| "a load thread panicked")?
            .map_err(|e| e as Box<dyn std::error::Error>)?;
        assert_eq!(got.len(), PIPELINED, "connection {conn}");
        for (i, (status, body)) in got.iter().enumerate() {
            assert_eq!(*status, 200, "connection {conn}, request {i}");
            // The response names the serial asked about: in order.
            let mut asked = vec![0x02, 0x04];
            asked.extend_from_slice(&serial(conn, i));
            assert!(
                body.windows(6).any(|w| w == asked.as_slice()),
                "connection {conn}: response {i} is not about request {i}'s serial"
            );
        }
    }
    eprintln!(
        "honest enrollment and submission: {:.1} ms unloaded, {:.1} ms beside {CONNECTIONS} \
         connections pipelining {PIPELINED} OCSP POSTs each",
        unloaded.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3
    );
    let (u50, u90) = median_p90(unloaded_probes);
    let n = loaded_probes.len();
    let (l50, l90) = median_p90(loaded_probes);
    eprintln!(
        "honest enrollment alone: median {u50:.2} ms (p90 {u90:.2}) unloaded, median {l50:.2} ms \
         (p90 {l90:.2}) over {n} enrollments beside the load: +{:.2} ms",
        l50 - u50
    );
    // Generous: unloaded it takes milliseconds; before bounded turns it
    // waited for thousands of signatures.
    let bound = Duration::from_secs(2).max(unloaded * 4);
    assert!(
        loaded < bound,
        "the honest student took {loaded:?} under the pipelined load (unloaded: {unloaded:?})"
    );
    Ok(())
}
