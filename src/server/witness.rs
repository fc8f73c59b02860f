//! `server witness run`: the HTTP front of a [`Witness`] — one small mio
//! loop on one thread, serving `POST <prefix>/add-checkpoint` (C2SP
//! `tlog-witness`). The request codec is the HTTP listener's
//! ([`crate::ops::http`]); the judging is [`Witness::add_checkpoint`].
//!
//! Nothing a client does stalls the others for long: a request's head
//! and body are bounded (8 KiB, 16 KiB), every connection has a deadline
//! for its next whole request (reset after each answer), connections are
//! capped (more are closed at once), and a client that does not read its
//! answers stops being read. The one slow step is the witness's own: the
//! fsync of its state before a cosignature, which is the point.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::ops::http::{HttpLimits, Method, RequestDecoder, Response, CONTINUE};
use crate::tlog::witness::{Witness, ADD_CHECKPOINT, MAX_BODY};

/// The witness's state file in its data dir.
pub const STATE_FILE: &str = "witness-state";

/// Creates `dir` (mode 0700) if it is missing.
pub fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    crate::fsutil::create_private_dir_all(dir)
}

/// Limits of the witness's HTTP front.
#[derive(Debug, Clone, Copy)]
pub struct WitnessLimits {
    /// Most open connections; more are closed as they come.
    pub max_connections: usize,
    /// Most open connections from one source (an IPv4 address, an IPv6
    /// /64), so that one flooding host cannot take every slot.
    pub max_per_source: usize,
    /// Time a connection has for each whole request (from its start, or
    /// from the previous answer).
    pub request_timeout: Duration,
    /// Most requests on one connection.
    pub max_requests: u32,
}

impl Default for WitnessLimits {
    fn default() -> Self {
        WitnessLimits {
            max_connections: 256,
            max_per_source: 32,
            request_timeout: Duration::from_secs(10),
            max_requests: 1000,
        }
    }
}

const LISTENER: Token = Token(0);
/// Unread input kept per connection: one whole request at most.
const MAX_INPUT: usize = 8 * 1024 + MAX_BODY;
/// Answers waiting for a client that does not read: past this, its input
/// is left unread.
const MAX_OUTPUT: usize = 64 * 1024;
/// How long a closing connection's leftover input is read and dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How often the loop wakes to expire connections and see `stop`.
const TICK: Duration = Duration::from_millis(100);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests and answering them.
    Open,
    /// The client closed its side: what it sent is answered, then the
    /// connection closes.
    PeerClosed,
    /// Its last answer is queued (`Connection: close`, or an error's).
    LastAnswer,
    /// Its last answer is written; leftover input is read and dropped
    /// (see [`WitnessServer::linger`]).
    Lingering,
}

struct Conn {
    token: Token,
    /// What it counts against in [`Conns::per_source`].
    source: String,
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    decoder: RequestDecoder,
    deadline: Instant,
    requests: u32,
    phase: Phase,
    /// `100 Continue` was sent for the request being read.
    continue_sent: bool,
}

/// The open connections, and how many each source holds.
#[derive(Default)]
struct Conns {
    map: HashMap<Token, Conn>,
    per_source: HashMap<String, usize>,
}

impl Conns {
    fn insert(&mut self, c: Conn) {
        *self.per_source.entry(c.source.clone()).or_default() += 1;
        self.map.insert(c.token, c);
    }

    /// Removes it (its source's count with it); the caller deregisters.
    fn remove(&mut self, token: &Token) -> Option<Conn> {
        let c = self.map.remove(token)?;
        if let Some(n) = self.per_source.get_mut(&c.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.source);
            }
        }
        Some(c)
    }

    fn of_source(&self, source: &str) -> usize {
        self.per_source.get(source).copied().unwrap_or(0)
    }
}

/// What a connection over a limit is told before it is closed (best
/// effort: it is not waited for).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; \
charset=utf-8\r\nContent-Length: 40\r\nConnection: close\r\n\r\n\
the witness has too many connections now\n";

/// A bound witness, ready to run.
pub struct WitnessServer {
    poll: Poll,
    listener: TcpListener,
    addr: SocketAddr,
    witness: Arc<Witness>,
    prefix: String,
    limits: WitnessLimits,
}

