//! The HTTP listener's connections (issue 14): the operations endpoints
//! (OCSP, CRL, health, metrics) on the same loop as the CA and Blackboard,
//! as a connection kind of their own. Bytes go through the sans-I/O codec
//! ([`crate::http`]) and each request is answered by [`Ops`]; no protocol
//! session is involved.
//!
//! The discipline is the frame listeners': non-blocking reads until
//! `WouldBlock`, output queued and flushed when writable (WRITABLE
//! interest only while some is pending), limits on the head, the body, the
//! requests per connection, the bytes per connection and the buffered
//! bytes of the reactor, an idle timeout between requests and a deadline
//! for the whole connection. Keep-alive and pipelining are served:
//! requests are answered in order, and a client that sends faster than it
//! reads stops being answered (its input waits, unparsed) until it reads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::{interrupted, would_block, Limits, ACCEPT_BACKOFF};
use crate::http::{self, Method, RequestDecoder, Response};
use crate::metrics::Metrics;
use crate::ops::Ops;
use crate::store::Storage;

/// The listener's name in logs and metrics.
pub(super) const NAME: &str = "http";

/// Queued output past which no more requests of a connection are
/// answered until it reads: a pipelined flood cannot grow the buffer.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Limits of the HTTP listener's connections, beside the reactor's
/// [`Limits`] (connections per listener, bytes per connection, buffered
/// bytes, idle timeout and deadline apply here too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConnLimits {
    /// Head, header count and body of one request.
    pub request: http::HttpLimits,
    /// Most requests one connection may make; the last is answered with
    /// `Connection: close`.
    pub max_requests: u32,
}

impl Default for HttpConnLimits {
    fn default() -> Self {
        HttpConnLimits {
            request: http::HttpLimits::default(),
            max_requests: 100,
        }
    }
}

struct HttpConn {
    stream: TcpStream,
    peer: String,
    decoder: RequestDecoder,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// The last response is queued: flush it, then close.
    closing: bool,
    eof: bool,
    /// `100 Continue` was sent for the request now arriving.
    continue_sent: bool,
    started: Instant,
    /// When the last whole request came (or the connection opened).
    last_request: Instant,
    bytes_in: u64,
    requests: u32,
    interest: Interest,
}

impl HttpConn {
    /// Whether part of a request has arrived (a timeout then owes it 408).
    fn mid_request(&self) -> bool {
        !self.inbuf.is_empty() || self.continue_sent
    }
}

/// The HTTP listener of one reactor and its connections.
pub(super) struct Web {
    listener: TcpListener,
    conns: HashMap<Token, HttpConn>,
    ops: Ops,
    limits: HttpConnLimits,
    paused_until: Option<Instant>,
    /// Bytes held in all these connections' input buffers.
    buffered: usize,
    metrics: Arc<Metrics>,
}

impl Web {
    pub(super) fn new(
        listener: TcpListener,
        ops: Ops,
        limits: HttpConnLimits,
        metrics: Arc<Metrics>,
    ) -> Web {
        Web {
            listener,
            conns: HashMap::new(),
            ops,
            limits,
            paused_until: None,
            buffered: 0,
            metrics,
        }
    }

    pub(super) fn listener(&mut self) -> &mut TcpListener {
        &mut self.listener
    }

    pub(super) fn owns(&self, token: Token) -> bool {
        self.conns.contains_key(&token)
    }

