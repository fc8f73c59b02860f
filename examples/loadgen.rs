//! A load generator for a running certboard server (or, for comparison, a
//! `cfssl serve`):
//!
//! ```text
//! cargo run --release --example loadgen -- --ca 127.0.0.1:8011 --blackboard 127.0.0.1:8002 \
//!     --mode enroll --concurrency 32 --duration 10
//! cargo run --release --example loadgen -- --ca 127.0.0.1:8011 --blackboard 127.0.0.1:8002 \
//!     --mode submit --concurrency 8 --count 5000
//! cargo run --release --example loadgen -- --cfssl 127.0.0.1:8888 --mode cfssl \
//!     --concurrency 8 --duration 10
//! cargo run --release --example loadgen -- --ocsp 127.0.0.1:8080 --mode ocsp \
//!     --ocsp-request req.der --concurrency 8 --duration 10
//! ```
//!
//! In `ocsp` mode the same OCSP request (DER, from `openssl ocsp -reqout`)
//! is POSTed to any OCSP responder over HTTP (certboard's `/ocsp`, `openssl
//! ocsp -port`), a connection carrying up to `--per-connection` requests
//! (fewer when the responder closes it, as HTTP/1.0 ones do); every answer
//! must be a successful OCSPResponse.
//!
//! Everything expensive happens before the timed phase: RSA keys are
//! generated once (a small pool, optionally kept in `--key-file` between
//! runs, since RSA key generation is slow) and reused across CSRs with
//! distinct SIDs; in `submit` mode every submission gets its own certificate,
//! all enrolled before the clock starts. The timed phase then runs
//! `--concurrency` connections until `--count` operations or `--duration`
//! seconds, whichever comes first, driven in one of two ways (`--io`):
//!
//! - `threads`: one blocking connection per thread.
//! - `events` (enroll and cfssl modes): one thread and one `mio::Poll` over
//!   all the connections, non-blocking. On loopback a server's send runs
//!   its client's receive path and wakes the client's thread; with a thread
//!   per connection that is a cross-CPU wakeup per reply, charged to the
//!   server, which a server on a real network never pays. One event loop
//!   that is mostly busy is woken far less often.
//!
//! Both modes use the same prepared requests, bounds, checks, timeouts and
//! figures.
//!
//! It prints figures for people, then one JSON line for scripts with the
//! keys `mode`, `io`, `ops`, `seconds`, `ops_per_sec`, `p50_ms`, `p99_ms`,
//! `max_ms`, `errors` (and, with `--server-pid`, the server's CPU time over
//! the timed phase, read from `/proc/PID/stat`).
//!
//! Loopback only: it refuses any address that is not 127.0.0.0/8 or ::1.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certboard::client::{self, FramedStream, KeyType};
use certboard::crypto;
use certboard::framing::{self, Decoder};
use certboard::message::{CipherId, EnrollAuth, Message, PROTOCOL_VERSION};
use clap::{Parser, ValueEnum};
use mio::{Events, Interest, Poll, Token};
use openssl::pkey::{PKey, Private};

mod common;
use common::{cpu_time, loopback_only, BoxError};

/// This driver, as its refusals name it.
const WHO: &str = "the load generator";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// CSR in, certificate out: one connection to the CA per enrollment.
    Enroll,
    /// A full submission to Blackboard (steps 3-6), a distinct certificate each.
    Submit,
    /// The same CSRs to cfssl's HTTP `/api/v1/cfssl/sign` (keep-alive).
    Cfssl,
    /// One OCSP request (`--ocsp-request`) POSTed to an OCSP responder.
    Ocsp,
    /// No server: only make (or load) the key pool of --key-file, and exit.
    Keys,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Enroll => "enroll",
            Mode::Submit => "submit",
            Mode::Cfssl => "cfssl",
            Mode::Ocsp => "ocsp",
            Mode::Keys => "keys",
        }
    }
}

/// How the timed phase drives its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Io {
    /// One blocking connection per thread.
    Threads,
    /// One thread, a mio poll over non-blocking connections (enroll and
    /// cfssl modes; submit is threads only).
    Events,
}

impl Io {
    fn name(self) -> &'static str {
        match self {
            Io::Threads => "threads",
            Io::Events => "events",
        }
    }
}

/// Where cfssl signs.
const CFSSL_SIGN_PATH: &str = "/api/v1/cfssl/sign";