impl std::fmt::Debug for WitnessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessServer")
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl WitnessServer {
    /// Binds `addr`, serving `witness` at `<prefix>/add-checkpoint`
    /// (`prefix` empty or starting with `/`, no trailing `/`).
    pub fn bind(
        addr: SocketAddr,
        witness: Arc<Witness>,
        prefix: &str,
        limits: WitnessLimits,
    ) -> io::Result<WitnessServer> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let addr = listener.local_addr()?;
        Ok(WitnessServer {
            poll,
            listener,
            addr,
            witness,
            prefix: prefix.trim_end_matches('/').to_string(),
            limits,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut conns = Conns::default();
        let mut next = 1usize;
        while !stop.load(Ordering::Relaxed) {
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept(&mut conns, &mut next);
                    continue;
                }
                let token = ev.token();
                let done = match conns.map.get_mut(&token) {
                    Some(c) => !self.service(c),
                    None => false,
                };
                if done {
                    if let Some(mut c) = conns.remove(&token) {
                        let _ = self.poll.registry().deregister(&mut c.stream);
                    }
                }
            }
            let now = Instant::now();
            let expired: Vec<Token> = conns
                .map
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(t, _)| *t)
                .collect();
            for t in expired {
                if let Some(mut c) = conns.remove(&t) {
                    log::debug!("witness: a connection passed its deadline; closed");
                    let _ = self.poll.registry().deregister(&mut c.stream);
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, conns: &mut Conns, next: &mut usize) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: try again on the next event.
                    log::warn!("witness: accept failed: {e}");
                    return;
                }
            };
            // One source: an IPv4 address or an IPv6 /64, as code guesses
            // are counted.
            let source = crate::course::guess_source(peer.ip());
            if conns.of_source(&source) >= self.limits.max_per_source {
                log::warn!("witness: {peer}: too many connections from {source}; closed");
                let _ = stream.write(BUSY);
                continue;
            }
            if conns.map.len() >= self.limits.max_connections && !self.evict_oldest(conns) {
                log::warn!("witness: {peer}: too many connections; closed");
                let _ = stream.write(BUSY);
                continue;
            }
            *next = next.wrapping_add(1).max(1);
            let token = Token(*next);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                continue;
            }
            conns.insert(Conn {
                token,
                source,
                stream,
                input: Vec::new(),
                output: Vec::new(),
                decoder: RequestDecoder::new(HttpLimits {
                    max_head: 8 * 1024,
                    max_headers: 32,
                    max_body: MAX_BODY,
                }),
                deadline: Instant::now() + self.limits.request_timeout,
                requests: 0,
                phase: Phase::Open,
                continue_sent: false,
            });
        }
    }

    /// At the cap, the connection that has waited longest for its next
    /// request (the earliest deadline) makes room: idle and trickling
    /// connections from many sources then cannot keep a new one out until
    /// they time out; a log's request, which takes a round trip, is the
    /// newest and goes last. `false` if none is waiting for a request.
    fn evict_oldest(&self, conns: &mut Conns) -> bool {
        let oldest = conns
            .map
            .values()
            .filter(|c| c.phase == Phase::Open && c.output.is_empty())
            .min_by_key(|c| c.deadline)
            .map(|c| c.token);
        let Some(token) = oldest else {
            return false;
        };
        if let Some(mut c) = conns.remove(&token) {
            log::info!("witness: connections at the cap; the one waiting longest closed");
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        true
    }

    /// Reads, answers and writes what it can; `false`: close it.
    fn service(&self, c: &mut Conn) -> bool {
        if c.phase == Phase::Lingering {
            return self.linger(c);
        }
        loop {
            let mut progressed = false;
            // Read while there is room (edge-triggered: until WouldBlock).
            let mut buf = [0u8; 4096];
            while c.phase == Phase::Open && c.input.len() < MAX_INPUT && c.output.len() < MAX_OUTPUT
            {
                let room = (MAX_INPUT - c.input.len()).min(buf.len());
                match c.stream.read(&mut buf[..room]) {
                    Ok(0) => c.phase = Phase::PeerClosed,
                    Ok(n) => {
                        c.input.extend_from_slice(&buf[..n]);
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            while matches!(c.phase, Phase::Open | Phase::PeerClosed) && c.output.len() < MAX_OUTPUT
            {
                match c.decoder.decode(&mut c.input) {
                    Ok(Some(req)) => {
                        c.requests += 1;
                        c.continue_sent = false;
                        let mut resp = self.answer(&req.method, req.path(), &req.body);
                        if !req.keep_alive || c.requests >= self.limits.max_requests {
                            resp = resp.close();
                        }
                        if resp.close {
                            c.phase = Phase::LastAnswer;
                        }
                        resp.encode(req.method, &mut c.output);
                        c.deadline = Instant::now() + self.limits.request_timeout;
                        progressed = true;
                    }
                    Ok(None) => {
                        // curl asks before sending a body over 1 KiB (a
                        // proof of a few lines and a checkpoint): without
                        // the go-ahead it waits a second first.
                        if c.decoder.awaiting_continue() && !c.continue_sent {
                            c.output.extend_from_slice(CONTINUE);
                            c.continue_sent = true;
                        }
                        break;
                    }
                    Err(e) => {
                        e.response().encode(Method::Get, &mut c.output);
                        c.phase = Phase::LastAnswer;
                    }
                }
            }
            while !c.output.is_empty() {
                match c.stream.write(&c.output) {
                    Ok(0) => return false,
                    Ok(n) => {
                        c.output.drain(..n);
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            if c.output.is_empty() {
                match c.phase {
                    Phase::PeerClosed => return false,
                    Phase::LastAnswer | Phase::Lingering => return self.linger(c),
                    Phase::Open => {}
                }
            }
            if !progressed {
                break;
            }
        }
        let interest = if c.output.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        self.poll
            .registry()
            .reregister(&mut c.stream, c.token, interest)
            .is_ok()
    }

    /// A connection whose last answer is written: closing it with input
    /// still unread would reset it, which can destroy that answer before
    /// the client reads it (a 413 to a client still sending its body). So
    /// its sending side is shut and what it still sends is read and
    /// dropped (a bounded amount per event) until it closes or [`LINGER`]
    /// passes. `false`: close it now.
    fn linger(&self, c: &mut Conn) -> bool {
        if c.phase != Phase::Lingering {
            c.phase = Phase::Lingering;
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            c.deadline = Instant::now() + LINGER;
        }
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.poll
            .registry()
            .reregister(&mut c.stream, c.token, Interest::READABLE)
            .is_ok()
    }

    fn answer(&self, method: &Method, path: &str, body: &[u8]) -> Response {
        let expected = format!("{}{ADD_CHECKPOINT}", self.prefix);
        if path != expected {
            return Response::new(
                404,
                format!("a witness serves only POST {expected}\n").into_bytes(),
            )
            .content_type("text/plain; charset=utf-8");
        }
        if *method != Method::Post {
            return Response::new(405, b"add-checkpoint is a POST\n".to_vec())
                .content_type("text/plain; charset=utf-8")
                .allow("POST");
        }
        let now = u64::try_from(crate::time::now_unix()).unwrap_or(0);
        let outcome = self.witness.add_checkpoint(body, now);
        let a = outcome.answer();
        if a.status != 200 {
            log::info!(
                "witness: add-checkpoint refused ({}): {}",
                a.status,
                String::from_utf8_lossy(&a.body).trim_end()
            );
        }
        Response::new(a.status, a.body)
            .content_type(a.content_type)
            .cache_control("no-store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::cosignature::Cosigner;
    use crate::tlog::merkle::leaf_hash;
    use crate::tlog::witness::request_body;
    use crate::tlog::{Checkpoint, NoteSigner};
    use openssl::pkey::PKey;
    use std::net::TcpStream as StdStream;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn post(addr: SocketAddr, path: &str, body: &[u8]) -> io::Result<(u16, String)> {
        let mut s = StdStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        let mut all = String::new();
        s.read_to_string(&mut all)?;
        let status = all
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .unwrap_or_default();
        let body = all
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Ok((status, body))
    }

    struct Running {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn start(
        log: &NoteSigner,
        limits: WitnessLimits,
    ) -> Result<Running, Box<dyn std::error::Error>> {
        let cosigner = Cosigner::new("w.test", PKey::generate_ed25519()?)?;
        let w = Witness::new(cosigner, vec![log.verifier()?], None)?;
        let srv = WitnessServer::bind("127.0.0.1:0".parse()?, Arc::new(w), "/w", limits)?;
        let addr = srv.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || srv.run(&flag));
        Ok(Running {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    #[test]
    fn serves_add_checkpoint_and_a_slow_or_huge_client_does_not_stall_it() -> TestResult {
        let log = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let w = start(&log, WitnessLimits::default())?;
        // A client that sends half a head and waits.
        let mut slow = StdStream::connect(w.addr)?;
        slow.write_all(b"POST /w/add-checkpoint HTTP/1.1\r\nHost: w\r\n")?;
        let root = leaf_hash(b"a");
        let cp = log.sign(
            &Checkpoint {
                origin: "test/log".into(),
                size: 1,
                root,
            }
            .text(),
        )?;
        let (status, body) = post(
            w.addr,
            "/w/add-checkpoint",
            request_body(0, &[], &cp).as_bytes(),
        )?;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("\u{2014} w.test "), "{body}");
        // Now it holds size 1: old 0 is a conflict naming 1.
        let (status, body) = post(
            w.addr,
            "/w/add-checkpoint",
            request_body(0, &[], &cp).as_bytes(),
        )?;
        assert_eq!((status, body.as_str()), (409, "1\n"));
        // A body over the limit is refused at its announcement.
        let mut huge = StdStream::connect(w.addr)?;
        huge.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            huge,
            "POST /w/add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )?;
        let mut answer = String::new();
        huge.read_to_string(&mut answer)?;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        // Also when the client sends the body anyway: the answer is not
        // lost to a reset.
        let mut eager = StdStream::connect(w.addr)?;
        eager.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = format!(
            "POST /w/add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY * 4
        )
        .into_bytes();
        request.extend(vec![b'x'; MAX_BODY * 4]);
        eager.write_all(&request)?;
        eager.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        eager.read_to_string(&mut answer)?;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        let (status, _) = post(w.addr, "/add-checkpoint", b"")?;
        assert_eq!(status, 404);
        drop(slow);
        Ok(())
    }

    #[test]
    fn expect_100_continue_is_answered_and_statuses_have_their_reasons() -> TestResult {
        let log = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let w = start(&log, WitnessLimits::default())?;
        let cp = log.sign(
            &Checkpoint {
                origin: "test/log".into(),
                size: 1,
                root: leaf_hash(b"a"),
            }
            .text(),
        )?;
        let body = request_body(0, &[], &cp);
        let mut s = StdStream::connect(w.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST /w/add-checkpoint HTTP/1.1\r\nHost: w\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )?;
        // The go-ahead comes before any body byte is sent.
        let go = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut got = vec![0u8; go.len()];
        s.read_exact(&mut got)?;
        assert_eq!(got, go.to_vec());
        s.write_all(body.as_bytes())?;
        // The same again, now that size 1 is held: a 409 with its reason.
        write!(
            s,
            "POST /w/add-checkpoint HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut all = String::new();
        s.read_to_string(&mut all)?;
        assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
        assert!(all.contains("HTTP/1.1 409 Conflict\r\n"), "{all}");
        let bad_proof = request_body(1, &[[0u8; 32]], &cp);
        let mut s = StdStream::connect(w.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST /w/add-checkpoint HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{bad_proof}",
            bad_proof.len()
        )?;
        let mut all = String::new();
        s.read_to_string(&mut all)?;
        assert!(
            all.starts_with("HTTP/1.1 422 Unprocessable Content\r\n"),
            "{all}"
        );
        Ok(())
    }

    #[test]
    fn one_source_cannot_take_every_connection() -> TestResult {
        let log = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let w = start(
            &log,
            WitnessLimits {
                max_per_source: 4,
                ..WitnessLimits::default()
            },
        )?;
        let mut idle = Vec::new();
        for _ in 0..4 {
            let mut s = StdStream::connect(w.addr)?;
            s.write_all(b"POST /w/add-checkpoint HTTP/1.1\r\n")?;
            idle.push(s);
        }
        // The fifth from the same address is told why, and closed; the
        // others' slots stay free for other hosts (max_connections is 256).
        let mut fifth = StdStream::connect(w.addr)?;
        fifth.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut answer = String::new();
        let _ = fifth.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
        assert!(answer.ends_with("too many connections now\n"), "{answer:?}");
        // One idle connection closes: its slot is given back.
        drop(idle.pop());
        let mut served = None;
        for _ in 0..50 {
            // Refused meanwhile: a 503, or a reset if it came first.
            if let Ok((400, _)) = post(w.addr, "/w/add-checkpoint", b"") {
                served = Some(400);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            served,
            Some(400),
            "a slot freed by a close was never reused"
        );
        Ok(())
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_makes_room() -> TestResult {
        let log = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let w = start(
            &log,
            WitnessLimits {
                max_connections: 4,
                ..WitnessLimits::default()
            },
        )?;
        let mut idle = Vec::new();
        for _ in 0..4 {
            let mut s = StdStream::connect(w.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"POST /w/add-checkpoint HTTP/1.1\r\n")?;
            idle.push(s);
            // Distinct deadlines, in this order.
            std::thread::sleep(Duration::from_millis(20));
        }
        // A fifth is served at once, not refused until an idle one times out.
        let (status, body) = post(w.addr, "/w/add-checkpoint", b"")?;
        assert_eq!(status, 400, "{body}");
        // The first (longest waiting) was closed to make room.
        let mut buf = [0u8; 16];
        assert_eq!(idle[0].read(&mut buf).unwrap_or(0), 0);
        Ok(())
    }

    #[test]
    fn a_connection_past_its_deadline_is_closed() -> TestResult {
        let log = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let w = start(
            &log,
            WitnessLimits {
                request_timeout: Duration::from_millis(200),
                ..WitnessLimits::default()
            },
        )?;
        let mut slow = StdStream::connect(w.addr)?;
        slow.set_read_timeout(Some(Duration::from_secs(10)))?;
        slow.write_all(b"POST /w/add-checkpoint HTTP/1.1\r\n")?;
        let mut buf = [0u8; 16];
        // The witness closes it: end of stream (or a reset), not a hang.
        let n = slow.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        Ok(())
    }
}
