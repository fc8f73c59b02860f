//! The event loop: one thread, one `mio::Poll`, the listeners and one
//! token → connection table, like the original Python `select` loop. No
//! socket ever blocks it: partial frames and requests are buffered, replies
//! are queued and flushed when the socket is writable, and every connection
//! runs under limits (bytes, messages, an idle timeout and a deadline for
//! the whole exchange). What the loop does wait on is the store's reads for
//! a session or an OCSP answer: with SQLite they are local and short; with
//! PostgreSQL they go over the network (a bounded-wait wrapper of the store
//! caps them).
//!
//! Every connection, whatever it speaks, is a transport part and a protocol
//! part ([`connection`]), with one accept path, one close path and one
//! deadline heap. A connection's turn handles at most [`WORK_PER_TURN`]
//! frames or requests (each may cost a signature); what is still buffered
//! waits in the ready queue, served round-robin, [`TURNS_PER_POLL`] turns
//! or [`READY_TIME_PER_POLL`] after each poll, so no client that pipelines
//! can hold the loop.
//! Connections in the middle of an upload have a queue of their own,
//! served second, their input never handled as it is read, and their
//! events looked at after the others': a chunk costs a MAC, a decryption
//! and a hash, and 20 of them must not stand between an enrollment and its
//! next frame. They have [`BULK_TURNS_PER_POLL`] turns after each poll, or
//! while other work is under way at most one per [`BULK_GAP`], and never
//! less than one per gap: a bounded share, not a wait for the others to be
//! done.
//!
//! Acknowledgments that promise durability (a certificate, a receipt) are
//! held back: the records made ready in a turn of the loop go to the
//! writer thread ([`commit`]) as one batch, and their frames are released
//! only when it says the batch is durable. The loop goes on serving
//! meanwhile; records made ready while a batch is in flight form the next
//! one, with a bounded share of upload chunks ([`batch`]) so that an
//! acknowledged record never waits behind many of them. Work too slow for
//! the loop goes to the worker pool ([`offload`]).
//!
//! Sockets live here and nowhere else.

mod batch;
pub(crate) mod commit;
mod connection;
pub(crate) mod delay;
pub(crate) mod fdlimit;
mod frames;
mod http;
mod listener;
pub(crate) mod offload;
mod transport;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, log, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::framing;
use crate::ops::metrics::Metrics;
use crate::ops::Ops;
use crate::protocol::{After, ConnectionError, Expiry, Output, ServiceKind, Shared};
use crate::store::Record;
use commit::{CommitError, CommitHandle, Committer, InFlight, Outcome};
use connection::{Connection, Env, Wait, Work};
use listener::{open_spare, out_of_descriptors, AcceptFailures, Listener, Serves};
use offload::{OffJob, WorkHandle, Workers};
use transport::{interrupted, would_block, Budget};

pub use http::HttpConnLimits;
pub(crate) use listener::{bind, bind_first_shared};

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
    /// Longest time a connection may wait between two whole frames or
    /// requests (and before its first); a slowloris trickle is cut off here.
    pub idle_timeout: Duration,
    /// Longest a connection may live, start to end.
    pub exchange_deadline: Duration,
    /// Most bytes of partial frames and requests buffered across all
    /// connections of a reactor, whatever they speak: without it, many
    /// connections each sending most of a large frame could exhaust memory.
    pub max_buffered: usize,
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
const WAKE_TOKEN: Token = Token(usize::MAX - 1);
/// Listener tokens are 0..LISTENER_TOKENS; connection tokens follow.
const LISTENER_TOKENS: usize = 16;
/// How often deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// How long records someone awaits may wait behind a batch the writer has
/// not finished (a database that stopped answering mid-`COMMIT`): then
/// they are refused as "store unavailable, nothing recorded", within about
/// a second as for a batch the writer never takes up, instead of waiting
/// for the database and being written after their clients gave up.
pub(crate) const BEHIND_STUCK_BATCH: Duration = Duration::from_secs(1);

/// The same bound for a store on the local disk (SQLite): a batch that
/// syncs large uploads' files may take seconds there, and only a disk
/// that hangs takes longer.
pub(crate) const BEHIND_STUCK_LOCAL_BATCH: Duration = Duration::from_secs(10);
/// Pause before accepting again after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most frames or requests one connection's turn handles: each may cost a
/// signature (an OCSP response, a certificate), so one, and the others
/// get theirs before this one's next.
const WORK_PER_TURN: usize = 1;
/// Most turns served from the ready queue between two polls: a client
/// that sends one new frame waits behind at most this many pipelined
/// units, not behind every connection's.
const TURNS_PER_POLL: usize = 8;
/// Most time the ready queue's turns take between two polls (the first
/// turn is always served): with each turn a signature (pipelined OCSP
/// POSTs, about 250 µs each with an RSA-2048 key), eight turns held a new
/// frame back 2 ms per step of its exchange, and an enrollment has four
/// (the connection, the hello, the request, the commit's answer). A poll
/// costs a few µs, so one after about every signature costs ~2% of them.
const READY_TIME_PER_POLL: Duration = Duration::from_micros(300);
/// Turns served from the uploads' ready queue after each poll while
/// nothing else is under way: a frame that comes in meanwhile waits for
/// this many chunks at most. One: beside 20 uploads an enrollment's steps
/// each waited for two chunks (0.1-0.2 ms each), and one poll more per
/// chunk costs no CPU per MiB the noise lets through (BENCHMARKS.md,
/// "Fourteenth session").
const BULK_TURNS_PER_POLL: usize = 1;
/// While other work is under way (a frame or request to handle, a
/// certificate or receipt being committed), uploads get one turn per this
/// at most: a chunk costs ~0.1-0.2 ms of the core (MAC, decryption, hash,
/// then its write on the commit thread), and twenty uploads taking their
/// turns made an honest enrollment wait 2.5-3x its time on an idle server
/// (BENCHMARKS.md, "Uploads yield to other exchanges"). A ceiling on their
/// turns, not a promised rate: a loop turn longer than the gap, or a
/// commit per chunk while an answer is awaited, gives them fewer; but
/// they are never left without a turn.
const BULK_GAP: Duration = Duration::from_millis(2);
/// Uploads' chunks in the writer's queue, all connections together, past
/// which each upload has one at most there (`Reactor::chunk_window`): two
/// batches' worth, so one upload alone still hands its chunks over a
/// batch at a time.
const CHUNKS_QUEUED_MAX: usize = 8;
// One upload alone must be able to fill its window.
const _: () = assert!(CHUNKS_QUEUED_MAX >= connection::CHUNK_WINDOW);