/// Drives a certboard server (or cfssl) and reports throughput and latency.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Cli {
    /// The CA's address.
    #[arg(long, default_value = "127.0.0.1:8011")]
    ca: String,
    /// Blackboard's address.
    #[arg(long, default_value = "127.0.0.1:8002")]
    blackboard: String,
    /// cfssl's address (mode cfssl).
    #[arg(long, default_value = "127.0.0.1:8888")]
    cfssl: String,
    /// The OCSP responder's address (mode ocsp).
    #[arg(long, default_value = "127.0.0.1:8080")]
    ocsp: String,
    /// The OCSP request to send, DER (mode ocsp).
    #[arg(long, value_name = "FILE")]
    ocsp_request: Option<PathBuf>,
    /// The path to POST OCSP requests to.
    #[arg(long, default_value = "/ocsp")]
    ocsp_path: String,
    /// What to do.
    #[arg(long, value_enum, default_value_t = Mode::Enroll)]
    mode: Mode,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// How the connections are driven: `threads`, one blocking thread per
    /// connection; `events`, one thread polling them all non-blocking
    /// (enroll and cfssl modes only: submit is threads only).
    #[arg(long, value_enum, default_value_t = Io::Threads)]
    io: Io,
    /// Stop after this many seconds of timed phase (at most one hour).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many operations.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: Option<u64>,
    /// RSA-2048 keys in the pool (reused across CSRs with distinct SIDs).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    keys: u32,
    /// Keep the key pool in this PEM file: loaded when present, written
    /// when generated (test keys only: the file is not protected).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Distinct CSRs prepared for enroll/cfssl (cycled when the run is
    /// longer); in submit mode with --duration, the certificates enrolled
    /// beforehand (the run stops early when they are used up).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pool: u32,
    /// First SID; the others count up from it.
    #[arg(long, default_value_t = 1_155_000_000)]
    first_sid: u64,
    /// Timeout of every network step, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Enrollments per CA connection (the protocol allows several in turn,
    /// as cfssl's keep-alive HTTP does); at most the server's
    /// --max-messages (default 32).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    per_connection: u32,
    /// The server's PID: its CPU time over the timed phase is reported.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

fn load_or_make_keys(n: usize, file: Option<&Path>) -> Result<Vec<PKey<Private>>, BoxError> {
    let mut keys = Vec::new();
    if let Some(path) = file.filter(|p| p.exists()) {
        let text = fs::read_to_string(path)?;
        let marker = "-----END PRIVATE KEY-----";
        for block in text.split_inclusive(marker) {
            if block.contains(marker) && keys.len() < n {
                keys.push(PKey::private_key_from_pem(block.trim_start().as_bytes())?);
            }
        }
        eprintln!("loaded {} keys from {}", keys.len(), path.display());
    }
    if keys.len() < n {
        let missing = n - keys.len();
        let t = Instant::now();
        let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
        let next = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for _ in 0..workers {
            let next = next.clone();
            let made = made.clone();
            handles.push(std::thread::spawn(move || -> Result<(), BoxError> {
                while next.fetch_add(1, Ordering::Relaxed) < missing {
                    let k = client::make_key(KeyType::Rsa2048)?;
                    made.lock().map_err(|_| "poisoned")?.push(k);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| "key generation thread panicked")??;
        }
        let made = std::mem::take(&mut *made.lock().map_err(|_| "poisoned")?);
        eprintln!(
            "generated {} RSA-2048 keys in {:.1} s",
            made.len(),
            t.elapsed().as_secs_f64()
        );
        keys.extend(made);
        if let Some(path) = file {
            let mut pem = Vec::new();
            for k in &keys {
                pem.extend_from_slice(&k.private_key_to_pem_pkcs8()?);
            }
            fs::write(path, pem)?;
        }
    }
    Ok(keys)
}

/// One prepared unit of work.
struct Job {
    sid: String,
    key: usize,
    csr: Vec<u8>,
    /// The certificate for submit mode, enrolled before the timed phase.
    cert: Vec<u8>,
    /// The root the CA returned with it (submit mode checks Blackboard's
    /// signed offer and receipt against it, as the client does).
    root: Vec<u8>,
}

fn make_jobs(n: usize, first_sid: u64, keys: &[PKey<Private>]) -> Result<Vec<Job>, BoxError> {
    let t = Instant::now();
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let sid = (first_sid + i as u64).to_string();
        let key = i % keys.len();
        let csr = client::make_csr(&sid, &keys[key])?;
        jobs.push(Job {
            sid,
            key,
            csr,
            cert: Vec::new(),
            root: Vec::new(),
        });
    }
    eprintln!("prepared {n} CSRs in {:.1} s", t.elapsed().as_secs_f64());
    Ok(jobs)
}

/// What one worker thread measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn record<T, E: std::fmt::Display>(&mut self, started: Instant, r: Result<T, E>) {
        match r {
            Ok(_) => self
                .latencies_us
                .push(started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64),
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 3 {
                    self.first_errors.push(e.to_string());
                }
            }
        }
    }
}

/// Shared schedule of the timed phase: a ticket counter and the bounds.
struct Schedule {
    next: AtomicUsize,
    count: usize,
    end: Instant,
}

impl Schedule {
    /// The next operation's number, or None when the run is over.
    fn ticket(&self) -> Option<usize> {
        if Instant::now() >= self.end {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.count).then_some(i)
    }
}