    pub(super) fn is_paused(&self) -> bool {
        self.paused_until.is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Accepts every pending connection.
    pub(super) fn accept(
        &mut self,
        registry: &Registry,
        next_token: &mut usize,
        limits: &Limits,
        deadlines: &mut BinaryHeap<Reverse<(Instant, Token)>>,
    ) {
        loop {
            if self.paused_until.is_some_and(|t| Instant::now() < t) {
                return;
            }
            self.paused_until = None;
            let (mut stream, addr) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    warn!("{NAME} listener: accept failed: {e}");
                    self.paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            };
            if self.conns.len() >= limits.max_connections {
                warn!(
                    "{addr}: refused: {NAME} listener is at its limit of {} connections",
                    limits.max_connections
                );
                self.metrics.connection_refused(NAME);
                let mut out = Vec::new();
                Response::new(503, b"server busy: too many connections\n".to_vec())
                    .content_type("text/plain; charset=utf-8")
                    .close()
                    .encode(Method::Get, &mut out);
                // One best-effort write into the new socket's empty buffer.
                let _ = stream.write(&out);
                continue;
            }
            let token = Token(*next_token);
            *next_token += 1;
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                warn!("{addr}: cannot register: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let now = Instant::now();
            let peer = format!("{NAME}:{addr}");
            debug!("{peer}: connected");
            self.metrics.connection_accepted(NAME);
            let conn = HttpConn {
                stream,
                peer,
                decoder: RequestDecoder::new(self.limits.request),
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                closing: false,
                eof: false,
                continue_sent: false,
                started: now,
                last_request: now,
                bytes_in: 0,
                requests: 0,
                interest: Interest::READABLE,
            };
            deadlines.push(Reverse((due(limits, &conn), token)));
            self.conns.insert(token, conn);
        }
    }

    /// A readiness event on one of these connections.
    pub(super) fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        store: &mut dyn Storage,
        scratch: &mut [u8],
        limits: &Limits,
    ) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = flush(conn) {
            self.close(token, registry, &format!("write failed: {e}"));
            return;
        }
        let before = conn.inbuf.len();
        let read = read_all(conn, scratch, limits.max_conn_bytes);
        let added = conn.inbuf.len().saturating_sub(before);
        self.buffered += added;
        if read.is_err() {
            let why = format!(
                "more than {} bytes on one connection",
                limits.max_conn_bytes
            );
            self.refuse(token, 413, &why);
        } else if added > 0 && self.buffered > limits.max_buffered {
            let why = format!(
                "server busy: more than {} bytes of unfinished requests in flight",
                limits.max_buffered
            );
            self.refuse(token, 503, &why);
        } else {
            self.process(token, store);
        }
        self.after_io(token, registry);
    }

    /// Answers every whole request buffered, in order, until the output
    /// backs up.
    fn process(&mut self, token: Token, store: &mut dyn Storage) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while !conn.closing && conn.outbuf.len() < OUTPUT_HIGH_WATER {
            let before = conn.inbuf.len();
            let decoded = conn.decoder.decode(&mut conn.inbuf);
            self.buffered = self
                .buffered
                .saturating_sub(before.saturating_sub(conn.inbuf.len()));
            match decoded {
                Ok(Some(req)) => {
                    conn.requests += 1;
                    conn.last_request = Instant::now();
                    conn.continue_sent = false;
                    let mut resp = self.ops.handle(&req, store);
                    if !req.keep_alive || conn.requests >= self.limits.max_requests {
                        resp = resp.close();
                    }
                    debug!(
                        "{}: {} {} -> {}",
                        conn.peer,
                        req.method.as_str(),
                        req.path(),
                        resp.status
                    );
                    resp.encode(req.method, &mut conn.outbuf);
                    if resp.close {
                        conn.closing = true;
                    }
                }
                Ok(None) => {
                    if conn.decoder.awaiting_continue() && !conn.continue_sent {
                        conn.outbuf.extend_from_slice(http::CONTINUE);
                        conn.continue_sent = true;
                    }
                    return;
                }
                Err(e) => {
                    info!("{}: refused: {e}", conn.peer);
                    self.metrics.refused(http_refusal_label(e.status()));
                    e.response().encode(Method::Get, &mut conn.outbuf);
                    conn.closing = true;
                }
            }
        }
        if conn.closing {
            self.buffered = self.buffered.saturating_sub(conn.inbuf.len());
            conn.inbuf = Vec::new();
        }
    }

    /// Queues an error response and closes after it.
    fn refuse(&mut self, token: Token, status: u16, why: &str) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        warn!("{}: refused: {why}", conn.peer);
        self.metrics.refused(http_refusal_label(status));
        Response::new(status, format!("{why}\n").into_bytes())
            .content_type("text/plain; charset=utf-8")
            .close()
            .encode(Method::Get, &mut conn.outbuf);
        conn.closing = true;
        self.buffered = self.buffered.saturating_sub(conn.inbuf.len());
        conn.inbuf = Vec::new();
    }

    /// Flushes, closes when finished, and sets the interest.
    fn after_io(&mut self, token: Token, registry: &Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = flush(conn) {
            self.close(token, registry, &format!("write failed: {e}"));
            return;
        }
        let drained = conn.outbuf.is_empty();
        if drained && conn.closing {
            self.close(token, registry, "answered");
            return;
        }
        if drained && conn.eof {
            self.close(token, registry, "peer closed the connection");
            return;
        }
        let wanted = if drained {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest {
            if let Err(e) = registry.reregister(&mut conn.stream, token, wanted) {
                self.close(token, registry, &format!("reregister failed: {e}"));
                return;
            }
            conn.interest = wanted;
        }
    }

    fn close(&mut self, token: Token, registry: &Registry, why: &str) {
        if let Some(mut conn) = self.conns.remove(&token) {
            self.buffered = self.buffered.saturating_sub(conn.inbuf.len());
            let _ = registry.deregister(&mut conn.stream);
            self.metrics.connection_closed(NAME);
            debug!("{}: closed ({why})", conn.peer);
        }
    }

    /// A deadline entry of `token` came due at `now`: closes the connection
    /// if a limit is reached (a 408 first if a request was arriving), else
    /// says when to look again.
    pub(super) fn expire(
        &mut self,
        token: Token,
        now: Instant,
        registry: &Registry,
        limits: &Limits,
        sweep_every: Duration,
    ) -> Option<Instant> {
        let conn = self.conns.get_mut(&token)?;
        let what = if now.duration_since(conn.started) >= limits.exchange_deadline {
            "connection deadline"
        } else if now.duration_since(conn.last_request) >= limits.idle_timeout {
            "idle timeout"
        } else {
            return Some(due(limits, conn).max(now + sweep_every));
        };
        if conn.mid_request() && !conn.closing {
            let why = format!("{what} reached before the request was complete");
            self.refuse(token, 408, &why);
            if let Some(conn) = self.conns.get_mut(&token) {
                // One try; a peer that does not read must not hold the slot.
                let _ = flush(conn);
            }
        }
        self.close(token, registry, what);
        None
    }

    /// Closes every connection (the server is stopping).
    pub(super) fn close_all(&mut self, registry: &Registry) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(c) = self.conns.get_mut(&t) {
                let _ = flush(c);
            }
            self.close(t, registry, "server shutting down");
        }
    }
}

