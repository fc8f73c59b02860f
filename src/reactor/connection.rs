//! A connection: its transport part ([`Transport`]: bytes, limits, timers)
//! and its protocol part ([`Handler`]: frames for a session, or HTTP
//! requests for the operations endpoints). The reactor drives every
//! connection the same way and never asks which kind it is: it asks the
//! handler for the next unit of work, and carries out what comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::frames::Frames;
use super::http::{Http, HttpConnLimits, Staff};
use super::listener::Serves;
use super::offload::{OffDone, OffJob};
use super::transport::{Budget, Transport};
use super::Limits;
use crate::ops::metrics::Metrics;
use crate::ops::Ops;
use crate::protocol::{ConnectionError, Expiry, Output, Shared};
use crate::staff::StaffApp;
use crate::store::tlog::Logged;

/// What one unit of a connection's work came to.
#[derive(Debug)]
pub(super) enum Work {
    /// Nothing whole is buffered: the turn ends.
    Idle,
    /// One frame or request handled, its answer queued.
    Done,
    /// One handled, and the connection ends once its answer is out.
    Finish,
    /// A session's step, for the reactor to carry out.
    Output(Output),
    /// Refuse the peer and close.
    Refuse(ConnectionError),
    /// Work for the pool before the connection goes on (a staff request).
    Offload(OffJob),
}

/// A refusal in the form the peer reads, with its metrics label and the
/// reason for the log.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) bytes: Vec<u8>,
    pub(super) label: &'static str,
    pub(super) reason: String,
}

/// What a handler may use while it works: the reactor's shared services.
pub(super) struct Env<'a> {
    pub(super) shared: &'a mut Shared,
    pub(super) ops: Option<&'a mut Ops>,
    pub(super) metrics: &'a Metrics,
}

/// What a staff connection starts with.
pub(super) type StaffStart = Option<Arc<StaffApp>>;

/// What an HTTP connection (operations or staff) starts with.
pub(super) struct HttpStart<'a> {
    pub(super) limits: HttpConnLimits,
    pub(super) staff: &'a StaffStart,
}

/// A connection's protocol part.
#[derive(Debug)]
pub(super) enum Handler {
    Frames(Frames),
    // Boxed: a connection sits in the reactor's table whatever its kind,
    // and the HTTP parsers' state is twice a frame connection's; inline it
    // made every one of 10,000 idle enrollment connections pay for it
    // (compare.sh's RSS per idle connection).
    Http(Box<Http>),
    Staff(Box<Staff>),
}

/// What a connection waits for, off the loop, before it goes on: frames
/// that arrive meanwhile are buffered, not handled.
#[derive(Debug)]
pub(super) enum Wait {
    /// Its reply is held until the turn's batch is committed.
    Commit {
        /// The frames waiting on the group commit.
        held: Vec<u8>,
        /// Close once they are out.
        close_after: bool,
    },
    /// Work on the worker pool.
    Work {
        /// Held while the job waits: dropping it (the connection closed)
        /// makes the pool skip the job.
        _ticket: Arc<()>,
        /// Counted in the reactor's tally of jobs off the loop while it
        /// waits, however the wait ends.
        _counted: super::delay::Expected,
    },
}

/// One connection of the reactor's one table.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) transport: Transport<TcpStream>,
    handler: Handler,
    pub(super) peer: String,
    /// Index of the listener it came in on.
    pub(super) listener: usize,
    pub(super) wait: Option<Wait>,
    /// In the reactor's ready queue.
    pub(super) queued: bool,
    /// The last turn stopped with input perhaps left to handle.
    pub(super) more: bool,
    /// Counted in the reactor's tally of exchanges owing a record
    /// ([`super::delay`]) while its session awaits one.
    pub(super) expected: Option<super::delay::Expected>,
    /// An upload's chunks handed to the writer and not yet answered for:
    /// it handles its next while they are written, up to [`CHUNK_WINDOW`].
    pub(super) chunks_in_commit: usize,
}