/// A CA connection kept for several enrollments: one `CaHello` when it
/// opens, then one `CertRequest` per enrollment, each bound to the last
/// `CertIssued`'s next nonce (kept by the session), so an enrollment
/// costs the same however long the connection has been in use.
struct CaConn {
    conn: FramedStream,
    session: client::CaSession,
    used: u32,
}

/// One enrollment, on the thread's open CA connection when it may carry
/// more (`per_connection`), else on a new one.
fn enroll_once(
    slot: &mut Option<CaConn>,
    ca: &str,
    timeout: Duration,
    per_connection: u32,
    csr: &[u8],
) -> Result<(), BoxError> {
    let c = match slot {
        Some(c) if c.used < per_connection => c,
        _ => {
            let mut conn = FramedStream::connect(ca, timeout)?;
            let session = client::CaSession::open(&mut conn)?;
            slot.insert(CaConn {
                conn,
                session,
                used: 0,
            })
        }
    };
    c.used += 1;
    let result = c
        .session
        .request(&mut c.conn, csr.to_vec(), EnrollAuth::Open);
    let cert = match result {
        Ok(answer) => answer.cert_der,
        Err(e) => {
            *slot = None;
            return Err(e.into());
        }
    };
    if cert.is_empty() {
        return Err("empty certificate".into());
    }
    Ok(())
}

fn submit_once(
    bb: &str,
    timeout: Duration,
    job: &Job,
    key: &PKey<Private>,
) -> Result<(), BoxError> {
    let mut conn = FramedStream::connect(bb, timeout)?;
    let report = crypto::lab_report(&job.sid);
    // Protocol version 2, as the client submits: the offer's signature
    // and the signed receipt are checked, so the figures include them.
    let trust = client::BlackboardTrust {
        root: openssl::x509::X509::from_der(&job.root)?,
        name: certboard::ca::DEFAULT_BLACKBOARD_NAME.into(),
    };
    client::submit(
        &mut conn,
        &job.sid,
        &job.cert,
        key,
        CipherId::Aes256Ctr,
        &report,
        &trust,
        &mut |_| {},
    )?;
    Ok(())
}

/// A minimal HTTP/1.1 keep-alive client for cfssl's sign endpoint.
struct HttpConn {
    stream: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
    /// Requests sent on it.
    used: u32,
    /// The server said it closes after its last answer.
    closed: bool,
}

impl HttpConn {
    fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<HttpConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            addr,
            buf: Vec::new(),
            used: 0,
            closed: false,
        })
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Result<Vec<u8>, BoxError> {
        self.post_as(path, "application/json", body)
    }

    fn post_as(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, BoxError> {
        self.used += 1;
        self.stream
            .write_all(&http_post_request_as(self.addr, path, content_type, body))?;
        let response = loop {
            if let Some(r) = parse_http_response(&self.buf)? {
                break r;
            }
            self.fill()?;
        };
        self.buf.drain(..response.consumed);
        self.closed = response.closes;
        response.into_body()
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// The bytes of one HTTP/1.1 keep-alive POST of a JSON body.
fn http_post_request(addr: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    http_post_request_as(addr, path, "application/json", body)
}

/// The bytes of one HTTP/1.1 keep-alive POST of a body of `content_type`.
fn http_post_request_as(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    req
}

/// A response buffered past this without being whole is refused (cfssl's
/// answers are a few KiB).
const MAX_HTTP_RESPONSE: usize = 1 << 20;

/// One whole HTTP response, parsed off the front of a buffer.
struct HttpResponse {
    /// Bytes of the buffer it took (headers and body).
    consumed: usize,
    /// The status line, lowercased.
    status: String,
    body: Vec<u8>,
    /// The server closes the connection after it (HTTP/1.0, or
    /// `Connection: close`).
    closes: bool,
}

impl HttpResponse {
    /// The body of a 200 response; any other status is an error.
    fn into_body(self) -> Result<Vec<u8>, BoxError> {
        if !(self.status.starts_with("http/1.1 200") || self.status.starts_with("http/1.0 200")) {
            return Err(format!("HTTP {}", self.status).into());
        }
        Ok(self.body)
    }
}

/// The response at the front of `buf`: `Ok(None)` while it is not whole yet.
/// The body is delimited by Content-Length or chunked encoding.
fn parse_http_response(buf: &[u8]) -> Result<Option<HttpResponse>, BoxError> {
    let incomplete = || -> Result<Option<HttpResponse>, BoxError> {
        if buf.len() > MAX_HTTP_RESPONSE {
            return Err(format!("HTTP response over {MAX_HTTP_RESPONSE} bytes").into());
        }
        Ok(None)
    };
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return incomplete();
    };
    let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let rest = &buf[end + 4..];
    let (body, used) = if let Some(len) = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let len: usize = len.trim().parse()?;
        match rest.get(..len) {
            Some(body) => (body.to_vec(), len),
            None => return incomplete(),
        }
    } else if headers.contains("transfer-encoding: chunked") {
        match parse_chunked(rest)? {
            Some(whole) => whole,
            None => return incomplete(),
        }
    } else {
        return Err("HTTP response without a length".into());
    };
    let status = headers.lines().next().unwrap_or_default().to_string();
    let closes = status.starts_with("http/1.0")
        || headers
            .lines()
            .any(|l| l.replace(' ', "") == "connection:close");
    Ok(Some(HttpResponse {
        consumed: end + 4 + used,
        status,
        body,
        closes,
    }))
}

