//! The event loop: one thread, one `mio::Poll`, the listeners and a
//! token → connection map, like the original Python `select` loop — except
//! that nothing here ever blocks on a socket. Partial frames are buffered,
//! replies are queued and flushed when the socket is writable, and every
//! connection runs under limits (bytes, messages, an idle timeout and a
//! deadline for the whole exchange), so no client can stall another.
//!
//! Acknowledgments that promise durability (a certificate, a receipt) are
//! held back: the records made ready in a turn of the loop go to the
//! writer thread ([`crate::commit`]) as one batch, and their frames are
//! released only when it says the batch is durable. The loop goes on
//! serving meanwhile; records made ready while a batch is in flight form
//! the next one.
//!
//! Sockets live here and nowhere else.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::commit::{CommitError, CommitHandle, Committer, InFlight, Outcome};
use crate::framing::{self, Decoder};
use crate::message::ErrorCode;
use crate::metrics::Metrics;
use crate::offload::{WorkHandle, Workers};
use crate::ops::Ops;
use crate::protocol::{self, After, Expiry, Output, ServiceKind, Session, Shared};
use crate::store::Record;

mod web;

pub use web::HttpConnLimits;

/// Per-connection and per-listener limits. Every one is a flag of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frame payload accepted.
    pub max_frame: usize,
    /// Most bytes one connection may send in all.
    pub max_conn_bytes: u64,
    /// Most frames one connection may send.
    pub max_messages: u32,
    /// Most concurrent connections per listener.
    pub max_connections: usize,
    /// Longest time a connection may wait between two whole frames (and
    /// before its first); a slowloris trickle is cut off here.
    pub idle_timeout: Duration,
    /// Longest a connection may live, start to end.
    pub exchange_deadline: Duration,
    /// Most bytes of partial frames buffered across all connections of a
    /// reactor: without it, many connections each sending most of a large
    /// frame could exhaust memory.
    pub max_buffered: usize,
}

impl Limits {
    /// The earliest moment `conn` may break a time limit, as things stand.
    fn deadline(&self, conn: &Connection) -> Instant {
        // A limit too large for the clock is no limit: look again in an hour.
        let after = |t: Instant, d: Duration| {
            t.checked_add(d)
                .or_else(|| t.checked_add(Duration::from_secs(3600)))
                .unwrap_or(t)
        };
        after(conn.started, self.exchange_deadline).min(after(conn.last_frame, self.idle_timeout))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: framing::DEFAULT_MAX_FRAME,
            max_conn_bytes: 4 << 20,
            max_messages: 32,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(10),
            exchange_deadline: Duration::from_secs(30),
            max_buffered: 256 << 20,
        }
    }
}

const SIGNAL_TOKEN: Token = Token(usize::MAX);
/// The writer thread wakes the loop through this token when a batch is
/// durable, and the worker pool when off-loop work is done (mio allows one
/// waker per poll).
const COMMIT_TOKEN: Token = Token(usize::MAX - 1);
/// The HTTP listener (issue 14), when there is one.
const HTTP_LISTENER_TOKEN: Token = Token(usize::MAX - 2);
/// Listener tokens are 0..LISTENER_TOKENS; connection tokens follow.
const LISTENER_TOKENS: usize = 16;
/// How often deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Pause before accepting again after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

struct ListenerSlot {
    kind: ServiceKind,
    socket: TcpListener,
    active: usize,
    paused_until: Option<Instant>,
}

/// Where a connection is in its life.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Reading frames and answering them.
    Open,
    /// A reply is held until the turn's batch is committed.
    Committing {
        /// The frames waiting on the group commit.
        held: Vec<u8>,
        /// Close once they are out (the state machine asked so).
        close_after: bool,
    },
    /// Waiting for work off the loop (the session's `Output::offload`);
    /// frames that arrive meanwhile are buffered, not handled.
    Working {
        /// Held while the job waits: dropping it (the connection closed)
        /// makes the pool skip the job.
        ticket: Arc<()>,
    },
    /// Flushing the last frames, then closing; nothing more is read.
    Closing,
}

impl Phase {
    fn is_committing(&self) -> bool {
        matches!(self, Phase::Committing { .. })
    }
}

struct Connection {
    stream: TcpStream,
    peer: String,
    listener: usize,
    decoder: Decoder,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    session: Session,
    phase: Phase,
    /// The peer has closed its sending side.
    eof: bool,
    started: Instant,
    last_frame: Instant,
    bytes_in: u64,
    messages: u32,
    interest: Interest,
}