/// Most chunks of one upload handed to the writer and not yet answered
/// for, while no other exchange's work is under way (then one: see
/// `Reactor::chunk_window`). Nothing is acknowledged to the peer for a chunk, so the next need
/// not wait for its write: waiting made every chunk a round trip to the
/// commit thread and back (two wake-ups and switches per 64 KiB,
/// BENCHMARKS.md, "Chunks streamed to the writer"). Four chunks (256 KiB)
/// bound what an upload holds in the writer's queue, as
/// `INPUT_HIGH_WATER` bounds its input buffer.
pub(super) const CHUNK_WINDOW: usize = 4;

/// A staff connection's kernel send buffer (the kernel doubles it).
const STAFF_SEND_BUFFER: usize = 128 * 1024;

impl Connection {
    /// A connection accepted on a listener that `serves`, and what to send
    /// at once.
    pub(super) fn start(
        stream: TcpStream,
        serves: Serves,
        peer: String,
        listener: usize,
        shared: &Shared,
        limits: &Limits,
        http: HttpStart<'_>,
    ) -> (Connection, Output) {
        let HttpStart {
            limits: http_limits,
            staff,
        } = http;
        // Code guesses and staff logins are counted per source address. A
        // socket whose peer is already gone counts under 0.0.0.0: it will
        // send nothing anyway.
        let source = stream
            .peer_addr()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
        let (handler, out) = match (serves, staff) {
            (Serves::Frames(kind), _) => {
                let (f, out) = Frames::start(kind, shared, limits, source);
                (Handler::Frames(f), out)
            }
            (Serves::Staff, Some(app)) => (
                Handler::Staff(Box::new(Staff::new(http_limits, Arc::clone(app), source))),
                Output::default(),
            ),
            // Never: a staff listener comes with its app. An HTTP
            // connection answers what it can.
            (Serves::Http | Serves::Staff, _) => (
                Handler::Http(Box::new(Http::new(http_limits))),
                Output::default(),
            ),
        };
        let mut transport = Transport::new(stream, Instant::now());
        if let Handler::Staff(_) = handler {
            // A staff form's body comes whole to the pool (up to
            // MAX_BODY): the connection may buffer that much.
            transport.set_high_water(http_limits.request.max_head + crate::staff::MAX_BODY);
            transport.output_is_progress();
            // Downloads: a kernel send buffer grown to megabytes would
            // let a slow reader go many seconds between two writes, which
            // the idle timer would take for silence; a small one makes
            // every ~100 KiB read a write the timers see.
            let _ = socket2::SockRef::from(&*transport.stream_mut())
                .set_send_buffer_size(STAFF_SEND_BUFFER);
        }
        let conn = Connection {
            transport,
            handler,
            peer,
            listener,
            wait: None,
            queued: false,
            more: false,
            expected: None,
            chunks_in_commit: 0,
        };
        (conn, out)
    }

    /// Which of its time limits it has reached at `now`, if any; none
    /// while it waits on the server rather than on its peer: its record's
    /// commit, the writer's answer for a chunk, or its turn in a ready
    /// queue with a whole frame buffered.
    /// Under load the uploads' turns come at most one per gap, so a peer
    /// whose chunks all sit in the buffer and the socket may wait longer
    /// than the idle timeout for the server to take the next: the server's
    /// pace, never the peer's fault. Queued with a part of a frame only, it
    /// is the peer that owes the rest: a peer trickling bytes is cut as
    /// ever. The timers count again from its next frame taken (the idle
    /// timer; the end of a commit too) or chunk (an upload's deadline).
    pub(super) fn expired(&self, now: Instant, limits: &Limits) -> Option<Expiry> {
        if matches!(self.wait, Some(Wait::Commit { .. }))
            || self.chunks_in_commit > 0
            || (self.queued && self.holds_frame())
        {
            return None;
        }
        self.transport.expired(now, limits)
    }

    /// Whether a whole frame waits in its buffer for its turn (HTTP
    /// connections are served without a gap: never held for it).
    fn holds_frame(&self) -> bool {
        match &self.handler {
            Handler::Frames(f) => f.holds_frame(&self.transport.inbuf),
            Handler::Http(_) | Handler::Staff(_) => false,
        }
    }