/// A chunked body at the front of `buf` (no trailers): the body and the
/// bytes it took, or `Ok(None)` while it is not whole yet.
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, BoxError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&buf[pos..pos + line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        let start = pos + line_end + 2;
        let next = start
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or("HTTP chunk size overflows")?;
        if buf.len() < next {
            return Ok(None);
        }
        body.extend_from_slice(&buf[start..start + size]);
        pos = next;
        if size == 0 {
            return Ok(Some((body, pos)));
        }
    }
}

/// A successful OCSPResponse: SEQUENCE { ENUMERATED 0, [0] ... }.
fn check_ocsp_body(body: &[u8]) -> Result<(), BoxError> {
    let response = openssl::ocsp::OcspResponse::from_der(body)?;
    if response.status() != openssl::ocsp::OcspResponseStatus::SUCCESSFUL {
        return Err(format!("OCSP answer status {:?}", response.status()).into());
    }
    Ok(())
}

/// cfssl answers 200 with `"success":true` when it signed.
fn check_cfssl_body(body: &[u8]) -> Result<(), BoxError> {
    if find(body, b"\"success\":true").is_none() {
        return Err(format!("cfssl refused: {}", String::from_utf8_lossy(body)).into());
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The JSON body of a cfssl sign request for one CSR.
fn cfssl_body(csr_der: &[u8]) -> Result<Vec<u8>, BoxError> {
    let req = openssl::x509::X509Req::from_der(csr_der)?;
    let pem = String::from_utf8(req.to_pem()?)?;
    Ok(format!(
        "{{\"certificate_request\":\"{}\"}}",
        pem.replace('\n', "\\n")
    )
    .into_bytes())
}

/// What the timed phase needs, shared by both I/O modes.
struct Plan {
    mode: Mode,
    target: SocketAddr,
    ca: String,
    blackboard: String,
    timeout: Duration,
    per_connection: u32,
    concurrency: u32,
    jobs: Arc<Vec<Job>>,
    keys: Arc<Vec<PKey<Private>>>,
    bodies: Arc<Vec<Vec<u8>>>,
    ocsp_path: String,
}

/// `--io threads`: one blocking connection per thread.
fn run_threads(plan: &Plan, schedule: &Arc<Schedule>) -> Result<Vec<Tally>, BoxError> {
    let mut handles = Vec::new();
    for _ in 0..plan.concurrency {
        let schedule = schedule.clone();
        let jobs = plan.jobs.clone();
        let keys = plan.keys.clone();
        let bodies = plan.bodies.clone();
        let ca = plan.ca.clone();
        let bb = plan.blackboard.clone();
        let ocsp_path = plan.ocsp_path.clone();
        let (mode, target, timeout, per_connection) =
            (plan.mode, plan.target, plan.timeout, plan.per_connection);
        handles.push(std::thread::spawn(move || {
            let mut tally = Tally::default();
            let mut http: Option<HttpConn> = None;
            let mut ca_conn: Option<CaConn> = None;
            while let Some(i) = schedule.ticket() {
                let job = &jobs[i % jobs.len()];
                let t = Instant::now();
                match mode {
                    Mode::Enroll => tally.record(
                        t,
                        enroll_once(&mut ca_conn, &ca, timeout, per_connection, &job.csr),
                    ),
                    Mode::Submit => tally.record(t, submit_once(&bb, timeout, job, &keys[job.key])),
                    Mode::Cfssl => {
                        let r = (|| -> Result<(), BoxError> {
                            let conn = match &mut http {
                                Some(c) => c,
                                None => http.insert(HttpConn::connect(target, timeout)?),
                            };
                            check_cfssl_body(
                                &conn.post(CFSSL_SIGN_PATH, &bodies[i % bodies.len()])?,
                            )
                        })();
                        if r.is_err() {
                            http = None;
                        }
                        tally.record(t, r)
                    }
                    Mode::Ocsp => {
                        let r = (|| -> Result<(), BoxError> {
                            let fresh = match &http {
                                Some(c) => c.closed || c.used >= per_connection,
                                None => true,
                            };
                            if fresh {
                                http = Some(HttpConn::connect(target, timeout)?);
                            }
                            let conn = http.as_mut().ok_or("no connection")?;
                            check_ocsp_body(&conn.post_as(
                                &ocsp_path,
                                "application/ocsp-request",
                                &bodies[0],
                            )?)
                        })();
                        if r.is_err() {
                            http = None;
                        }
                        tally.record(t, r)
                    }
                    Mode::Keys => {}
                }
            }
            tally
        }));
    }
    handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "worker thread panicked".into()))
        .collect()
}