/// The batch the writer is committing.
#[derive(Debug)]
struct Flight {
    batch: InFlight,
    /// The connection awaiting each of its records, in order.
    tokens: Vec<Token>,
    /// Which of them are streamed chunks ([`connection::CHUNK_WINDOW`]):
    /// their connection holds no reply for them.
    streamed: Vec<bool>,
    /// It holds a record someone awaits an answer for (a certificate, a
    /// receipt): other work is under way until it is answered.
    answers: bool,
}

/// The single-threaded server loop.
pub(crate) struct Reactor {
    poll: Poll,
    listeners: Vec<Listener>,
    /// Every connection, whatever it speaks. Boxed: the table's slots (a
    /// third of them empty at any size) then cost a pointer, not a whole
    /// connection, which with 10,000 idle clients is most of the server's
    /// memory per connection (compare.sh's scale section).
    conns: HashMap<Token, Box<Connection>>,
    next_token: usize,
    /// Connections with input perhaps left to handle, served one turn each
    /// after every poll, in order.
    ready: VecDeque<Token>,
    /// The same for connections in the middle of an upload, served after
    /// `ready` ([`bulk_turns`]).
    ready_bulk: VecDeque<Token>,
    shared: Shared,
    limits: Limits,
    /// The HTTP listener's request limits and handler, when serving one.
    http_limits: HttpConnLimits,
    ops: Option<Ops>,
    /// The staff web interface, when serving one.
    staff: connection::StaffStart,
    /// Records made ready and not yet handed to the writer, with the
    /// connection awaiting each.
    pending: Vec<(Token, Record)>,
    /// When the oldest record of `pending` was made ready.
    pending_since: Option<Instant>,
    /// How long a batch may be held back for the records other exchanges
    /// owe ([`delay`]; zero: never).
    commit_delay: Duration,
    /// How long a batch in flight may take before the records behind it
    /// are refused ([`BEHIND_STUCK_BATCH`], plus the witnesses' wait when
    /// the writer waits for cosignatures).
    stuck_after: Duration,
    /// How many of this reactor's exchanges owe a record now.
    expected: Arc<AtomicUsize>,
    /// Connections whose job is on the worker pool (a signature): other
    /// work under way, which uploads give way to.
    off_loop: Arc<AtomicUsize>,
    /// Uploads' chunks handed to the writer and not yet answered for, all
    /// connections together ([`CHUNKS_QUEUED_MAX`]).
    chunks_queued: usize,
    /// The pending records are held back until then.
    held_until: Option<Instant>,
    /// They have been held back (counted once handed over).
    held: bool,
    /// The writer thread.
    commits: CommitHandle,
    /// The worker pool, when the server has one (legacy mode).
    workers: Option<WorkHandle>,
    /// The batch the writer is committing.
    in_flight: Option<Flight>,
    /// While other work is under way, the uploads' next turn is not before
    /// this ([`BULK_GAP`]).
    next_bulk: Instant,
    /// A poll's events of connections in the middle of an upload, handled
    /// after the others' (kept to reuse its allocation).
    upload_events: Vec<(Token, bool)>,
    /// The writer thread is gone: nothing can be recorded any more, so the
    /// reactor stops (with an error, for a supervisor to restart it).
    writer_lost: bool,
    /// This reactor's number, for the logs.
    id: usize,
    signals: Option<Signals>,
    scratch: Vec<u8>,
    /// Bytes held in all connections' input buffers.
    budget: Budget,
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
        let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
        let signals = if handle_signals {
            let mut s = Signals::new([SIGINT, SIGTERM])?;
            poll.registry()
                .register(&mut s, SIGNAL_TOKEN, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let mut reactor = Reactor {
            poll,
            listeners: Vec::new(),
            conns: HashMap::new(),
            next_token: LISTENER_TOKENS,
            ready: VecDeque::new(),
            ready_bulk: VecDeque::new(),
            budget: Budget::new(limits.max_buffered),
            shared,
            limits,
            http_limits: HttpConnLimits::default(),
            ops: None,
            staff: None,
            pending: Vec::new(),
            pending_since: None,
            commit_delay: Duration::from_millis(delay::DEFAULT_COMMIT_DELAY_MS.into()),
            stuck_after: BEHIND_STUCK_BATCH,
            expected: Arc::new(AtomicUsize::new(0)),
            off_loop: Arc::new(AtomicUsize::new(0)),
            chunks_queued: 0,
            held_until: None,
            held: false,
            commits: committer.handle(Arc::clone(&waker)),
            workers: workers.map(|w| w.handle(waker)),
            in_flight: None,
            next_bulk: Instant::now(),
            upload_events: Vec::new(),
            writer_lost: false,
            id,
            signals,
            scratch: vec![0u8; transport::READ_BUFFER],
            deadlines: BinaryHeap::new(),
            spare: open_spare(),
            accept_failures: AcceptFailures::default(),
            metrics: Arc::new(Metrics::new()),
        };
        for (kind, l) in listeners {
            reactor.listen(Serves::Frames(kind), l)?;
        }
        Ok(reactor)
    }

    /// Registers a bound listener.
    fn listen(&mut self, serves: Serves, listener: std::net::TcpListener) -> io::Result<()> {
        let idx = self.listeners.len();
        if idx >= LISTENER_TOKENS {
            return Err(io::Error::other(format!(
                "at most {LISTENER_TOKENS} listeners per reactor"
            )));
        }
        listener.set_nonblocking(true)?;
        let mut socket = TcpListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut socket, Token(idx), Interest::READABLE)?;
        self.listeners.push(Listener::new(serves, socket));
        Ok(())
    }

    /// Holds a small commit batch back at most `delay` while other
    /// exchanges owe their records (`server --commit-delay`; zero: never).
    /// How long a batch in flight may take before the records waiting
    /// behind it are refused (see [`BEHIND_STUCK_BATCH`]).
    pub(crate) fn set_stuck_after(&mut self, after: Duration) {
        self.stuck_after = after;
    }