/// The single-threaded server loop.
pub(crate) struct Reactor {
    poll: Poll,
    listeners: Vec<ListenerSlot>,
    conns: HashMap<Token, Connection>,
    next_token: usize,
    shared: Shared,
    limits: Limits,
    /// Records made ready and not yet handed to the writer, with the
    /// connection awaiting each.
    pending: Vec<(Token, Record)>,
    /// The writer thread.
    commits: CommitHandle,
    /// The worker pool, when the server has one (legacy mode).
    workers: Option<WorkHandle>,
    /// The batch the writer is committing, with the connections awaiting it.
    in_flight: Option<(InFlight, Vec<Token>)>,
    /// The writer thread is gone: nothing can be recorded any more, so the
    /// reactor stops (with an error, for a supervisor to restart it).
    writer_lost: bool,
    /// This reactor's number, for the logs.
    id: usize,
    signals: Option<Signals>,
    scratch: Vec<u8>,
    /// Bytes held in all connections' input buffers.
    buffered: usize,
    /// A descriptor held in reserve (on /dev/null) so that, when the
    /// process runs out, one can still be freed to refuse a client.
    spare: Option<std::fs::File>,
    /// Failed accepts and refusals for lack of descriptors, logged at most
    /// once a second.
    accept_failures: AcceptFailures,
    /// When each connection's limits should next be checked, earliest
    /// first. Entries are not moved when a frame comes in: a due entry is
    /// checked against the connection and put back if it is not yet due,
    /// so the sweep costs nothing for connections far from their limits
    /// (10,000 idle ones included).
    deadlines: BinaryHeap<Reverse<(Instant, Token)>>,
    /// The HTTP listener and its connections, when serving one.
    web: Option<web::Web>,
    /// The process's metrics (shared with the other reactors).
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("listeners", &self.listeners.len())
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// EMFILE or ENFILE: the process's or the system's descriptor table is full.
fn out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// The spare descriptor; `None` (retried later) if even that fails.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// How often the accept-failure lines may be written.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);

/// Accept failures and "server busy" refusals for lack of descriptors,
/// counted and logged at most once per [`ACCEPT_LOG_EVERY`]: under a
/// flood they would otherwise fill the log (and slow the loop on it).
#[derive(Debug, Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    failed: u64,
    refused: u64,
}

impl AcceptFailures {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY);
        if due {
            self.last_logged = Some(now);
        }
        due
    }

    fn note(&mut self, kind: ServiceKind, e: &io::Error) {
        self.failed += 1;
        if self.due() {
            warn!(
                "{} listener: accept failed: {e} ({} time(s) since the last such line)",
                kind.name(),
                std::mem::take(&mut self.failed)
            );
        }
    }

    fn refused(&mut self, kind: ServiceKind, addr: SocketAddr) {
        self.refused += 1;
        if self.due() {
            warn!(
                "{addr}: refused: server busy, out of file descriptors ({} connection(s) to the \
                 {} listener refused so since the last such line)",
                std::mem::take(&mut self.refused),
                kind.name()
            );
        }
    }
}

/// Binds a listening socket; with `reuse_port` several reactors can bind the
/// same address and the kernel spreads connections among them.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Binds the first of several SO_REUSEPORT listeners. SO_REUSEPORT would
/// also let a second server (of the same user) bind the same port and take
/// half of the connections, silently: so the address is first bound
/// without it, which fails if anyone holds it, then released and bound
/// shared. (Port 0 resolves to a free port in the first step.)
pub(crate) fn bind_first_shared(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let probe = std::net::TcpListener::bind(addr)?;
    let resolved = probe.local_addr()?;
    drop(probe);
    bind(resolved, true)
}