/// Where one event-driven connection is in its current operation.
enum Phase {
    /// The non-blocking connect has not completed yet.
    Connecting,
    /// Writing the request; `sent` bytes of it are out.
    Sending { sent: usize },
    /// Reading the reply.
    Receiving,
}

/// One non-blocking connection of `--io events`.
struct EventConn {
    stream: mio::net::TcpStream,
    phase: Phase,
    inbuf: Vec<u8>,
    decoder: Decoder,
    /// Operations started on this connection.
    used: u32,
    /// The server said it closes after its last answer (HTTP responders).
    closes: bool,
}

/// One of the `--concurrency` slots: the operation in flight and the
/// connection carrying it (None until connected, and after an error).
struct Slot {
    conn: Option<EventConn>,
    /// The current request's bytes.
    request: Vec<u8>,
    /// When the current operation began (before its connect, if any), as
    /// the thread mode measures it.
    started: Instant,
    /// No progress by then: the operation fails and the connection goes.
    deadline: Instant,
    /// False once the schedule has no more tickets for this slot.
    active: bool,
}

/// How far one drive of a slot got.
enum Progress {
    /// Waiting for the socket.
    Pending,
    /// The reply is whole and correct.
    Done,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// `--io events`: one thread, one `mio::Poll`, `--concurrency` non-blocking
/// connections each running send request → read the whole reply → next,
/// so that the server's send does not pay for waking a client thread per
/// connection (a loopback artifact: on a network the server never pays for
/// waking its client).
struct EventDriver<'a> {
    plan: &'a Plan,
    schedule: &'a Schedule,
    poll: Poll,
    slots: Vec<Slot>,
    tally: Tally,
}