    /// Whether a turn may have work after one that did some: input it can
    /// act on without another byte from its peer (for frames a whole frame
    /// or a header to refuse; for HTTP anything buffered, as requests leave
    /// the buffer whole), or, on the staff listener, a download's body to
    /// go on with. A connection queued only in case, whose next frame came
    /// while it waited, was served a whole queue later (64 pipelining
    /// connections ahead: an enrollment's request step took 3.5 ms instead
    /// of 0.35, BENCHMARKS.md "Pipelining beside an honest student").
    pub(super) fn may_have_more(&self) -> bool {
        match &self.handler {
            Handler::Frames(f) => f.has_next(&self.transport.inbuf),
            Handler::Http(_) => !self.transport.inbuf.is_empty(),
            Handler::Staff(_) => true,
        }
    }

    /// Whether it may handle input now: waiting for nothing, not closing,
    /// its peer reading what it is sent, fewer than `window` of its chunks
    /// in the writer's queue.
    pub(super) fn may_work(&self, window: usize) -> bool {
        self.wait.is_none() && self.chunks_in_commit < window && self.transport.can_work()
    }

    /// Whether the server owes it something still: a job's result, a
    /// commit, or the writer's answer for a chunk (a peer that closed its
    /// side after its last frame is served until then).
    pub(super) fn owed(&self) -> bool {
        self.wait.is_some() || self.chunks_in_commit > 0
    }

    /// Handles the next whole frame or request buffered, if any.
    pub(super) fn next(&mut self, env: &mut Env<'_>) -> Work {
        match &mut self.handler {
            Handler::Frames(f) => f.next(&mut self.transport, env.shared, &self.peer),
            Handler::Http(h) => match env.ops.as_deref_mut() {
                Some(ops) => h.next(
                    &mut self.transport,
                    ops,
                    &mut *env.shared.store,
                    env.metrics,
                    &self.peer,
                ),
                // Never: only a reactor serving HTTP, with its `Ops`,
                // accepts HTTP connections. Closing is the safe answer.
                None => Work::Finish,
            },
            Handler::Staff(s) => s.next(&mut self.transport, env.metrics, &self.peer),
        }
    }

    /// `e` in the form the peer reads.
    pub(super) fn refusal(&self, e: &ConnectionError) -> Refused {
        match &self.handler {
            Handler::Frames(f) => f.refusal(e),
            Handler::Http(h) => h.refusal(e),
            Handler::Staff(_) => Http::refusal_of(e),
        }
    }

    /// What to send as the server stops, if anything: a frame connection
    /// not yet finished is told why it is cut off; an HTTP one only in the
    /// middle of a request (one kept alive between requests just closes).
    pub(super) fn shutdown_refusal(&self) -> Option<Refused> {
        if self.transport.closing() {
            return None;
        }
        let owes = match &self.handler {
            Handler::Frames(_) => true,
            Handler::Http(_) | Handler::Staff(_) => {
                !self.transport.inbuf.is_empty() || self.wait.is_some()
            }
        };
        owes.then(|| self.refusal(&ConnectionError::ShuttingDown))
    }

    /// What to send as a time limit is reached, if anything.
    pub(super) fn on_expiry(&self, expiry: Expiry, limit: Duration) -> Option<Refused> {
        match &self.handler {
            Handler::Frames(f) => f.on_expiry(expiry, limit),
            Handler::Http(h) => h.on_expiry(expiry, &self.transport),
            Handler::Staff(s) => s.on_expiry(expiry, &self.transport),
        }
    }

    /// Whether its peer owes the message that makes a record now.
    pub(super) fn awaits_record(&self) -> bool {
        match &self.handler {
            Handler::Frames(f) => f.awaits_record(),
            Handler::Http(_) | Handler::Staff(_) => false,
        }
    }

    /// Reads what its socket holds, as far as its protocol part wants
    /// now ([`Transport::read_in`]).
    pub(super) fn read_in(
        &mut self,
        scratch: &mut [u8],
        limits: &Limits,
        budget: &mut Budget,
        peer_closed: bool,
    ) -> Result<(), ConnectionError> {
        let want = match &self.handler {
            Handler::Frames(f) => f.wanted(self.transport.inbuf.len()),
            Handler::Http(_) | Handler::Staff(_) => None,
        };
        self.transport
            .read_in(scratch, limits, budget, peer_closed, want)
    }

    /// The upload whose staged chunks go when it closes, if any.
    pub(super) fn staged_upload(&self) -> Option<i64> {
        match &self.handler {
            Handler::Frames(f) => f.staged_upload(),
            Handler::Http(_) | Handler::Staff(_) => None,
        }
    }