impl Reactor {
    /// Reactor number `id`, serving `listeners` (already bound,
    /// non-blocking), whose records `committer` makes durable.
    /// `handle_signals` makes SIGINT/SIGTERM stop it cleanly.
    pub(crate) fn new(
        id: usize,
        listeners: Vec<(ServiceKind, std::net::TcpListener)>,
        shared: Shared,
        limits: Limits,
        committer: &Committer,
        workers: Option<&Workers>,
        handle_signals: bool,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), COMMIT_TOKEN)?);
        let mut slots = Vec::new();
        for (i, (kind, l)) in listeners.into_iter().enumerate().take(LISTENER_TOKENS) {
            l.set_nonblocking(true)?;
            let mut socket = TcpListener::from_std(l);
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)?;
            slots.push(ListenerSlot {
                kind,
                socket,
                active: 0,
                paused_until: None,
            });
        }
        let signals = if handle_signals {
            let mut s = Signals::new([SIGINT, SIGTERM])?;
            poll.registry()
                .register(&mut s, SIGNAL_TOKEN, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        Ok(Reactor {
            poll,
            listeners: slots,
            conns: HashMap::new(),
            next_token: LISTENER_TOKENS,
            shared,
            limits,
            pending: Vec::new(),
            commits: committer.handle(Arc::clone(&waker)),
            workers: workers.map(|w| w.handle(waker)),
            in_flight: None,
            writer_lost: false,
            id,
            signals,
            scratch: vec![0u8; 64 * 1024],
            buffered: 0,
            deadlines: BinaryHeap::new(),
            spare: open_spare(),
            accept_failures: AcceptFailures::default(),
            web: None,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Counts into `metrics` (the process's, shared by every reactor)
    /// rather than this reactor's own.
    pub(crate) fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = metrics;
    }

    /// Also serves the operations endpoints (OCSP, CRL, health, metrics)
    /// on `listener` (already bound), answered by `ops` from this
    /// reactor's store.
    pub(crate) fn serve_http(
        &mut self,
        listener: std::net::TcpListener,
        ops: Ops,
        limits: HttpConnLimits,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let socket = TcpListener::from_std(listener);
        let mut w = web::Web::new(socket, ops, limits, Arc::clone(&self.metrics));
        self.poll
            .registry()
            .register(w.listener(), HTTP_LISTENER_TOKEN, Interest::READABLE)?;
        self.web = Some(w);
        Ok(())
    }

    /// The bound address of the HTTP listener, if any.
    pub(crate) fn http_addr(&mut self) -> Option<io::Result<SocketAddr>> {
        self.web.as_mut().map(|w| w.listener().local_addr())
    }

    fn accept_http(&mut self) {
        if let Some(w) = &mut self.web {
            w.accept(
                self.poll.registry(),
                &mut self.next_token,
                &self.limits,
                &mut self.deadlines,
            );
        }
    }

    fn on_http_event(&mut self, token: Token) {
        if let Some(w) = &mut self.web {
            w.on_event(
                token,
                self.poll.registry(),
                &mut *self.shared.store,
                &mut self.scratch,
                &self.limits,
            );
        }
    }

    fn is_http(&self, token: Token) -> bool {
        self.web.as_ref().is_some_and(|w| w.owns(token))
    }

    /// The bound address of each listener, in order.
    pub(crate) fn local_addrs(&self) -> io::Result<Vec<(ServiceKind, SocketAddr)>> {
        self.listeners
            .iter()
            .map(|l| Ok((l.kind, l.socket.local_addr()?)))
            .collect()
    }

    /// Runs until SIGINT or SIGTERM (when handled), then closes everything.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if interrupted(&e) {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => {
                        if self.stop_requested() {
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    COMMIT_TOKEN => {
                        self.collect_commit();
                        self.collect_offloaded();
                    }
                    HTTP_LISTENER_TOKEN => self.accept_http(),
                    token if self.is_http(token) => self.on_http_event(token),
                    Token(i) if i < LISTENER_TOKENS => self.accept(i),
                    token => self.on_conn_event(token, event.is_read_closed()),
                }
            }
            self.start_commit();
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            if self.writer_lost {
                error!(
                    "reactor {}: the database writer is gone; stopping, since nothing can be recorded",
                    self.id
                );
                if self.signals.is_some() {
                    // The other reactors stop too, as on SIGTERM.
                    let _ = signal_hook::low_level::raise(SIGTERM);
                }
                self.shutdown();
                return Err(io::Error::other("the database writer thread stopped"));
            }
        }
    }

    fn stop_requested(&mut self) -> bool {
        let Some(signals) = &mut self.signals else {
            return false;
        };
        let mut stop = false;
        for sig in signals.pending() {
            info!(
                "reactor {}: received {}, shutting down",
                self.id,
                if sig == SIGINT { "SIGINT" } else { "SIGTERM" }
            );
            stop = true;
        }
        stop
    }

    fn shutdown(&mut self) {
        // Anything already computed is committed and sent before leaving.
        let waiting = self.pending.len() + self.in_flight.as_ref().map_or(0, |(_, t)| t.len());
        if waiting > 0 {
            info!(
                "reactor {}: waiting for {waiting} record(s) to be committed",
                self.id
            );
        }
        loop {
            if let Some((flight, tokens)) = self.in_flight.take() {
                let outcome = flight.wait();
                self.release(tokens, outcome);
            }
            self.start_commit();
            if self.in_flight.is_none() {
                break;
            }
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(c) = self.conns.get_mut(&t) {
                let _ = flush(c);
            }
            self.close(t, "server shutting down");
        }
        if let Some(w) = &mut self.web {
            w.close_all(self.poll.registry());
        }
        info!("reactor {}: stopped", self.id);
    }

    fn accept(&mut self, idx: usize) {
        loop {
            let Some(slot) = self.listeners.get_mut(idx) else {
                return;
            };
            if slot.paused_until.is_some_and(|t| Instant::now() < t) {
                return;
            }
            slot.paused_until = None;
            let (mut stream, addr) = match slot.socket.accept() {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    let kind = slot.kind;
                    self.accept_failures.note(kind, &e);
                    // Out of descriptors: the spare makes room to tell one
                    // waiting client "server busy" rather than leave it in
                    // the backlog, unanswered, until descriptors free up.
                    if out_of_descriptors(&e) && self.refuse_with_spare(idx) {
                        continue;
                    }
                    // Else stop accepting for a moment instead of spinning;
                    // the sweep retries.
                    if let Some(slot) = self.listeners.get_mut(idx) {
                        slot.paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                    return;
                }
            };
            let kind = slot.kind;
            if slot.active >= self.limits.max_connections {
                warn!(
                    "{addr}: refused: {} listener is at its limit of {} connections",
                    kind.name(),
                    self.limits.max_connections
                );
                let mut out = Vec::new();
                let msg = crate::message::Message::error(
                    ErrorCode::Limit,
                    "server busy: too many connections, try again later",
                );
                framing::encode(&msg.encode(), &mut out);
                // One best-effort write; the socket is new, so its buffer
                // is empty and this small frame fits.
                let _ = stream.write(&out);
                self.metrics.connection_refused(kind.name());
                continue;
            }
            slot.active += 1;
            self.metrics.connection_accepted(kind.name());
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
            {
                error!("{addr}: cannot register: {e}");
                slot.active -= 1;
                continue;
            }
            let _ = stream.set_nodelay(true);
            let now = Instant::now();
            let (session, out) = Session::start(kind, &self.shared);
            let peer = format!("{}:{addr}", kind.name());
            info!("{peer}: connected");
            let conn = Connection {
                stream,
                peer,
                listener: idx,
                decoder: Decoder::new(self.limits.max_frame),
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                session,
                phase: Phase::Open,
                eof: false,
                started: now,
                last_frame: now,
                bytes_in: 0,
                messages: 0,
                interest: Interest::READABLE,
            };
            self.deadlines
                .push(Reverse((self.limits.deadline(&conn), token)));
            self.conns.insert(token, conn);
            self.apply(token, out);
            self.after_io(token);
        }
    }

    /// With no descriptor left to accept with: closes the spare, accepts
    /// one connection in its place, sends it "server busy" and closes it,
    /// then takes the spare back. `false` when there was no one to refuse
    /// (or no spare).
    fn refuse_with_spare(&mut self, idx: usize) -> bool {
        let Some(slot) = self.listeners.get(idx) else {
            return false;
        };
        let Some(spare) = self.spare.take() else {
            self.spare = open_spare();
            return false;
        };
        drop(spare);
        let refused = match slot.socket.accept() {
            Ok((mut stream, addr)) => {
                let mut out = Vec::new();
                let msg = crate::message::Message::error(
                    ErrorCode::Limit,
                    "server busy: out of file descriptors, try again later",
                );
                framing::encode(&msg.encode(), &mut out);
                // One best-effort write into the new socket's empty buffer.
                let _ = stream.write(&out);
                self.accept_failures.refused(slot.kind, addr);
                true
            }
            Err(_) => false,
        };
        self.spare = open_spare();
        refused
    }

    /// `peer_closed`: the event says the peer's FIN (or a reset) has come.
    fn on_conn_event(&mut self, token: Token, peer_closed: bool) {
        // Events for a token already closed are stale: ignore them.
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = flush(conn) {
            let reason = format!("write failed: {e}");
            self.close(token, &reason);
            return;
        }
        let before = conn.inbuf.len();
        let read = read_all(conn, &mut self.scratch, &self.limits, peer_closed);
        let added = conn.inbuf.len().saturating_sub(before);
        self.buffered += added;
        let over_budget = self.buffered > self.limits.max_buffered && added > 0;
        if let Err(e) = read {
            self.refuse(token, ErrorCode::Limit, &e.to_string());
            self.after_io(token);
            return;
        }
        if over_budget {
            let reason = format!(
                "server busy: more than {} bytes of unfinished frames in flight",
                self.limits.max_buffered
            );
            self.refuse(token, ErrorCode::Limit, &reason);
            self.after_io(token);
            return;
        }
        self.process_input(token);
        self.after_io(token);
    }

    /// Decodes and handles every whole frame buffered, while the connection
    /// is open to new frames.
    fn process_input(&mut self, token: Token) {
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if conn.phase != Phase::Open {
                return;
            }
            let before = conn.inbuf.len();
            let decoded = conn.decoder.decode(&mut conn.inbuf);
            self.buffered = self
                .buffered
                .saturating_sub(before.saturating_sub(conn.inbuf.len()));
            let frame = match decoded {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    let reason = format!("bad frame: {e}");
                    self.refuse(token, ErrorCode::Malformed, &reason);
                    return;
                }
            };
            conn.messages += 1;
            conn.last_frame = Instant::now();
            if conn.messages > self.limits.max_messages {
                let reason = format!(
                    "more than {} messages on one connection",
                    self.limits.max_messages
                );
                self.refuse(token, ErrorCode::Limit, &reason);
                return;
            }
            let session = std::mem::take(&mut conn.session);
            let (next, out) = session.on_frame(&frame, &mut self.shared, &conn.peer);
            conn.session = next;
            self.apply(token, out);
        }
    }

    /// Carries out a state machine's output.
    fn apply(&mut self, token: Token, out: Output) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Some(label) = out.refusal {
            self.metrics.refused(label);
        }
        let mut frames = Vec::new();
        for payload in &out.send {
            framing::encode(payload, &mut frames);
        }
        match out.then {
            After::Offload(job) => {
                conn.outbuf.extend_from_slice(&frames);
                let submitted = match &self.workers {
                    Some(w) => w
                        .submit(token, job)
                        .map_err(|busy| (ErrorCode::Limit, busy.to_string())),
                    None => Err((
                        ErrorCode::Internal,
                        "internal error: this server has no worker pool".to_string(),
                    )),
                };
                match submitted {
                    Ok(ticket) => conn.phase = Phase::Working { ticket },
                    Err((code, reason)) => self.refuse(token, code, &reason),
                }
            }
            After::Persist(record) => {
                conn.phase = Phase::Committing {
                    held: frames,
                    close_after: out.close,
                };
                self.pending.push((token, record));
            }
            After::Nothing => {
                conn.outbuf.extend_from_slice(&frames);
                if out.close {
                    conn.phase = Phase::Closing;
                }
            }
        }
    }

    /// Hands the records made ready to the writer as one batch, unless a
    /// batch is already in flight: they then wait for the next.
    fn start_commit(&mut self) {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        let (tokens, records): (Vec<Token>, Vec<Record>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        match self.commits.submit(records) {
            Ok(flight) => self.in_flight = Some((flight, tokens)),
            Err(e) => {
                error!("commit of {} record(s) failed: {e}", tokens.len());
                let outcomes = tokens
                    .iter()
                    .map(|_| Err(CommitError::WriterLost("the commit thread has stopped")))
                    .collect();
                self.release(tokens, outcomes);
            }
        }
    }

    /// Takes the writer's answer for the batch in flight, if it has come,
    /// and sends the next batch.
    fn collect_commit(&mut self) {
        let Some(outcome) = self.in_flight.as_ref().and_then(|(f, _)| f.poll()) else {
            return;
        };
        if let Some((_, tokens)) = self.in_flight.take() {
            self.release(tokens, outcome);
        }
        self.start_commit();
    }

    /// Feeds each finished off-loop job back to its session, if its
    /// connection is still waiting for it (else the result is dropped).
    fn collect_offloaded(&mut self) {
        let Some(workers) = &self.workers else {
            return;
        };
        let finished: Vec<_> = workers.finished().collect();
        for (token, done) in finished {
            let Some(conn) = self.conns.get_mut(&token) else {
                debug!("off-loop result for a closed connection dropped");
                continue;
            };
            if !matches!(conn.phase, Phase::Working { .. }) {
                continue; // refused meanwhile (a limit): its error is queued
            }
            conn.phase = Phase::Open;
            let session = std::mem::take(&mut conn.session);
            let (next, out) = session.on_offloaded(done, &conn.peer);
            conn.session = next;
            self.apply(token, out);
            // Frames that arrived meanwhile are handled now.
            self.process_input(token);
            self.after_io(token);
        }
    }

    /// Releases the replies held for a batch, each by its own record's
    /// outcome; a reply whose record is not known to be durable is replaced
    /// with an error that says what is known.
    fn release(&mut self, tokens: Vec<Token>, outcomes: Vec<Outcome>) {
        for (token, outcome) in tokens.into_iter().zip(outcomes) {
            let failure = match &outcome {
                Ok(()) => None,
                Err(CommitError::Store(e)) => {
                    let refusal = protocol::commit_refusal(e);
                    Some((ErrorCode::from(&refusal), refusal.to_string()))
                }
                // The store reconnects: unlike a lost writer, the server goes on.
                Err(CommitError::OutcomeUnknown(_)) => Some((
                    ErrorCode::Internal,
                    "internal error: the connection to the database was lost during the commit; \
                     the result may or may not have been recorded"
                        .to_string(),
                )),
                Err(CommitError::WriterLost(_)) => {
                    self.writer_lost = true;
                    Some((
                        ErrorCode::Internal,
                        "internal error: the server lost its database writer; the result may or \
                         may not have been recorded"
                            .to_string(),
                    ))
                }
            };
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let (held, close_after) = match std::mem::replace(&mut conn.phase, Phase::Closing) {
                Phase::Committing { held, close_after } => (held, close_after),
                other => {
                    // Refused meanwhile (a limit): its error frame is queued.
                    conn.phase = other;
                    continue;
                }
            };
            match failure {
                None => {
                    conn.outbuf.extend_from_slice(&held);
                    conn.phase = if close_after {
                        Phase::Closing
                    } else {
                        Phase::Open
                    };
                    // Durable now: whatever the session makes only after
                    // that (a signed receipt) goes out behind the held frames.
                    let session = std::mem::take(&mut conn.session);
                    let (next, after) = session.on_committed(&conn.peer);
                    conn.session = next;
                    self.apply(token, after);
                }
                Some((code, why)) => {
                    warn!("{}: {why}", conn.peer);
                    queue_error(conn, code, &why);
                    conn.phase = Phase::Closing;
                }
            }
            // Frames that arrived meanwhile are handled now.
            self.process_input(token);
            self.after_io(token);
        }
    }

    /// Queues an error frame and closes after it; nothing more is read.
    fn refuse(&mut self, token: Token, code: ErrorCode, reason: &str) {
        if let Some(conn) = self.conns.get_mut(&token) {
            warn!("{}: {reason}", conn.peer);
            self.metrics.refused(crate::protocol::refusal_label(code));
            queue_error(conn, code, reason);
            // Held frames, if any, are dropped: the refusal replaces them.
            conn.phase = Phase::Closing;
            self.buffered = self.buffered.saturating_sub(conn.inbuf.len());
            conn.inbuf = Vec::new();
        }
    }

    /// After reading or queueing: flush, close when finished, and set the
    /// interest to match what the connection is waiting for.
    fn after_io(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = flush(conn) {
            let reason = format!("write failed: {e}");
            self.close(token, &reason);
            return;
        }
        let drained = conn.outbuf.is_empty();
        match conn.phase {
            Phase::Closing if drained => {
                self.close(token, "exchange finished");
                return;
            }
            Phase::Open if conn.eof && drained => {
                self.close(token, "peer closed the connection");
                return;
            }
            // Never work for nobody: its job is dropped with the ticket.
            Phase::Working { .. } if conn.eof => {
                self.close(
                    token,
                    "peer closed the connection; its off-loop work is dropped",
                );
                return;
            }
            _ => {}
        }
        let wanted = if drained {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest {
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, wanted)
            {
                let reason = format!("reregister failed: {e}");
                self.close(token, &reason);
                return;
            }
            conn.interest = wanted;
        }
    }

    fn close(&mut self, token: Token, why: &str) {
        if let Some(mut conn) = self.conns.remove(&token) {
            self.buffered = self.buffered.saturating_sub(conn.inbuf.len());
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(slot) = self.listeners.get_mut(conn.listener) {
                slot.active = slot.active.saturating_sub(1);
                self.metrics.connection_closed(slot.kind.name());
            }
            info!("{}: closed ({why})", conn.peer);
        }
    }

    /// Enforces the idle timeout and the exchange deadline, and retries
    /// paused listeners.
    fn sweep(&mut self) {
        // A writer that died answers no more: notice it here.
        self.collect_commit();
        let now = Instant::now();
        let mut expired = Vec::new();
        while let Some(Reverse((due, token))) = self.deadlines.peek().copied() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            if self.is_http(token) {
                if let Some(w) = &mut self.web {
                    let again =
                        w.expire(token, now, self.poll.registry(), &self.limits, SWEEP_EVERY);
                    if let Some(next) = again {
                        self.deadlines.push(Reverse((next, token)));
                    }
                }
                continue;
            }
            let Some(c) = self.conns.get(&token) else {
                continue; // closed since
            };
            if c.phase.is_committing() {
                // Waiting on the disk, not on the peer: look again later.
                self.deadlines.push(Reverse((now + SWEEP_EVERY, token)));
            } else if now.duration_since(c.started) >= self.limits.exchange_deadline {
                expired.push((token, Expiry::Deadline));
            } else if now.duration_since(c.last_frame) >= self.limits.idle_timeout {
                expired.push((token, Expiry::Idle));
            } else {
                // Never before the next sweep, so this loop ends.
                let next = self.limits.deadline(c).max(now + SWEEP_EVERY);
                self.deadlines.push(Reverse((next, token)));
            }
        }
        // Entries of closed connections wait for their time to be dropped;
        // under heavy churn, drop them sooner so the heap stays near the
        // number of live connections.
        let http_conns = self.web.as_ref().map_or(0, |w| w.len());
        if self.deadlines.len() > 2 * (self.conns.len() + http_conns) + 1024 {
            let conns = &self.conns;
            let web = &self.web;
            self.deadlines.retain(|Reverse((_, t))| {
                conns.contains_key(t) || web.as_ref().is_some_and(|w| w.owns(*t))
            });
        }
        for (token, expiry) in expired {
            let Some(conn) = self.conns.get(&token) else {
                continue;
            };
            let what = expiry.to_string();
            let limit = match expiry {
                Expiry::Idle => self.limits.idle_timeout,
                Expiry::Deadline => self.limits.exchange_deadline,
            };
            let refusal = match conn.phase {
                Phase::Closing => None,
                _ => conn.session.on_expiry(expiry, limit),
            };
            let Some(refusal) = refusal else {
                // It had its answer; the peer is just slow to read or leave.
                self.close(token, &what);
                continue;
            };
            self.refuse(token, ErrorCode::from(&refusal), &refusal.to_string());
            // One try to send the reason, then close regardless: a peer that
            // is not reading must not hold the slot.
            if let Some(conn) = self.conns.get_mut(&token) {
                let _ = flush(conn);
            }
            self.close(token, &what);
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].paused_until.is_some() {
                self.accept(i);
            }
        }
        if self.web.as_ref().is_some_and(|w| w.is_paused()) {
            self.accept_http();
        }
    }
}