    pub(crate) fn set_commit_delay(&mut self, delay: Duration) {
        self.commit_delay = delay;
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
        self.listen(Serves::Http, listener)?;
        self.ops = Some(ops);
        self.http_limits = limits;
        Ok(())
    }

    /// Also serves the staff web interface on `listener` (already
    /// bound); its requests run on the worker pool, which this reactor
    /// must have.
    pub(crate) fn serve_staff(
        &mut self,
        listener: std::net::TcpListener,
        app: std::sync::Arc<crate::staff::StaffApp>,
    ) -> io::Result<()> {
        if self.workers.is_none() {
            return Err(io::Error::other("the staff listener needs the worker pool"));
        }
        self.listen(Serves::Staff, listener)?;
        self.staff = Some(app);
        Ok(())
    }

    /// The bound address of each listener of our protocol, in order.
    pub(crate) fn local_addrs(&self) -> io::Result<Vec<(ServiceKind, SocketAddr)>> {
        self.listeners
            .iter()
            .filter_map(|l| match l.serves {
                Serves::Frames(kind) => Some(l.socket.local_addr().map(|a| (kind, a))),
                Serves::Http | Serves::Staff => None,
            })
            .collect()
    }

    /// Runs until SIGINT or SIGTERM (when handled), then closes everything.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            // Buffered work waiting: look at the sockets, but do not sleep
            // (uploads' work, until their next turn is due).
            let mut wake = self.held_until.map_or(next_sweep, |h| h.min(next_sweep));
            if !self.ready_bulk.is_empty() {
                wake = wake.min(self.bulk_due());
            }
            let timeout = if self.ready.is_empty() {
                wake.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if interrupted(&e) {
                    continue;
                }
                return Err(e);
            }
            // Uploads' reads come last: a frame of another exchange that
            // came with them is handled first, not after twenty chunks'
            // worth of reads.
            let mut uploads = std::mem::take(&mut self.upload_events);
            for event in events.iter() {
                match event.token() {
                    token if self.uploading(token) => {
                        uploads.push((token, event.is_read_closed()));
                    }
                    SIGNAL_TOKEN => {
                        if self.stop_requested() {
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    WAKE_TOKEN => {
                        self.collect_commit();
                        self.collect_offloaded();
                    }
                    Token(i) if i < LISTENER_TOKENS => self.accept(i),
                    token => self.on_event(token, event.is_read_closed()),
                }
            }
            // A certificate or a receipt made ready by those events goes to
            // the writer before the uploads' reads, not after.
            if !uploads.is_empty() {
                self.commit_answers_now();
            }
            for (token, peer_closed) in uploads.drain(..) {
                self.on_event(token, peer_closed);
            }
            self.upload_events = uploads;
            self.serve_ready();
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
        let waiting = self.pending.len() + self.in_flight.as_ref().map_or(0, |f| f.tokens.len());
        if waiting > 0 {
            info!(
                "reactor {}: waiting for {waiting} record(s) to be committed",
                self.id
            );
        }
        let answered = self.drain_commits();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(c) = self.conns.get_mut(&t) {
                if let Some(r) = c.shutdown_refusal() {
                    self.metrics.refused(r.label);
                    c.transport.outbuf.extend_from_slice(&r.bytes);
                }
                // One try: a peer not reading must not hold the stop.
                let _ = c.transport.flush();
            }
            self.close(t, "server shutting down");
        }
        // Closing an upload cut off queues the removal of its part file:
        // done now, not left for a later start to find; not when the
        // writer has stopped answering (a second wait of STOP_WAIT would
        // outlast a service manager's stop timeout: the next start's sweep
        // removes them).
        if answered {
            self.drain_commits();
        }
        info!("reactor {}: stopped", self.id);
    }

