//! Work off the event loop: a small pool of worker threads for the jobs a
//! session asks for ([`crate::protocol::Job`]: today the RSA key of a
//! legacy student, tens of milliseconds each) that the loop must not spend
//! its time on.
//!
//! - Bounded: at most `queue` jobs wait, across every reactor; one more is
//!   refused at once ([`Busy`]) and the reactor refuses that request with
//!   "server busy", rather than let a queue, and its wait, grow without end.
//! - Results come back like the commit thread's: through the reactor's one
//!   `mio::Waker` (mio allows one per poll) and a channel of its own.
//! - Work for nobody is dropped: each job carries a weak reference to a
//!   ticket the connection holds while it waits; when the connection
//!   closes, the ticket goes, and a worker that picks the job up skips it.
//!   (A job already running finishes; its result finds no connection and is
//!   dropped.)
//!
//! Why a pool and not keys made ahead of time: a stock of keys costs CPU
//! while the server is idle, keeps private keys in memory for students who
//! may never come, and drains under exactly the flood it is meant for,
//! after which it is a pool anyway. One worker by default leaves a core to
//! the loop on a two-core machine, and makes 20–40 keys a second, more
//! than a class of students needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::thread;

use log::{debug, info, warn};
use mio::{Token, Waker};

use crate::ops::http::{Method, Response};
use crate::protocol::{Done, Job};
use crate::staff::{BodyJob, BodyStream, StaffError, StaffJob};

/// Work for the pool: a session's (a legacy key) or a staff request.
#[derive(Debug)]
pub(crate) enum OffJob {
    /// A protocol session's job.
    Session(Job),
    /// A staff request, answered off the loop.
    Staff(StaffJob),
    /// The next piece of a staff download.
    StaffBody(BodyJob),
}

/// What came back.
#[derive(Debug)]
pub(crate) enum OffDone {
    /// For [`OffJob::Session`].
    Session(Done),
    /// For [`OffJob::Staff`]: the method it answers, the response, and a
    /// download's body still to send.
    Staff(Method, Response, Option<BodyStream>),
    /// For [`OffJob::StaffBody`]: the stream moved on, and the piece.
    StaffBody(BodyStream, Result<Vec<u8>, StaffError>),
}

impl OffJob {
    fn run(self) -> OffDone {
        match self {
            OffJob::Session(job) => OffDone::Session(job.run()),
            OffJob::Staff(job) => {
                let (method, resp, stream) = job.run();
                OffDone::Staff(method, resp, stream)
            }
            OffJob::StaffBody(job) => {
                let (stream, piece) = job.run();
                OffDone::StaffBody(stream, piece)
            }
        }
    }
}

/// Worker threads of the server's pool: one leaves a core to the loop on a
/// two-core machine.
pub(crate) const WORKERS: usize = 1;
/// Most jobs waiting for a worker, across all reactors: at 20–40 keys a
/// second, the last of them waits under a second, well within the idle
/// timeout.
pub(crate) const QUEUE: usize = 16;

/// A job with where its result goes.
struct Task {
    job: OffJob,
    token: Token,
    /// Gone when the connection that asked has closed.
    ticket: Weak<()>,
    results: Sender<(Token, OffDone)>,
    waker: Arc<Waker>,
}

/// What the pool has skipped, for the logs.
#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
}

/// The worker threads, shared by every reactor.
#[derive(Debug)]
pub(crate) struct Workers {
    tasks: SyncSender<Task>,
    queue: usize,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The pool's queue is full: the request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    /// How many jobs may wait.
    pub(crate) queue: usize,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server busy: {} requests are already waiting for work that cannot run on the event \
             loop (a legacy enrollment's key, a staff page or login); try again in a moment",
            self.queue
        )
    }
}

impl std::error::Error for Busy {}

impl Workers {
    /// Starts `threads` workers (at least 1) behind a queue of `queue` jobs
    /// (at least 1).
    pub(crate) fn start(threads: usize, queue: usize) -> std::io::Result<Workers> {
        let queue = queue.max(1);
        let (tasks, inbox) = mpsc::sync_channel::<Task>(queue);
        let inbox = Arc::new(Mutex::new(inbox));
        let counters = Arc::new(Counters::default());
        for i in 0..threads.max(1) {
            let (inbox, counters) = (Arc::clone(&inbox), Arc::clone(&counters));
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || work(&inbox, &counters))?;
        }
        Ok(Workers { tasks, queue })
    }

    /// A reactor's way in: its jobs go to the pool, their results come
    /// back on its own channel, announced through `waker`.
    pub(crate) fn handle(&self, waker: Arc<Waker>) -> WorkHandle {
        let (results, inbox) = mpsc::channel();
        WorkHandle {
            tasks: self.tasks.clone(),
            queue: self.queue,
            results,
            inbox,
            waker,
        }
    }
}

/// A worker: takes jobs until every sender is gone.
fn work(inbox: &Mutex<Receiver<Task>>, counters: &Counters) {
    loop {
        // The lock is held only to take one task, never while working.
        let task = match inbox.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return, // another worker panicked holding it
        };
        let Ok(task) = task else {
            return; // the server is stopping
        };
        if task.ticket.strong_count() == 0 {
            let n = counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            info!(
                "off-loop work dropped unstarted: its connection closed first ({n} dropped so far)"
            );
            continue;
        }
        let done = task.job.run();
        if task.results.send((task.token, done)).is_err() {
            debug!("off-loop work finished after its reactor stopped");
            continue;
        }
        if let Err(e) = task.waker.wake() {
            warn!("off-loop work: cannot wake the reactor: {e}");
        }
    }
}

/// One reactor's side of the pool.
#[derive(Debug)]
pub(crate) struct WorkHandle {
    tasks: SyncSender<Task>,
    queue: usize,
    results: Sender<(Token, OffDone)>,
    inbox: Receiver<(Token, OffDone)>,
    waker: Arc<Waker>,
}

impl WorkHandle {
    /// Queues `job` for the connection `token`, which keeps the returned
    /// ticket while it waits: dropping it cancels the job if it has not
    /// started.
    pub(crate) fn submit(&self, token: Token, job: OffJob) -> Result<Arc<()>, Busy> {
        let ticket = Arc::new(());
        let task = Task {
            job,
            token,
            ticket: Arc::downgrade(&ticket),
            results: self.results.clone(),
            waker: Arc::clone(&self.waker),
        };
        match self.tasks.try_send(task) {
            Ok(()) => Ok(ticket),
            // A pool whose workers are gone can take nothing more either.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Err(Busy { queue: self.queue })
            }
        }
    }

    /// The results that have come back, without waiting.
    pub(crate) fn finished(&self) -> impl Iterator<Item = (Token, OffDone)> + '_ {
        self.inbox.try_iter()
    }
}