/// Queues an error frame in the form the connection's peer reads.
fn queue_error(conn: &mut Connection, code: ErrorCode, reason: &str) {
    framing::encode(&conn.session.error_frame(code, reason), &mut conn.outbuf);
}

/// Why reading from a connection stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadError {
    /// The connection sent more than its byte limit.
    TooManyBytes(u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooManyBytes(limit) => write!(f, "connection sent more than {limit} bytes"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Most reads spent discarding input from a connection that is closing,
/// per event: a peer that keeps sending must not hold the loop.
const DISCARD_READS: usize = 16;

/// Reads until the socket is drained, the peer closes, or a limit is hit.
///
/// A read shorter than the buffer has emptied the socket's receive queue,
/// so the read that would only say `EAGAIN` is skipped (one system call per
/// message): anything arriving later raises a new edge. Unless the event
/// announced the peer's FIN, which raises no new edge: then the socket is
/// read to its end so that the close is seen now. (One exception: Linux
/// stops a read at TCP urgent data, so a peer that sends some stalls its
/// own connection until its next segment or its limits; no one else's.)
fn read_all(
    conn: &mut Connection,
    scratch: &mut [u8],
    limits: &Limits,
    peer_closed: bool,
) -> Result<(), ReadError> {
    if conn.phase == Phase::Closing || conn.eof {
        // Nothing more will be handled; discard without buffering. (New
        // data raises a new edge, so stopping early loses nothing.)
        if discard_input(&mut conn.stream, scratch) {
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
                if conn.bytes_in > limits.max_conn_bytes {
                    return Err(ReadError::TooManyBytes(limits.max_conn_bytes));
                }
                conn.inbuf.extend_from_slice(&scratch[..n]);
                if n < scratch.len() && !peer_closed {
                    return Ok(());
                }
            }
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) if interrupted(&e) => continue,
            Err(e) => {
                // Reset by peer and the like: treat as a close.
                debug!("{}: read error: {e}", conn.peer);
                conn.eof = true;
                return Ok(());
            }
        }
    }
}