impl EventDriver<'_> {
    /// Takes the slot's next ticket and prepares its request; the slot goes
    /// inactive (its connection closed) when the schedule is over.
    fn next_op(&mut self, s: usize) {
        let Some(i) = self.schedule.ticket() else {
            self.close(s);
            self.slots[s].active = false;
            return;
        };
        let plan = self.plan;
        let request = match plan.mode {
            Mode::Cfssl => http_post_request(
                plan.target,
                CFSSL_SIGN_PATH,
                &plan.bodies[i % plan.bodies.len()],
            ),
            Mode::Ocsp => http_post_request_as(
                plan.target,
                &plan.ocsp_path,
                "application/ocsp-request",
                &plan.bodies[0],
            ),
            // Open enrollment binds nothing to the nonce, so a request's
            // bytes do not depend on the last CertIssued's next_nonce;
            // a new connection's first request goes after its CaHello.
            _ => framing::frame(
                &Message::CertRequest {
                    csr_der: plan.jobs[i % plan.jobs.len()].csr.clone(),
                    auth: EnrollAuth::Open,
                }
                .encode(),
            ),
        };
        let now = Instant::now();
        let slot = &mut self.slots[s];
        slot.request = request;
        slot.started = now;
        slot.deadline = now + plan.timeout;
        // Enrollments reconnect after --per-connection, as the thread mode
        // does; cfssl keeps its keep-alive connection until an error.
        let spent = matches!(plan.mode, Mode::Enroll | Mode::Ocsp)
            && slot
                .conn
                .as_ref()
                .is_some_and(|c| c.used >= plan.per_connection || c.closes);
        if spent {
            self.close(s);
        }
        if plan.mode == Mode::Enroll && self.slots[s].conn.is_none() {
            let mut hello = framing::frame(
                &Message::CaHello {
                    version: PROTOCOL_VERSION,
                }
                .encode(),
            );
            hello.append(&mut self.slots[s].request);
            self.slots[s].request = hello;
        }
        if let Some(c) = &mut self.slots[s].conn {
            c.used += 1;
            c.phase = Phase::Sending { sent: 0 };
        }
    }

    fn close(&mut self, s: usize) {
        if let Some(mut c) = self.slots[s].conn.take() {
            // Dropping closes the socket anyway; deregistering first is
            // what mio asks for.
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Drives slot `s` as far as its socket allows, finishing operations
    /// and starting the next ones, until it must wait.
    fn service(&mut self, s: usize) {
        while self.slots[s].active {
            match self.advance(s) {
                Ok(Progress::Pending) => return,
                Ok(Progress::Done) => {
                    self.tally
                        .record(self.slots[s].started, Ok::<(), BoxError>(()));
                    self.next_op(s);
                }
                Err(e) => self.fail(s, e),
            }
        }
    }

    /// The operation in flight on `s` failed: counted, the connection
    /// replaced on the next operation.
    fn fail(&mut self, s: usize, e: BoxError) {
        self.tally.record(self.slots[s].started, Err::<(), _>(e));
        self.close(s);
        self.next_op(s);
    }

    fn advance(&mut self, s: usize) -> Result<Progress, BoxError> {
        let plan = self.plan;
        if self.slots[s].conn.is_none() {
            let mut stream = mio::net::TcpStream::connect(plan.target)?;
            self.poll.registry().register(
                &mut stream,
                Token(s),
                // Edge-triggered: both interests stay registered for the
                // connection's life; a readiness that finds nothing to do
                // costs one WouldBlock.
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.slots[s].conn = Some(EventConn {
                stream,
                phase: Phase::Connecting,
                inbuf: Vec::new(),
                decoder: Decoder::new(framing::DEFAULT_MAX_FRAME),
                used: 1,
                closes: false,
            });
        }
        let slot = &mut self.slots[s];
        let Some(conn) = slot.conn.as_mut() else {
            return Err("no connection".into());
        };
        loop {
            match conn.phase {
                Phase::Connecting => {
                    if let Some(e) = conn.stream.take_error()? {
                        return Err(format!("connecting to {}: {e}", plan.target).into());
                    }
                    match conn.stream.peer_addr() {
                        Ok(_) => {
                            conn.stream.set_nodelay(true)?;
                            slot.deadline = Instant::now() + plan.timeout;
                            conn.phase = Phase::Sending { sent: 0 };
                        }
                        Err(e)
                            if e.kind() == io::ErrorKind::NotConnected
                                || would_block(&e)
                                || interrupted(&e) =>
                        {
                            return Ok(Progress::Pending)
                        }
                        Err(e) => return Err(format!("connecting to {}: {e}", plan.target).into()),
                    }
                }
                Phase::Sending { sent } => {
                    let Some(rest) = slot.request.get(sent..).filter(|r| !r.is_empty()) else {
                        conn.phase = Phase::Receiving;
                        continue;
                    };
                    match conn.stream.write(rest) {
                        Ok(0) => return Err("sending: the connection wrote nothing".into()),
                        Ok(n) => {
                            slot.deadline = Instant::now() + plan.timeout;
                            conn.phase = Phase::Sending { sent: sent + n };
                        }
                        Err(e) if would_block(&e) => return Ok(Progress::Pending),
                        Err(e) if interrupted(&e) => {}
                        Err(e) => return Err(format!("sending to {}: {e}", plan.target).into()),
                    }
                }
                Phase::Receiving => {
                    if reply_is_whole(plan.mode, conn)? {
                        return Ok(Progress::Done);
                    }
                    let mut chunk = [0u8; 16 * 1024];
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => {
                            return Err(format!(
                                "reading from {}: the server closed the connection",
                                plan.target
                            )
                            .into())
                        }
                        Ok(n) => {
                            slot.deadline = Instant::now() + plan.timeout;
                            conn.inbuf.extend_from_slice(&chunk[..n]);
                        }
                        Err(e) if would_block(&e) => return Ok(Progress::Pending),
                        Err(e) if interrupted(&e) => {}
                        Err(e) => return Err(format!("reading from {}: {e}", plan.target).into()),
                    }
                }
            }
        }
    }
}

/// Whether `conn`'s input holds the whole reply (taken off the buffer), and
/// whether it is a success, with the same checks as the thread mode.
fn reply_is_whole(mode: Mode, conn: &mut EventConn) -> Result<bool, BoxError> {
    match mode {
        Mode::Cfssl => {
            let Some(response) = parse_http_response(&conn.inbuf)? else {
                return Ok(false);
            };
            conn.inbuf.drain(..response.consumed);
            check_cfssl_body(&response.into_body()?)?;
            Ok(true)
        }
        Mode::Ocsp => {
            let Some(response) = parse_http_response(&conn.inbuf)? else {
                return Ok(false);
            };
            conn.inbuf.drain(..response.consumed);
            conn.closes = response.closes;
            check_ocsp_body(&response.into_body()?)?;
            Ok(true)
        }
        _ => loop {
            let Some(frame) = conn.decoder.decode(&mut conn.inbuf)? else {
                return Ok(false);
            };
            match Message::decode(&frame)? {
                // A new connection's challenge: its certificate follows.
                Message::CaChallenge {
                    version: PROTOCOL_VERSION,
                    ..
                } => continue,
                Message::CertIssued { cert_der, .. } if !cert_der.is_empty() => return Ok(true),
                Message::CertIssued { .. } => return Err("empty certificate".into()),
                Message::Error { reason, .. } => {
                    return Err(format!("refused by the server: {reason}").into())
                }
                other => {
                    return Err(format!(
                        "protocol error: expected CertIssued, got {}",
                        other.name()
                    )
                    .into())
                }
            }
        },
    }
}

fn run_events(plan: &Plan, schedule: &Schedule, poll: Poll) -> Result<Vec<Tally>, BoxError> {
    let now = Instant::now();
    let mut driver = EventDriver {
        plan,
        schedule,
        poll,
        slots: (0..plan.concurrency)
            .map(|_| Slot {
                conn: None,
                request: Vec::new(),
                started: now,
                deadline: now + plan.timeout,
                active: true,
            })
            .collect(),
        tally: Tally::default(),
    };
    let n = driver.slots.len();
    for s in 0..n {
        driver.next_op(s);
        driver.service(s);
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let Some(next_deadline) = driver
            .slots
            .iter()
            .filter(|s| s.active)
            .map(|s| s.deadline)
            .min()
        else {
            break; // every slot is done
        };
        let wait = next_deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        match driver.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e.into()),
        }
        for event in events.iter() {
            let s = event.token().0;
            // Events are hints (possibly for a connection this slot has
            // since replaced): the drive finds out what is really ready.
            if s < n {
                driver.service(s);
            }
        }
        let now = Instant::now();
        for s in 0..n {
            let slot = &driver.slots[s];
            if slot.active && now >= slot.deadline {
                let what = match slot.conn.as_ref().map(|c| &c.phase) {
                    None | Some(Phase::Connecting) => "connecting",
                    Some(Phase::Sending { .. }) => "sending",
                    Some(Phase::Receiving) => "waiting for the reply",
                };
                let e = format!(
                    "{what}: no progress for {:.1} s",
                    plan.timeout.as_secs_f64()
                );
                driver.fail(s, e.into());
                driver.service(s);
            }
        }
    }
    Ok(vec![driver.tally])
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