/// The refusal reason of an HTTP status, for the metrics.
fn http_refusal_label(status: u16) -> &'static str {
    match status {
        408 => "http_timeout",
        411 | 413 | 414 | 431 => "http_too_large",
        503 => "http_busy",
        _ => "http_bad_request",
    }
}

/// The earliest moment `conn` may break a time limit.
fn due(limits: &Limits, conn: &HttpConn) -> Instant {
    let after = |t: Instant, d: Duration| {
        t.checked_add(d)
            .or_else(|| t.checked_add(Duration::from_secs(3600)))
            .unwrap_or(t)
    };
    after(conn.started, limits.exchange_deadline).min(after(conn.last_request, limits.idle_timeout))
}

/// Reads until the socket is drained or the peer closes; `Err` past the
/// byte limit. Once the last response is queued, input is discarded.
fn read_all(conn: &mut HttpConn, scratch: &mut [u8], max_bytes: u64) -> Result<(), ()> {
    if conn.closing || conn.eof {
        if super::discard_input(&mut conn.stream, scratch) {
            conn.eof = true;
        }
        return Ok(());
    }
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => {
                conn.eof = true;
                return Ok(());
            }
            Ok(n) => {
                conn.bytes_in += n as u64;
                if conn.bytes_in > max_bytes {
                    return Err(());
                }
                conn.inbuf.extend_from_slice(&scratch[..n]);
            }
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) if interrupted(&e) => continue,
            Err(e) => {
                debug!("{}: read error: {e}", conn.peer);
                conn.eof = true;
                return Ok(());
            }
        }
    }
}

/// Writes as much of the output as the socket takes.
fn flush(conn: &mut HttpConn) -> io::Result<()> {
    super::flush_buf(&mut conn.stream, &mut conn.outbuf)
}