    /// The batch in flight has not come back for [`BEHIND_STUCK_BATCH`]:
    /// the records waiting behind it that someone awaits are taken out
    /// (never written) and their connections told to try later. Chunks and
    /// discards stay, in order: a refused upload's discard follows them.
    fn refuse_behind_stuck_batch(&mut self) {
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(self.pending.len());
        for (token, record) in std::mem::take(&mut self.pending) {
            let waiting = self
                .conns
                .get(&token)
                .is_some_and(|c| matches!(c.wait, Some(Wait::Commit { .. })));
            if batch::awaits_answer(&record) && waiting {
                refused.push(token);
            } else {
                kept.push((token, record));
            }
        }
        self.pending = kept;
        if self.pending.is_empty() {
            self.pending_since = None;
        }
        if refused.is_empty() {
            return;
        }
        warn!(
            "reactor {}: the database has not finished a commit in {:.1} s; {} record(s) \
             waiting behind it refused (nothing of them recorded)",
            self.id,
            self.stuck_after.as_secs_f32(),
            refused.len()
        );
        let secs = self.stuck_after.as_secs_f32();
        for token in refused {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.wait = None;
            }
            let unavailable = crate::store::Unavailable {
                target: format!("the database has not finished the previous commit in {secs:.1} s"),
                outcome_unknown: false,
                retry_in: Duration::ZERO,
                source: None,
            };
            self.refuse(
                token,
                ConnectionError::Commit(crate::store::StoreError::Unavailable(unavailable)),
            );
            self.after_io(token);
        }
    }

    /// Commits what is pending, batch after batch, waiting for each;
    /// whether the writer answered every batch (false once one timed out
    /// or found the writer gone: the rest are not sent to it).
    fn drain_commits(&mut self) -> bool {
        loop {
            if let Some(f) = self.in_flight.take() {
                let outcome = f.batch.wait();
                let lost = outcome
                    .iter()
                    .any(|o| matches!(o, Err(commit::CommitError::WriterLost(_))));
                self.release(f.tokens, f.streamed, outcome);
                if lost {
                    return false;
                }
            }
            self.commit_now();
            if self.in_flight.is_none() {
                return true;
            }
        }
    }

    /// Accepts every pending connection of listener `idx`, whatever it
    /// serves.
    fn accept(&mut self, idx: usize) {
        loop {
            let Some(slot) = self.listeners.get_mut(idx) else {
                return;
            };
            if slot.paused_until.is_some_and(|t| Instant::now() < t) {
                return;
            }
            slot.paused_until = None;
            let serves = slot.serves;
            let (mut stream, addr) = match slot.socket.accept() {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    self.accept_failures.note(serves, &e);
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
            if slot.active >= self.limits.max_connections {
                warn!(
                    "{addr}: refused: {} listener is at its limit of {} connections",
                    serves.name(),
                    self.limits.max_connections
                );
                // One best-effort write; the socket is new, so its buffer
                // is empty and this small answer fits.
                let _ =
                    stream.write(&serves.refusal_at_accept(&ConnectionError::TooManyConnections));
                self.metrics.connection_refused(serves.name());
                continue;
            }
            let token = Token(self.next_token);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
            {
                error!("{addr}: cannot register: {e}");
                continue;
            }
            self.next_token += 1;
            slot.active += 1;
            self.metrics.connection_accepted(serves.name());
            let _ = stream.set_nodelay(true);
            let peer = format!("{}:{addr}", serves.name());
            log!(serves.log_level(), "{peer}: connected");
            let (conn, out) = Connection::start(
                stream,
                serves,
                peer,
                idx,
                &self.shared,
                &self.limits,
                connection::HttpStart {
                    limits: self.http_limits,
                    staff: &self.staff,
                },
            );
            self.deadlines
                .push(Reverse((conn.transport.deadline(&self.limits), token)));
            self.conns.insert(token, Box::new(conn));
            self.apply_output(token, out);
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
                let answer = slot
                    .serves
                    .refusal_at_accept(&ConnectionError::OutOfDescriptors);
                // One best-effort write into the new socket's empty buffer.
                let _ = stream.write(&answer);
                self.accept_failures.refused(slot.serves, addr);
                true
            }
            Err(_) => false,
        };
        self.spare = open_spare();
        refused
    }

    /// A readiness event on a connection. `peer_closed`: the event says the
    /// peer's FIN (or a reset) has come.
    fn on_event(&mut self, token: Token, peer_closed: bool) {
        // Events for a token already closed are stale: ignore them.
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = conn.transport.flush() {
            self.close(token, &format!("write failed: {e}"));
            return;
        }
        // Waiting for a record, or for its turn in a ready queue, with
        // enough input buffered: not read now, so the sender is held by
        // TCP, not by our memory (each event would add a read's worth).
        // Reading resumes after its turn or its record.
        let held = conn.wait.is_some() || conn.queued;
        if held && conn.transport.at_high_water() {
            conn.transport.pause(peer_closed);
            self.after_io(token);
            return;
        }
        let read = conn.read_in(
            &mut self.scratch,
            &self.limits,
            &mut self.budget,
            peer_closed,
        );
        match read {
            Err(e) => self.refuse(token, e),
            // A queued connection's input waits its turn, in order; an
            // upload's chunk waits for the uploads' turns.
            Ok(()) if !conn.queued && conn.staged_upload().is_some() => conn.more = true,
            Ok(()) if !conn.queued => self.turn(token),
            Ok(()) => {}
        }
        self.after_io(token);
    }

    /// Whether `token` is a connection in the middle of an upload.
    fn uploading(&self, token: Token) -> bool {
        self.conns
            .get(&token)
            .is_some_and(|c| c.staged_upload().is_some())
    }

    /// Serves one turn to each of the next few connections of the ready
    /// queues (round-robin; [`TURNS_PER_POLL`] and [`READY_TIME_PER_POLL`]
    /// at most), then to as many of the uploads' as [`bulk_turns`] allows;
    /// those with work left go to the back.
    fn serve_ready(&mut self) {
        let bulk_turns = match self.ready_bulk.is_empty() {
            true => 0,
            false => bulk_turns(self.others_under_way(), Instant::now(), &mut self.next_bulk),
        };
        let started = Instant::now();
        let mut bulk_started = false;
        for (i, from_bulk) in
            turn_plan(self.ready.len(), self.ready_bulk.len(), bulk_turns).enumerate()
        {
            // The uploads' turns are not cut: they are few, and the gap
            // already paces them.
            if !from_bulk && i > 0 && started.elapsed() >= READY_TIME_PER_POLL {
                continue;
            }
            if from_bulk && !bulk_started {
                bulk_started = true;
                self.commit_answers_now();
            }
            let queue = if from_bulk {
                &mut self.ready_bulk
            } else {
                &mut self.ready
            };
            // Connections closed since they were queued do not use up a
            // turn (an upload's may be the only one for a gap).
            let next = loop {
                let Some(t) = queue.pop_front() else {
                    break None;
                };
                if let Some(conn) = self.conns.get_mut(&t) {
                    conn.queued = false;
                    break Some(t);
                }
            };
            let Some(token) = next else {
                continue;
            };
            self.turn(token);
            self.after_io(token);
        }
    }

    /// Hands the pending records to the writer now if one of them is
    /// awaited (a certificate, a receipt) and no batch is in flight: the
    /// uploads' reads and chunks that come next in the loop's turn cost
    /// 0.1-0.35 ms, which an enrollment beside 20 uploads waited before
    /// its commit began.
    fn commit_answers_now(&mut self) {
        if self.in_flight.is_none() && self.pending.iter().any(|(_, r)| batch::awaits_answer(r)) {
            self.start_commit();
        }
    }

    /// Whether work other than uploads' is under way: a connection's frame
    /// or request waiting for its turn, its job on the worker pool (a
    /// signature), or a record someone awaits the answer for (a
    /// certificate, a receipt) waiting for or in a commit.
    /// Not an exchange waiting for its peer: a client that sent a hello and
    /// went quiet must not slow the uploads.
    fn others_under_way(&self) -> bool {
        !self.ready.is_empty()
            || self.off_loop.load(Ordering::Relaxed) > 0
            || self.in_flight.as_ref().is_some_and(|f| f.answers)
            || self.pending.iter().any(|(_, r)| batch::awaits_answer(r))
    }

    /// How many of an upload's chunks may be in the writer's queue before
    /// it handles the next: [`connection::CHUNK_WINDOW`] while nothing else
    /// is under way and the writer's queue is short, else one. Streamed,
    /// the uploads' chunks kept the core busy writing (up to a window per
    /// upload queued, 80 chunks for 20 uploads) while an enrollment waited
    /// for its share (BENCHMARKS.md, "Chunks streamed to the writer"). One
    /// at a time is the pace uploads had before, when each chunk waited for
    /// its write: the writer is never more than a chunk per upload behind.
    fn chunk_window(&self) -> usize {
        chunk_window(self.others_under_way(), self.chunks_queued)
    }

    /// When the uploads' next turn is due: now, unless other work is under
    /// way ([`BULK_GAP`]).
    fn bulk_due(&self) -> Instant {
        if self.others_under_way() {
            self.next_bulk
        } else {
            Instant::now()
        }
    }

    /// One turn of a connection: at most [`WORK_PER_TURN`] frames or
    /// requests handled, while it may work.
    fn turn(&mut self, token: Token) {
        for _ in 0..WORK_PER_TURN {
            let window = self.chunk_window();
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if !conn.may_work(window) {
                return;
            }
            let mut env = Env {
                shared: &mut self.shared,
                ops: self.ops.as_mut(),
                metrics: &self.metrics,
            };
            let work = conn.next(&mut env);
            conn.transport.settle(&mut self.budget);
            conn.more = !matches!(work, Work::Idle) && conn.may_have_more();
            match work {
                Work::Idle => return,
                Work::Done => {}
                Work::Finish => conn.transport.finish(&mut self.budget),
                Work::Output(out) => self.apply_output(token, out),
                Work::Refuse(e) => self.refuse(token, e),
                Work::Offload(job) => self.offload(token, job),
            }
        }
    }

    /// Carries out a session's output: the one place the reactor reads an
    /// [`Output`].
    fn apply_output(&mut self, token: Token, out: Output) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        // Every step of a session comes through here.
        let awaits = conn.awaits_record();
        delay::sync(&mut conn.expected, awaits, &self.expected);
        if let Some(label) = out.refusal {
            self.metrics.refused(label);
        }
        let mut frames = Vec::new();
        for payload in &out.send {
            framing::encode(payload, &mut frames);
        }
        match out.then {
            After::Offload(job) => {
                conn.transport.outbuf.extend_from_slice(&frames);
                self.offload(token, OffJob::Session(job));
            }
            After::Persist(record @ Record::Chunk(_)) => {
                // Nothing is answered for a chunk: the connection takes
                // its next while the writer appends this one.
                conn.transport.outbuf.extend_from_slice(&frames);
                conn.chunks_in_commit += 1;
                self.chunks_queued += 1;
                self.stage(token, record);
            }
            After::Persist(record) => {
                conn.wait = Some(Wait::Commit {
                    held: frames,
                    close_after: out.close,
                });
                self.stage(token, record);
            }
            After::Nothing => {
                conn.transport.outbuf.extend_from_slice(&frames);
                if out.close {
                    conn.transport.finish(&mut self.budget);
                }
            }
        }
    }

    /// Queues `record` for the next commit batch.
    fn stage(&mut self, token: Token, record: Record) {
        if self.pending.is_empty() {
            self.pending_since = Some(Instant::now());
        }
        self.pending.push((token, record));
    }

    /// Hands `job` to the worker pool; the connection waits for it, or is
    /// refused when the pool is full (or missing).
    fn offload(&mut self, token: Token, job: OffJob) {
        let submitted = match &self.workers {
            Some(w) => w
                .submit(token, job)
                .map_err(|busy| ConnectionError::WorkersBusy { queue: busy.queue }),
            None => Err(ConnectionError::NoWorkers),
        };
        match submitted {
            Ok(ticket) => {
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.wait = Some(Wait::Work {
                        _ticket: ticket,
                        _counted: delay::Expected::new(&self.off_loop),
                    });
                }
            }
            Err(e) => self.refuse(token, e),
        }
    }

    /// Hands the records made ready to the writer as one batch, unless a
    /// batch is already in flight (they then wait for the next) or they
    /// are held back a moment for records other exchanges owe ([`delay`]).
    fn start_commit(&mut self) {
        self.held_until = None;
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        let more_chunks = !self.ready_bulk.is_empty() && !self.others_under_way();
        if batch::gathering(&self.pending, more_chunks) {
            return;
        }
        if let Some(since) = self.pending_since {
            let expected = self.expected.load(Ordering::Relaxed);
            let now = Instant::now();
            self.held_until = delay::hold_until(self.commit_delay, since, expected, now);
            if self.held_until.is_some() {
                self.held = true;
                return;
            }
        }
        self.commit_now();
    }

    /// Hands the records made ready to the writer as one batch, unless a
    /// batch is already in flight.
    fn commit_now(&mut self) {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        if std::mem::take(&mut self.held) {
            self.metrics.commit_held();
        }
        let cap = batch::cap_for(&self.pending);
        let (tokens, records): (Vec<Token>, Vec<Record>) =
            batch::take_batch(&mut self.pending, cap)
                .into_iter()
                .unzip();
        let answers = records.iter().any(batch::awaits_answer);
        let streamed = records
            .iter()
            .map(|r| matches!(r, Record::Chunk(_)))
            .collect();
        if self.pending.is_empty() {
            self.pending_since = None;
        }
        match self.commits.submit(records) {
            Ok(flight) => {
                self.in_flight = Some(Flight {
                    batch: flight,
                    tokens,
                    streamed,
                    answers,
                });
            }
            Err(e) => {
                error!("commit of {} record(s) failed: {e}", tokens.len());
                let outcomes = tokens
                    .iter()
                    .map(|_| Err(CommitError::WriterLost("the commit thread has stopped")))
                    .collect();
                self.release(tokens, streamed, outcomes);
            }
        }
    }

    /// Takes the writer's answer for the batch in flight, if it has come,
    /// and sends the next batch.
    fn collect_commit(&mut self) {
        let Some(outcome) = self.in_flight.as_ref().and_then(|f| f.batch.poll()) else {
            return;
        };
        if let Some(f) = self.in_flight.take() {
            self.release(f.tokens, f.streamed, outcome);
        }
        self.start_commit();
    }

    /// Feeds each finished off-loop job back to its connection, if it is
    /// still waiting for it (else the result is dropped).
    fn collect_offloaded(&mut self) {
        let Some(workers) = &self.workers else {
            return;
        };
        let finished: Vec<_> = workers.finished().collect();
        for (token, done) in finished {
            let Some(conn) = self.conns.get_mut(&token) else {
                log::debug!("off-loop result for a closed connection dropped");
                continue;
            };
            if !matches!(conn.wait, Some(Wait::Work { .. })) {
                continue; // refused meanwhile (a limit): its error is queued
            }
            conn.wait = None;
            let out = conn.on_offloaded(done);
            self.apply_output(token, out);
            // Input that arrived meanwhile is handled now.
            self.turn(token);
            self.after_io(token);
        }
    }

    /// Releases the replies held for a batch, each by its own record's
    /// outcome; a reply whose record is not known to be durable is replaced
    /// with an error that says what is known.
    fn release(&mut self, tokens: Vec<Token>, streamed: Vec<bool>, outcomes: Vec<Outcome>) {
        for ((token, outcome), streamed) in tokens.into_iter().zip(outcomes).zip(streamed) {
            let (logged, failure) = match outcome {
                Ok(logged) => (logged, None),
                Err(CommitError::Store(e)) => (None, Some(ConnectionError::Commit(e))),
                // The store reconnects: unlike a lost writer, the server goes on.
                Err(CommitError::OutcomeUnknown(_)) => {
                    (None, Some(ConnectionError::CommitOutcomeUnknown))
                }
                Err(CommitError::WriterLost(_)) => {
                    self.writer_lost = true;
                    (None, Some(ConnectionError::WriterLost))
                }
            };
            if streamed {
                self.chunk_answered(token, failure);
                continue;
            }
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let (held, close_after) = match conn.wait.take() {
                Some(Wait::Commit { held, close_after }) => (held, close_after),
                other => {
                    // Refused meanwhile (a limit): its error is queued.
                    conn.wait = other;
                    continue;
                }
            };
            // The server answers now: the peer's silence counts from here,
            // not from its last frame (a commit may outlast the idle time).
            conn.transport.touch();
            match failure {
                None => {
                    conn.transport.outbuf.extend_from_slice(&held);
                    if close_after {
                        conn.transport.finish(&mut self.budget);
                    }
                    // Durable now: whatever the session makes only after
                    // that (a signed receipt) goes out behind the held frames.
                    let after = conn.on_committed(&mut self.shared, logged);
                    self.apply_output(token, after);
                }
                Some(e) => self.refuse(token, e),
            }
            if let Some(conn) = self.conns.get_mut(&token) {
                if conn.transport.take_paused() {
                    let read =
                        conn.read_in(&mut self.scratch, &self.limits, &mut self.budget, false);
                    if let Err(e) = read {
                        self.refuse(token, e);
                    }
                }
            }
            // Input that arrived meanwhile is handled now; an upload's
            // next chunk waits its turn in the uploads' queue.
            if self.uploading(token) {
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.more = true;
                }
            } else {
                self.turn(token);
            }
            self.after_io(token);
        }
    }

    /// The writer's answer for one of an upload's streamed chunks: a
    /// failure refuses the upload (once: its later chunks fail too, as its
    /// file then misses one), a success opens the window for the next.
    fn chunk_answered(&mut self, token: Token, failure: Option<ConnectionError>) {
        self.chunks_queued = self.chunks_queued.saturating_sub(1);
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.chunks_in_commit = conn.chunks_in_commit.saturating_sub(1);
        match failure {
            Some(e) if !conn.transport.closing() => self.refuse(token, e),
            Some(_) => {}
            None => {
                // Its timers were held while the writer had it: the
                // peer's silence counts from now.
                conn.transport.touch();
                conn.more = true;
            }
        }
        self.after_io(token);
    }

    /// Queues the refusal, in the form the peer reads, and closes after
    /// it; nothing more is read, and held replies are dropped.
    fn refuse(&mut self, token: Token, e: ConnectionError) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if e.is_server_fault() {
            error!("{}: {e}", conn.peer);
        } else {
            warn!("{}: {e}", conn.peer);
        }
        let refused = conn.refusal(&e);
        self.metrics.refused(refused.label);
        conn.transport.outbuf.extend_from_slice(&refused.bytes);
        conn.transport.finish(&mut self.budget);
        conn.wait = None;
        // It owes nothing any more.
        conn.expected = None;
    }

    /// After reading or queueing: flush, close when finished, queue what
    /// has work left, and set the interest to match what the connection
    /// is waiting for.
    fn after_io(&mut self, token: Token) {
        let window = self.chunk_window();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = conn.transport.flush() {
            self.close(token, &format!("write failed: {e}"));
            return;
        }
        let drained = conn.transport.drained();
        if drained && conn.transport.closing() {
            self.close(token, "exchange finished");
            return;
        }
        // Read at the high-water mark, and the handler has taken from the
        // buffer since: read on now, as the socket raises no new edge for
        // what it already holds.
        if conn.wait.is_none() && conn.transport.may_resume() {
            conn.transport.take_paused();
            let before = conn.transport.inbuf.len();
            let read = conn.read_in(&mut self.scratch, &self.limits, &mut self.budget, false);
            if let Err(e) = read {
                self.refuse(token, e);
                self.after_io(token);
                return;
            }
            conn.more |= conn.transport.inbuf.len() > before || conn.transport.eof();
        }
        let work_left = conn.more && conn.may_work(window);
        if conn.transport.eof() {
            // Never work for nobody: its job is dropped with the ticket.
            if matches!(conn.wait, Some(Wait::Work { .. })) {
                self.close(
                    token,
                    "peer closed the connection; its off-loop work is dropped",
                );
                return;
            }
            if drained && !conn.owed() && !work_left {
                self.close(token, "peer closed the connection");
                return;
            }
        }
        if work_left && !conn.queued {
            conn.queued = true;
            if conn.staged_upload().is_some() {
                self.ready_bulk.push_back(token);
            } else {
                self.ready.push_back(token);
            }
        }
        let wanted = conn.transport.wanted_interest();
        if conn.transport.interest_changes(wanted) {
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(conn.transport.stream_mut(), token, wanted)
            {
                self.close(token, &format!("reregister failed: {e}"));
            }
        }
    }

    /// The one way a connection ends.
    fn close(&mut self, token: Token, why: &str) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        // An upload cut off: its staged chunks go (after any chunk of it
        // still in flight, as batches commit in order).
        if let Some(upload_id) = conn.staged_upload() {
            self.pending
                .push((token, Record::DiscardUpload { upload_id }));
        }
        conn.transport.release(&mut self.budget);
        let _ = self.poll.registry().deregister(conn.transport.stream_mut());
        if let Some(slot) = self.listeners.get_mut(conn.listener) {
            slot.active = slot.active.saturating_sub(1);
            self.metrics.connection_closed(slot.serves.name());
            log!(slot.serves.log_level(), "{}: closed ({why})", conn.peer);
        }
    }

    /// Enforces the idle timeout and the exchange deadline, and retries
    /// paused listeners.
    fn sweep(&mut self) {
        // A writer that died answers no more: notice it here.
        self.collect_commit();
        let stuck = self
            .in_flight
            .as_ref()
            .map(|f| f.batch.age())
            .filter(|age| *age >= self.stuck_after);
        if let Some(ops) = self.ops.as_mut() {
            ops.set_commit_stuck(stuck);
        }
        if stuck.is_some() {
            self.refuse_behind_stuck_batch();
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        while let Some(Reverse((due, token))) = self.deadlines.peek().copied() {
            if due > now {
                break;
            }
            self.deadlines.pop();
            let Some(c) = self.conns.get(&token) else {
                continue; // closed since
            };
            if let Some(expiry) = c.expired(now, &self.limits) {
                expired.push((token, expiry));
            } else {
                // Never before the next sweep, so this loop ends (one
                // waiting on the server is looked at again then).
                let next = c.transport.deadline(&self.limits).max(now + SWEEP_EVERY);
                self.deadlines.push(Reverse((next, token)));
            }
        }
        // Entries of closed connections wait for their time to be dropped;
        // under heavy churn, drop them sooner so the heap stays near the
        // number of live connections.
        if self.deadlines.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.deadlines
                .retain(|Reverse((_, t))| conns.contains_key(t));
        }
        for (token, expiry) in expired {
            self.expire(token, expiry);
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].paused_until.is_some() {
                self.accept(i);
            }
        }
    }

    /// A time limit of `token` is reached: the peer is told if it is owed
    /// an answer, then the connection closes.
    fn expire(&mut self, token: Token, expiry: Expiry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let limit = match expiry {
            Expiry::Idle => self.limits.idle_timeout,
            Expiry::Deadline => self.limits.exchange_deadline,
        };
        // A closing connection had its answer; the peer is just slow to
        // read or leave.
        let refused = if conn.transport.closing() {
            None
        } else {
            conn.on_expiry(expiry, limit)
        };
        if let Some(r) = refused {
            warn!("{}: {}", conn.peer, r.reason);
            self.metrics.refused(r.label);
            conn.transport.outbuf.extend_from_slice(&r.bytes);
            // One try to send the reason, then close regardless: a peer
            // that is not reading must not hold the slot.
            let _ = conn.transport.flush();
        }
        self.close(token, &expiry.to_string());
    }
}