fn run(cli: Cli) -> Result<(), BoxError> {
    if !(cli.duration.is_finite() && cli.duration > 0.0 && cli.duration <= 3600.0) {
        return Err("--duration must be between 0 and 3600 seconds".into());
    }
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout <= 600.0) {
        return Err("--timeout must be between 0 and 600 seconds".into());
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    if cli.mode == Mode::Keys {
        let keys = load_or_make_keys(cli.keys as usize, cli.key_file.as_deref())?;
        println!("{{\"mode\":\"keys\",\"keys\":{}}}", keys.len());
        return Ok(());
    }
    if cli.io == Io::Events && cli.mode == Mode::Submit {
        return Err(
            "--io events drives enroll and cfssl only: use --io threads with --mode submit".into(),
        );
    }
    let target = match cli.mode {
        Mode::Enroll => loopback_only(&cli.ca, WHO)?,
        Mode::Submit => {
            loopback_only(&cli.ca, WHO)?;
            loopback_only(&cli.blackboard, WHO)?
        }
        Mode::Cfssl | Mode::Keys => loopback_only(&cli.cfssl, WHO)?,
        Mode::Ocsp => loopback_only(&cli.ocsp, WHO)?,
    };
    let count = cli.count.map_or(usize::MAX, |c| c as usize);
    let keys = load_or_make_keys(cli.keys as usize, cli.key_file.as_deref())?;
    // Enroll and cfssl cycle through the pool; submit uses each job (and
    // so each certificate) once.
    let pool = count.min(cli.pool as usize);
    let mut jobs = make_jobs(pool, cli.first_sid, &keys)?;
    let bodies: Vec<Vec<u8>> = if cli.mode == Mode::Ocsp {
        let path = cli
            .ocsp_request
            .as_deref()
            .ok_or("--mode ocsp needs --ocsp-request FILE (openssl ocsp -reqout)")?;
        vec![fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?]
    } else if cli.mode == Mode::Cfssl {
        jobs.iter()
            .map(|j| cfssl_body(&j.csr))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    if cli.mode == Mode::Submit {
        let t = Instant::now();
        // Enrolled concurrently (the CA acknowledges after a durable
        // commit, so one at a time would wait on every fsync).
        let ca = cli.ca.clone();
        let chunk = jobs.len().div_ceil(cli.concurrency as usize).max(1);
        std::thread::scope(|scope| -> Result<(), BoxError> {
            let mut handles = Vec::new();
            for part in jobs.chunks_mut(chunk) {
                let ca = ca.clone();
                handles.push(scope.spawn(move || -> Result<(), BoxError> {
                    for job in part {
                        let mut conn = FramedStream::connect(&ca, timeout)?;
                        let mut session = client::CaSession::open(&mut conn)?;
                        let answer =
                            session.request(&mut conn, job.csr.clone(), EnrollAuth::Open)?;
                        (job.cert, job.root) = (answer.cert_der, answer.ca_cert_der);
                    }
                    Ok(())
                }));
            }
            for h in handles {
                h.join().map_err(|_| "enrollment thread panicked")??;
            }
            Ok(())
        })?;
        eprintln!(
            "enrolled {} certificates (one per submission) in {:.1} s",
            jobs.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let count = match cli.mode {
        Mode::Submit => pool,
        _ => count,
    };
    let plan = Plan {
        mode: cli.mode,
        target,
        ca: cli.ca.clone(),
        blackboard: cli.blackboard.clone(),
        timeout,
        per_connection: cli.per_connection,
        concurrency: cli.concurrency,
        jobs: Arc::new(jobs),
        keys: Arc::new(keys),
        bodies: Arc::new(bodies),
        ocsp_path: cli.ocsp_path.clone(),
    };
    let poll = match cli.io {
        Io::Events => Some(Poll::new()?),
        Io::Threads => None,
    };

    let cpu_before = cli.server_pid.map(cpu_time).transpose()?;
    let own_before = cpu_time(std::process::id())?;
    let start = Instant::now();
    let schedule = Arc::new(Schedule {
        next: AtomicUsize::new(0),
        count,
        end: start + Duration::from_secs_f64(cli.duration),
    });
    let tallies = match poll {
        Some(poll) => run_events(&plan, &schedule, poll)?,
        None => run_threads(&plan, &schedule)?,
    };
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut first_errors = Vec::new();
    for t in tallies {
        latencies.extend(t.latencies_us);
        errors += t.errors;
        first_errors.extend(t.first_errors);
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = cli.server_pid.map(cpu_time).transpose()?;
    let own_cpu = cpu_time(std::process::id())?
        .saturating_sub(own_before)
        .as_secs_f64();
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let rate = ops as f64 / seconds;
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
    );
    println!(
        "{}: {ops} ok, {errors} errors in {seconds:.2} s with {} connections ({} I/O): {rate:.0}/s",
        cli.mode.name(),
        cli.concurrency,
        cli.io.name()
    );
    println!("latency: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
    for e in first_errors.iter().take(3) {
        println!("error: {e}");
    }
    println!(
        "load generator CPU: {own_cpu:.2} s ({:.0}% of one core)",
        own_cpu / seconds * 100.0
    );
    let mut extra = format!(",\"loadgen_cpu_s\":{own_cpu:.3}");
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        let cpu = a.saturating_sub(b).as_secs_f64();
        let per_op = if ops > 0 { cpu / ops as f64 * 1e6 } else { 0.0 };
        println!(
            "server CPU: {:.2} s over the run, {per_op:.1} µs per operation",
            cpu
        );
        extra.push_str(&format!(
            ",\"server_cpu_s\":{cpu:.3},\"server_cpu_us_per_op\":{per_op:.1}"
        ));
    }
    println!(
        "{{\"mode\":\"{}\",\"io\":\"{}\",\"label\":\"{}\",\"concurrency\":{},\"ops\":{ops},\"seconds\":{seconds:.3},\"ops_per_sec\":{rate:.1},\"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3},\"max_ms\":{max:.3},\"errors\":{errors}{extra}}}",
        cli.mode.name(),
        cli.io.name(),
        cli.label.replace(['"', '\\'], ""),
        cli.concurrency
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&us, 50.0), 50.0);
        assert_eq!(percentile(&us, 99.0), 99.0);
        assert_eq!(percentile(&us, 100.0), 100.0);
        assert_eq!(percentile(&[7000], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn http_response_is_whole_only_with_its_whole_body() -> Result<(), BoxError> {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT";
        for cut in [10, 38, 42] {
            assert!(parse_http_response(&whole[..cut])?.is_none(), "{cut}");
        }
        let r = parse_http_response(whole)?.ok_or("incomplete")?;
        assert_eq!(r.consumed, whole.len() - 4);
        assert_eq!(r.into_body()?, b"hello");
        Ok(())
    }

    #[test]
    fn http_chunked_response_is_reassembled() -> Result<(), BoxError> {
        let whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        assert!(parse_http_response(&whole[..whole.len() - 1])?.is_none());
        let r = parse_http_response(whole)?.ok_or("incomplete")?;
        assert_eq!(r.consumed, whole.len());
        assert_eq!(r.into_body()?, b"abcde");
        Ok(())
    }

    #[test]
    fn http_error_status_and_unbounded_response_are_errors() -> Result<(), BoxError> {
        let r = parse_http_response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?
            .ok_or("incomplete")?;
        assert!(r.into_body().is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_http_response(&vec![b'x'; MAX_HTTP_RESPONSE + 1]).is_err());
        Ok(())
    }

    #[test]
    fn cfssl_body_carries_the_csr_as_escaped_pem() -> Result<(), BoxError> {
        let key = client::make_key(KeyType::Rsa2048)?;
        let body = String::from_utf8(cfssl_body(&client::make_csr("x", &key)?)?)?;
        assert!(
            body.starts_with("{\"certificate_request\":\"-----BEGIN CERTIFICATE REQUEST-----\\n")
        );
        assert!(!body.contains('\n'));
        Ok(())
    }
}