    /// The record it waited for is durable (its log entry where `logged`
    /// says, if the commit said): what to send now.
    pub(super) fn on_committed(&mut self, shared: &mut Shared, logged: Option<Logged>) -> Output {
        match &mut self.handler {
            Handler::Frames(f) => f.on_committed(shared, &self.peer, logged),
            Handler::Http(_) | Handler::Staff(_) => Output::default(),
        }
    }

    /// The off-loop work it waited for is done: what to send now.
    pub(super) fn on_offloaded(&mut self, done: OffDone) -> Output {
        match (&mut self.handler, done) {
            (Handler::Frames(f), OffDone::Session(done)) => f.on_offloaded(done, &self.peer),
            (Handler::Staff(s), OffDone::Staff(method, resp, stream)) => Output {
                close: s.answer(method, resp, stream, &mut self.transport),
                ..Output::default()
            },
            (Handler::Staff(s), OffDone::StaffBody(stream, piece)) => Output {
                close: s.piece(stream, piece, &mut self.transport, &self.peer),
                ..Output::default()
            },
            // Never: each handler gets back the kind of work it asked for.
            _ => Output {
                close: true,
                ..Output::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SharedBuilder;

    /// Its time limits do not run out while it waits on the server (its
    /// record's commit, its turn with a whole frame buffered), and run as
    /// before once it waits on its peer again, or holds only part of a
    /// frame (a peer trickling bytes is not the server's to wait for).
    #[test]
    fn no_time_limit_runs_out_while_it_waits_on_the_server(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let _peer = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (stream, from) = listener.accept()?;
        stream.set_nonblocking(true)?;
        let shared = SharedBuilder::new().build()?;
        let limits = Limits {
            idle_timeout: Duration::from_secs(10),
            exchange_deadline: Duration::from_secs(30),
            ..Limits::default()
        };
        let (mut conn, _) = Connection::start(
            TcpStream::from_std(stream),
            Serves::Frames(crate::protocol::ServiceKind::Blackboard),
            from.to_string(),
            0,
            &shared,
            &limits,
            HttpStart {
                limits: HttpConnLimits::default(),
                staff: &None,
            },
        );
        let idle = Instant::now() + Duration::from_secs(11);
        let past_deadline = Instant::now() + Duration::from_secs(31);
        assert_eq!(conn.expired(idle, &limits), Some(Expiry::Idle));

        // Queued with a whole frame: the server's to take.
        conn.transport.inbuf = crate::framing::frame(b"a whole frame");
        conn.queued = true;
        assert_eq!(conn.expired(idle, &limits), None);
        assert_eq!(conn.expired(past_deadline, &limits), None);
        // Queued with part of one: the peer's to finish.
        conn.transport.inbuf.pop();
        assert_eq!(conn.expired(idle, &limits), Some(Expiry::Idle));
        conn.transport.inbuf.clear();
        assert_eq!(conn.expired(idle, &limits), Some(Expiry::Idle));

        conn.queued = false;
        conn.wait = Some(Wait::Commit {
            held: Vec::new(),
            close_after: false,
        });
        assert_eq!(conn.expired(past_deadline, &limits), None);

        conn.wait = None;
        assert_eq!(conn.expired(idle, &limits), Some(Expiry::Idle));
        assert_eq!(conn.expired(past_deadline, &limits), Some(Expiry::Deadline));

        // Chunks streamed to the writer: within the window the peer owes
        // the next, and it works on; a full window is the server's to
        // drain, and it works no more until the writer answers.
        conn.chunks_in_commit = CHUNK_WINDOW - 1;
        assert!(conn.may_work(CHUNK_WINDOW) && conn.owed());
        assert!(!conn.may_work(1), "one at a time while others work");
        assert_eq!(conn.expired(past_deadline, &limits), None);
        conn.chunks_in_commit = CHUNK_WINDOW;
        assert!(!conn.may_work(CHUNK_WINDOW) && conn.owed());
        assert_eq!(conn.expired(past_deadline, &limits), None);
        conn.chunks_in_commit = 0;
        assert!(conn.may_work(CHUNK_WINDOW) && !conn.owed());
        assert_eq!(conn.expired(idle, &limits), Some(Expiry::Idle));
        Ok(())
    }
}