/// How many uploads' turns this poll: [`BULK_TURNS_PER_POLL`], or while
/// `others` (work other than uploads') are under way one per [`BULK_GAP`]
/// (`next` is when the next is due, moved on when one is given).
fn bulk_turns(others: bool, now: Instant, next: &mut Instant) -> usize {
    if !others {
        BULK_TURNS_PER_POLL
    } else if now >= *next {
        *next = now + BULK_GAP;
        1
    } else {
        0
    }
}

/// Which queue each turn after a poll comes from (`true`: the uploads'),
/// given how many connections wait in each: the others first, at most
/// [`Reactor::chunk_window`]: `others`, another exchange's work is under
/// way; `queued`, the chunks in the writer's queue.
fn chunk_window(others: bool, queued: usize) -> usize {
    if others || queued >= CHUNKS_QUEUED_MAX {
        1
    } else {
        connection::CHUNK_WINDOW
    }
}

/// [`TURNS_PER_POLL`], then at most `bulk_turns` uploads.
fn turn_plan(ready: usize, bulk: usize, bulk_turns: usize) -> impl Iterator<Item = bool> {
    let first = ready.min(TURNS_PER_POLL);
    let bulk = bulk.min(bulk_turns);
    (0..first + bulk).map(move |i| i >= first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{self, FramedStream, KeyType};
    use crate::message::ErrorCode;
    use crate::store::SqliteStore;
    use crate::testing::{CaParams, SharedBuilder};

    #[test]
    fn uploads_take_their_turns_after_the_others_and_always_some() {
        let plan = |r, b| turn_plan(r, b, BULK_TURNS_PER_POLL).collect::<Vec<bool>>();
        // Other connections first; uploads' turns follow, however many
        // other connections wait.
        let mut one_then_uploads = vec![false];
        one_then_uploads.extend([true; BULK_TURNS_PER_POLL]);
        assert_eq!(plan(1, 5), one_then_uploads);
        let busy = plan(100, 100);
        assert_eq!(busy.len(), TURNS_PER_POLL + BULK_TURNS_PER_POLL);
        assert_eq!(busy.iter().filter(|&&b| b).count(), BULK_TURNS_PER_POLL);
        assert!(busy[..TURNS_PER_POLL].iter().all(|&b| !b));
        // Alone, uploads get their share of turns a poll, no more.
        assert_eq!(plan(0, 20), vec![true; BULK_TURNS_PER_POLL]);
        assert!(plan(0, 0).is_empty());
        // Yielding to other work: one upload turn, or none.
        assert_eq!(
            turn_plan(2, 20, 1).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        assert_eq!(turn_plan(0, 20, 0).count(), 0);
    }

    #[test]
    fn an_upload_has_a_window_of_chunks_at_the_writer_only_while_nothing_else_waits() {
        assert_eq!(chunk_window(false, 0), connection::CHUNK_WINDOW);
        assert_eq!(
            chunk_window(false, CHUNKS_QUEUED_MAX - 1),
            connection::CHUNK_WINDOW
        );
        // The writer's queue long (many uploads), or another exchange at
        // work: one chunk each, as when every chunk waited for its write.
        assert_eq!(chunk_window(false, CHUNKS_QUEUED_MAX), 1);
        assert_eq!(chunk_window(true, 0), 1);
        // Never none: a window of one still lets each upload go on, and a
        // connection with nothing at the writer always may work.
        assert!(chunk_window(true, usize::MAX) >= 1);
    }

    #[test]
    fn uploads_yield_to_other_work_one_turn_per_gap_never_none() {
        let t0 = Instant::now();
        let mut next = t0;
        // Nothing else under way: the uploads' whole share, every poll.
        assert_eq!(bulk_turns(false, t0, &mut next), BULK_TURNS_PER_POLL);
        assert_eq!(bulk_turns(false, t0, &mut next), BULK_TURNS_PER_POLL);
        assert_eq!(next, t0, "no gap owed");
        // Another exchange's work under way: one turn, then none until
        // the gap has passed, then one again.
        assert_eq!(bulk_turns(true, t0, &mut next), 1);
        assert_eq!(next, t0 + BULK_GAP);
        assert_eq!(bulk_turns(true, t0 + BULK_GAP / 2, &mut next), 0);
        assert_eq!(bulk_turns(true, t0 + BULK_GAP, &mut next), 1);
        assert_eq!(next, t0 + 2 * BULK_GAP);
        // Once it is done, the whole share at once.
        assert_eq!(
            bulk_turns(false, t0 + BULK_GAP, &mut next),
            BULK_TURNS_PER_POLL
        );
    }

    /// The reactor only builds the error; its code and whether it is the
    /// server's fault are decided on the protocol side.
    #[test]
    fn connection_errors_carry_their_code_and_fault() {
        use crate::store::StoreError;
        let cases = [
            (ConnectionError::TooManyConnections, ErrorCode::Limit, false),
            (
                ConnectionError::Overloaded { max_buffered: 9 },
                ErrorCode::Limit,
                false,
            ),
            (
                ConnectionError::Commit(StoreError::CodeUsed { sid: "1".into() }),
                ErrorCode::CodeUsed,
                false,
            ),
            (
                ConnectionError::Commit(StoreError::Duplicate("x".into())),
                ErrorCode::Internal,
                true,
            ),
            (ConnectionError::WriterLost, ErrorCode::Internal, true),
            (ConnectionError::ShuttingDown, ErrorCode::Limit, false),
        ];
        for (e, code, fault) in cases {
            assert_eq!(ErrorCode::from(&e), code, "{e}");
            assert_eq!(e.is_server_fault(), fault, "{e}");
        }
        assert!(ConnectionError::Overloaded { max_buffered: 9 }
            .to_string()
            .contains("unfinished frames in flight"));
    }

    /// A reactor serving the CA of a test CA in `dir/keys`, its records
    /// through `committer`, its reads from the SQLite store in `data`;
    /// returns it with its listening address.
    fn ca_reactor(
        dir: &std::path::Path,
        data: &std::path::Path,
        committer: &Committer,
    ) -> Result<(Reactor, std::net::SocketAddr), Box<dyn std::error::Error>> {
        let ca = CaParams::default().create(&dir.join("keys"))?;
        let shared = SharedBuilder::new()
            .ca(Some(Arc::new(ca)))
            .store(SqliteStore::open(data)?)
            .build()?;
        let listener = bind("127.0.0.1:0".parse()?, false)?;
        let addr = listener.local_addr()?;
        let reactor = Reactor::new(
            0,
            vec![(ServiceKind::Ca, listener)],
            shared,
            Limits::default(),
            committer,
            None,
            false,
        )?;
        Ok((reactor, addr))
    }

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
        let data = dir.path().join("data");
        let committer = Committer::start(
            Box::new(SqliteStore::open(&data)?),
            panicking_announce,
            Arc::new(Metrics::new()),
        )?;
        let (mut reactor, addr) = ca_reactor(dir.path(), &data, &committer)?;
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

    /// A batch the database does not finish (a COMMIT that never returns):
    /// a request whose record waits behind it is told to try later within
    /// about a second, and its record is never written; the stuck one is
    /// answered when the database comes back.
    #[test]
    fn a_record_behind_a_commit_that_does_not_return_is_refused_and_never_written(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let (go, gate) = std::sync::mpsc::channel();
        let stuck = crate::store::gated::Gated {
            inner: SqliteStore::open(&data)?,
            at: crate::store::gated::GatedCall::Commit,
            open: Arc::new(std::sync::Mutex::new(gate)),
        };
        let committer =
            Committer::start(Box::new(stuck), |_: &[Record]| {}, Arc::new(Metrics::new()))?;
        let (mut reactor, addr) = ca_reactor(dir.path(), &data, &committer)?;
        let addr = addr.to_string();
        std::thread::spawn(move || {
            let _ = reactor.run();
        });
        let enroll = |addr: String, sid: &'static str| {
            std::thread::spawn(move || -> Result<(), client::ClientError> {
                let mut conn = FramedStream::connect(&addr, Duration::from_secs(20))?;
                let key = client::make_key(KeyType::Rsa2048)?;
                let mut ca_session = client::CaSession::open(&mut conn)?;
                ca_session
                    .request(
                        &mut conn,
                        client::make_csr(sid, &key)?,
                        crate::message::EnrollAuth::Open,
                    )
                    .map(|_| ())
            })
        };
        // The first certificate's commit hangs at the database.
        let first = enroll(addr.clone(), "1155000001");
        std::thread::sleep(Duration::from_millis(500));
        // The second waits behind it, then is refused: try later.
        let t = Instant::now();
        match enroll(addr.clone(), "1155000002").join() {
            Ok(Err(client::ClientError::Refused { code, reason })) => {
                assert_eq!(code, ErrorCode::StoreUnavailable, "{reason}");
                assert!(reason.contains("nothing was acknowledged"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // The database answers again: the first is issued, the second was
        // never written.
        go.send(())?;
        drop(go);
        match first.join() {
            Ok(r) => r?,
            Err(_) => panic!("the first enrollment's thread panicked"),
        }
        let sids: Vec<String> = crate::store::Storage::certs(&mut SqliteStore::open(&data)?)?
            .into_iter()
            .map(|c| c.sid)
            .collect();
        assert_eq!(sids, ["1155000001"]);
        // The reactor serves on (its thread ends with the test process):
        // the commit thread is left to it, not stopped.
        drop(committer);
        Ok(())
    }
}