/// Reads and drops what a finished connection still sends, a bounded
/// number of reads (new data raises a new edge, so stopping early loses
/// nothing); true once the peer has closed.
fn discard_input(stream: &mut TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..DISCARD_READS {
        match stream.read(scratch) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if interrupted(&e) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// Writes as much of the output buffer as the socket takes.
fn flush(conn: &mut Connection) -> io::Result<()> {
    flush_buf(&mut conn.stream, &mut conn.outbuf)
}

/// Writes as much of `outbuf` to `stream` as it takes, and keeps the rest
/// (every connection kind: our protocol's and HTTP's).
fn flush_buf(stream: &mut TcpStream, outbuf: &mut Vec<u8>) -> io::Result<()> {
    let mut written = 0;
    while written < outbuf.len() {
        match stream.write(&outbuf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if would_block(&e) => break,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    outbuf.drain(..written);
    if outbuf.is_empty() && outbuf.capacity() > 4096 {
        *outbuf = Vec::new();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaKeyType, CertificateAuthority};
    use crate::client::{self, FramedStream, KeyType};
    use crate::store::SqliteStore;

    fn panicking_announce(_: &[Record]) {
        panic!("simulated bug in the commit thread");
    }

    /// The commit thread dies after making a batch durable (its
    /// `announce` panics): the client is told the outcome is unknown, not
    /// that nothing was kept, and the reactor stops with an error instead
    /// of serving on without a way to record anything.
    #[test]
    fn a_lost_writer_stops_the_reactor_and_says_the_outcome_is_unknown(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (ca, _) = CertificateAuthority::open(
            &dir.path().join("keys"),
            b"test passphrase",
            CaKeyType::P256,
            30,
        )?;
        let data = dir.path().join("data");
        let committer = Committer::start(
            Box::new(SqliteStore::open(&data)?),
            panicking_announce,
            Arc::new(Metrics::new()),
        )?;
        let shared = Shared {
            ca: Some(Arc::new(ca)),
            verifier: None,
            blackboard: None,
            store: Box::new(SqliteStore::open(&data)?),
            admission_secret: None,
            legacy: false,
            window: crate::course::Window::default(),
        };
        let listener = bind("127.0.0.1:0".parse()?, false)?;
        let addr = listener.local_addr()?;
        let mut reactor = Reactor::new(
            0,
            vec![(ServiceKind::Ca, listener)],
            shared,
            Limits::default(),
            &committer,
            None,
            false,
        )?;
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(reactor.run().is_err());
        });
        let mut conn = FramedStream::connect(&addr.to_string(), Duration::from_secs(10))?;
        let key = client::make_key(KeyType::Rsa2048)?;
        let mut ca_session = client::CaSession::open(&mut conn)?;
        match ca_session.request(
            &mut conn,
            client::make_csr("1155000009", &key)?,
            crate::message::EnrollAuth::Open,
        ) {
            Err(client::ClientError::Refused { code, reason }) => {
                assert_eq!(code, ErrorCode::Internal);
                assert!(
                    reason.contains("may or may not have been recorded"),
                    "{reason}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let stopped_with_error = done.recv_timeout(Duration::from_secs(10))?;
        assert!(stopped_with_error, "the reactor must stop with an error");
        committer.stop();
        Ok(())
    }
}
